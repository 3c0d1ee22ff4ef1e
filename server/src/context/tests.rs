//! Data-driven tests of the prompt builder and the post-processor. Fixtures hold several files:
//! `//- path` starts one (`//- path (open)` also opens it in the editor), and `$0` marks the
//! cursor in the current file. Prompt snapshots live in `snapshots/`; refresh them with
//! `UPDATE_EXPECT=1 cargo test -p wellspring context::tests` and read the diff like code.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use expect_test::{expect, expect_file, Expect, ExpectFile};

use super::*;
use crate::docs::{Document, DocumentStore};
use crate::engine::{FimPrompt, ModelCaps, TokenCounter};
use crate::index::WorkspaceIndex;
use crate::syntax::outline;
use crate::syntax::Language;

/// Roughly four bytes a token, like BPE vocabularies on code; exact, cheap and deterministic.
pub(crate) struct BytesPerToken;

impl TokenCounter for BytesPerToken {
    fn count_tokens(&self, text: &str) -> usize {
        text.len().div_ceil(4)
    }
}

const ROOT: &str = "/ws/demo";

fn caps(has_file_sep: bool) -> ModelCaps {
    ModelCaps {
        has_fim: true,
        has_file_sep,
        has_repo_name: has_file_sep,
        n_ctx_per_slot: 8192,
    }
}

struct Fixture {
    snapshot: ContextSnapshot,
    cursor_byte: usize,
}

fn uri_of(path: &str) -> String {
    format!("file://{ROOT}/{path}")
}

fn open_document(path: &str, text: &str) -> Arc<Document> {
    let store = DocumentStore::new();
    let uri = uri_of(path);
    store.open(&uri, "", 1, text);
    store.finish_parse(&uri, 1);
    store.get(&uri).expect("just opened")
}

/// Parses a fixture: the file holding `$0` is current; every file is indexed.
fn fixture(text: &str) -> Fixture {
    let mut files: Vec<(String, bool, String)> = Vec::new();
    for line in text.split_inclusive('\n') {
        if let Some(header) = line.strip_prefix("//- ") {
            let header = header.trim();
            let (path, is_open) = match header.strip_suffix(" (open)") {
                Some(path) => (path, true),
                None => (header, false),
            };
            files.push((path.to_owned(), is_open, String::new()));
        } else if let Some((_, _, body)) = files.last_mut() {
            body.push_str(line);
        }
    }
    let index = Arc::new(WorkspaceIndex::new(Some(PathBuf::from(ROOT))));
    let mut current = None;
    let mut open = Vec::new();
    for (path, is_open, body) in &files {
        let (body, cursor_byte) = match body.find("$0") {
            Some(cursor_byte) => (body.replacen("$0", "", 1), Some(cursor_byte)),
            None => (body.clone(), None),
        };
        index.update_file(&Path::new(ROOT).join(path), &body);
        let document = open_document(path, &body);
        if *is_open {
            open.push(Arc::clone(&document));
        }
        if let Some(cursor_byte) = cursor_byte {
            current = Some((document, cursor_byte));
        }
    }
    let (current, cursor_byte) = current.expect("fixture has a $0 cursor");
    Fixture {
        snapshot: ContextSnapshot {
            current,
            open,
            index,
            recent: RecentChunks::default(),
        },
        cursor_byte,
    }
}

/// The prompt as Qwen2.5-Coder sees it, followed by the section table.
fn render(built: &BuiltPrompt) -> String {
    let FimPrompt {
        repo_name,
        extra,
        path,
        prefix,
        suffix,
        line_head,
    } = &built.prompt;
    let mut out = String::new();
    if let Some(name) = repo_name {
        out.push_str(&format!("<|repo_name|>{name}\n"));
    }
    for chunk in extra {
        out.push_str(&format!("<|file_sep|>{}\n{}", chunk.path, chunk.text));
    }
    out.push_str(&format!(
        "<|file_sep|>{path}\n<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>{line_head}"
    ));
    out.push_str("\n=====\n");
    for section in &built.sections {
        out.push_str(&format!(
            "{:<13} {:<20} {:>4}  {}\n",
            section.label, section.path, section.n_tokens, section.detail
        ));
    }
    out
}

fn check_prompt(text: &str, n_budget: usize, expect: ExpectFile) {
    let fixture = fixture(text);
    let built = build(
        &fixture.snapshot,
        fixture.cursor_byte,
        &Budget {
            n_prompt_tokens: n_budget,
        },
        &caps(true),
        &BytesPerToken,
    );
    expect.assert_eq(&render(&built));
}

#[test]
fn prompt_rust() {
    check_prompt(
        r#"
//- src/geometry.rs
/// A point in the plane.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

impl Point {
    /// Distance to another point.
    pub fn distance(&self, other: &Point) -> f64 {
        ((self.x - other.x).powi(2) + (self.y - other.y).powi(2)).sqrt()
    }
}
//- src/main.rs
use crate::geometry::Point;

struct Route {
    stops: Vec<Point>,
}

impl Route {
    fn length(&self) -> f64 {
        let mut total = 0.0;
        for pair in self.stops.windows(2) {
            total += pair[0].distance(&pair[1]);
        }
        total
    }

    fn longest_leg(&self) -> f64 {
        let mut best = 0.0;
        for pair in self.stops.windows(2) {
            let leg = pair[0].distance(&pair[1]);
            $0
        }
        best
    }
}
"#,
        300,
        expect_file!["snapshots/rust.txt"],
    );
}

#[test]
fn prompt_python() {
    check_prompt(
        r#"
//- pkg/store.py
class Store:
    """Key-value store backed by a dict."""

    def __init__(self):
        self.items = {}

    def put(self, key, value):
        """Remember value under key."""
        self.items[key] = value

    def get(self, key, default=None):
        return self.items.get(key, default)
//- pkg/app.py
import sys
from pkg.store import Store


def load(path):
    store = Store()
    with open(path) as handle:
        for line in handle:
            key, value = line.split("=", 1)
            store.put(key.strip(), value.strip())
    return store


def main():
    store = load(sys.argv[1])
    $0
"#,
        300,
        expect_file!["snapshots/python.txt"],
    );
}

#[test]
fn prompt_javascript() {
    check_prompt(
        r#"
//- lib/format.js
/**
 * Pads a number with zeros.
 */
export function pad(value, width) {
  return String(value).padStart(width, "0");
}
//- lib/clock.js
import { pad } from "./format.js";

export class Clock {
  constructor(hours, minutes) {
    this.hours = hours;
    this.minutes = minutes;
  }

  toString() {
    return `${pad(this.hours, 2)}:$0`;
  }
}
"#,
        300,
        expect_file!["snapshots/javascript.txt"],
    );
}

#[test]
fn prompt_typescript() {
    check_prompt(
        r#"
//- src/types.ts
export interface User {
  id: number;
  name: string;
}

export type UserId = User["id"];
//- src/repo.ts
import { User, UserId } from "./types";

export class UserRepo {
  private users = new Map<UserId, User>();

  add(user: User): void {
    this.users.set(user.id, user);
  }

  find(id: UserId): User | undefined {
    $0
  }
}
"#,
        300,
        expect_file!["snapshots/typescript.txt"],
    );
}

#[test]
fn prompt_tsx() {
    check_prompt(
        r#"
//- src/button.tsx
export function Button(props: { label: string; onClick: () => void }) {
  return <button onClick={props.onClick}>{props.label}</button>;
}
//- src/app.tsx
import { Button } from "./button";

export function App() {
  const onClick = () => console.log("hi");
  return (
    <div>
      $0
    </div>
  );
}
"#,
        300,
        expect_file!["snapshots/tsx.txt"],
    );
}

#[test]
fn prompt_go() {
    check_prompt(
        r#"
//- cache/cache.go
package cache

// Cache keeps values for a while.
type Cache struct {
	items map[string]string
}

// Get returns the value stored under key.
func (c *Cache) Get(key string) (string, bool) {
	value, ok := c.items[key]
	return value, ok
}
//- main.go
package main

import (
	"fmt"

	"example.com/demo/cache"
)

func lookup(c *cache.Cache, key string) string {
	value, ok := c.Get(key)
	if !ok {
		$0
	}
	return value
}

func main() {
	fmt.Println("start")
}
"#,
        300,
        expect_file!["snapshots/go.txt"],
    );
}

#[test]
fn prompt_c() {
    check_prompt(
        r#"
//- src/buffer.h
/* A growable byte buffer. */
typedef struct buffer {
    char *data;
    size_t len;
    size_t cap;
} buffer_t;

int buffer_append(buffer_t *buf, const char *bytes, size_t n);
//- src/main.c
#include <stdio.h>
#include "buffer.h"

static int copy_line(buffer_t *out, FILE *in) {
    char chunk[256];
    while (fgets(chunk, sizeof chunk, in)) {
        size_t n = strlen(chunk);
        if (buffer_append(out, chunk, n) != 0) {
            return -1;
        }
        $0
    }
    return 0;
}
"#,
        300,
        expect_file!["snapshots/c.txt"],
    );
}

#[test]
fn prompt_cpp() {
    check_prompt(
        r#"
//- include/matrix.hpp
namespace linalg {
class Matrix {
public:
    Matrix(int rows, int cols);
    double at(int row, int col) const;
    int rows() const { return rows_; }

private:
    int rows_;
    int cols_;
};
}
//- src/trace.cpp
#include "matrix.hpp"

namespace linalg {
double trace(const Matrix &m) {
    double sum = 0;
    for (int i = 0; i < m.rows(); ++i) {
        sum += m.at(i, i);
    }
    $0
}
}
"#,
        300,
        expect_file!["snapshots/cpp.txt"],
    );
}

#[test]
fn prompt_java() {
    check_prompt(
        r#"
//- src/main/java/demo/Account.java
package demo;

/** A bank account. */
public class Account {
    private long balance;

    /** Adds money; returns the new balance. */
    public long deposit(long amount) {
        balance += amount;
        return balance;
    }
}
//- src/main/java/demo/Bank.java
package demo;

import java.util.List;

public class Bank {
    private final List<Account> accounts;

    public Bank(List<Account> accounts) {
        this.accounts = accounts;
    }

    public void payInterest(long amount) {
        for (Account account : accounts) {
            account.deposit(amount);
            $0
        }
    }
}
"#,
        300,
        expect_file!["snapshots/java.txt"],
    );
}

#[test]
fn prompt_lua() {
    check_prompt(
        r#"
//- lua/util.lua
local M = {}

--- Splits a string on a separator.
function M.split(text, sep)
  local parts = {}
  for part in string.gmatch(text, "([^" .. sep .. "]+)") do
    table.insert(parts, part)
  end
  return parts
end

return M
//- lua/config.lua
local util = require("util")

local function parse(line)
  local fields = util.split(line, ",")
  $0
end

return { parse = parse }
"#,
        300,
        expect_file!["snapshots/lua.txt"],
    );
}

/// A long function: the prefix is cut, and the headers of the scopes around the cursor come back.
#[test]
fn prompt_keeps_scope_headers_when_the_body_is_cut() {
    let mut body = String::new();
    for n in 0..60 {
        body.push_str(&format!("            let value_{n} = input.len() + {n};\n"));
    }
    let text = format!(
        "//- src/lib.rs\nuse std::collections::HashMap;\n\nmod inner {{\n    impl Parser {{\n        pub fn parse(\n            &self,\n            input: &str,\n        ) -> usize {{\n{body}            $0\n        }}\n    }}\n}}\n"
    );
    check_prompt(&text, 300, expect_file!["snapshots/rust_scope_headers.txt"]);
}

/// Typing on the cursor's line changes nothing before the line head, so the engine re-evaluates
/// only the suffix and the head.
#[test]
fn typing_on_a_line_keeps_everything_before_it_identical() {
    let base = r#"
//- src/util.rs
pub fn clamp(value: i64, low: i64, high: i64) -> i64 {
    value.max(low).min(high)
}
//- src/main.rs
use crate::util::clamp;

fn main() {
    let reading = 42;
    let clamped = clamp(reading, 0, 10);
    println!("{clamped}");
    $0
    println!("done");
}
"#;
    let typed = [
        "",
        "l",
        "le",
        "let",
        "let x",
        "let x = ",
        "let x = clamped",
        "let x = clamped +",
    ];
    let mut previous: Option<(Vec<String>, String, String)> = None;
    for head in typed {
        let fixture = fixture(&base.replace("$0", &format!("{head}$0")));
        let built = build(
            &fixture.snapshot,
            fixture.cursor_byte,
            &Budget {
                n_prompt_tokens: 400,
            },
            &caps(true),
            &BytesPerToken,
        );
        let extra: Vec<String> = built
            .prompt
            .extra
            .iter()
            .map(|it| format!("{}\n{}", it.path, it.text))
            .collect();
        let stable = (
            extra,
            built.prompt.prefix.clone(),
            built.prompt.suffix.clone(),
        );
        if let Some(previous) = &previous {
            assert_eq!(previous, &stable, "typing {head:?} changed the stable part");
        }
        assert_eq!(built.prompt.line_head, format!("    {head}"));
        previous = Some(stable);
    }
}

/// This crate's own prompt builder source: a real-sized Rust file that is ours to use.
fn big_fixture() -> Fixture {
    let source = include_str!("build.rs");
    assert!(!source.contains("$0"));
    let middle = source.len() / 2;
    let middle = source[middle..]
        .find('\n')
        .map_or(middle, |idx| middle + idx + 1);
    fixture(&format!(
        "//- src/context/build.rs\n{}$0{}",
        &source[..middle],
        &source[middle..]
    ))
}

#[test]
fn same_inputs_give_the_same_prompt() {
    let fixture = big_fixture();
    let budget = Budget {
        n_prompt_tokens: 300,
    };
    let first = build(
        &fixture.snapshot,
        fixture.cursor_byte,
        &budget,
        &caps(true),
        &BytesPerToken,
    );
    let second = build(
        &fixture.snapshot,
        fixture.cursor_byte,
        &budget,
        &caps(true),
        &BytesPerToken,
    );
    assert_eq!(first, second);
}

/// At every cursor position of a real-sized file, the prompt fits the budget and the prefix
/// starts on a line where no syntax node but the cursor's scopes is split.
#[test]
fn prompts_fit_the_budget_and_cut_cleanly_everywhere() {
    let fixture = big_fixture();
    let document = Arc::clone(&fixture.snapshot.current);
    let tree = document.tree.clone().expect("parsed");
    let counter = BytesPerToken;
    for n_budget in [64, 256, 1024] {
        for line_idx in (0..document.rope.len_lines()).step_by(3) {
            let cursor_byte = document.rope.line_to_byte(line_idx);
            let built = build(
                &fixture.snapshot,
                cursor_byte,
                &Budget {
                    n_prompt_tokens: n_budget,
                },
                &caps(true),
                &counter,
            );
            let n_total: usize = built.sections.iter().map(|it| it.n_tokens).sum::<usize>()
                + counter.count_tokens(&built.prompt.path)
                + 4
                + built
                    .prompt
                    .repo_name
                    .as_deref()
                    .map_or(0, |it| counter.count_tokens(it) + 2);
            assert!(
                n_total <= n_budget,
                "line {line_idx}, budget {n_budget}: {n_total} tokens"
            );
            let prefix_text = built.prompt.prefix.clone();
            let full = document.rope.to_string();
            let kept_start = cursor_byte - prefix_text.len().min(cursor_byte);
            if full[kept_start..cursor_byte] == prefix_text {
                assert!(
                    !super::neighbourhood::splits_token(Some(&tree), kept_start),
                    "line {line_idx}, budget {n_budget}: prefix starts inside a token"
                );
                // With room for a few statements, a cut that splits a statement is never needed.
                assert!(
                    n_budget < 1024
                        || super::neighbourhood::is_clean_cut(Some(&tree), kept_start, cursor_byte),
                    "line {line_idx}, budget {n_budget}: prefix starts inside a node"
                );
            }
        }
    }
}

#[test]
fn without_file_separator_other_files_become_comments() {
    let fixture = fixture(
        r#"
//- util.py
def double(x):
    """Twice x."""
    return 2 * x
//- main.py
from util import double

print(double(3))
$0
"#,
    );
    let built = build(
        &fixture.snapshot,
        fixture.cursor_byte,
        &Budget {
            n_prompt_tokens: 200,
        },
        &caps(false),
        &BytesPerToken,
    );
    assert!(built.prompt.extra.is_empty());
    expect![[r#"
        # util.py (definition)
        # def double(x):
        #     """Twice x."""
        #     ...
        from util import double

        print(double(3))
    "#]]
    .assert_eq(&built.prompt.prefix);
}

#[test]
fn recent_edits_elsewhere_are_included_and_the_cursor_region_is_not() {
    let mut fixture = fixture(
        r#"
//- notes.py (open)
TODO = ["write tests", "ship"]
//- main.py
import notes

def run():
    $0
"#,
    );
    let notes = fixture.snapshot.open[0].clone();
    let current = fixture.snapshot.current.clone();
    fixture
        .snapshot
        .recent
        .record_edit(&notes.uri, &notes.rope, 3);
    fixture
        .snapshot
        .recent
        .record_edit(&current.uri, &current.rope, fixture.cursor_byte);
    let built = build(
        &fixture.snapshot,
        fixture.cursor_byte,
        &Budget {
            n_prompt_tokens: 300,
        },
        &caps(true),
        &BytesPerToken,
    );
    let labels: Vec<(&str, &str)> = built
        .sections
        .iter()
        .map(|it| (it.label, it.path.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("open-file", "notes.py"),
            ("recent-edit", "notes.py"),
            ("prefix", "main.py"),
            ("suffix", "main.py"),
            ("line-head", "main.py")
        ]
    );
}

// ---- post-processing ----

fn check_post(text: &str, completion: &str, expect: Expect) {
    let fixture = fixture(text);
    let document = &fixture.snapshot.current;
    let result = postprocess(document, fixture.cursor_byte, completion);
    // Had generation stopped where the suggestion became complete, the same text would show.
    if let Some(done_at) = done_at(document, fixture.cursor_byte, completion) {
        assert_eq!(
            postprocess(document, fixture.cursor_byte, &completion[..done_at]),
            result,
            "stopped after {:?}",
            &completion[..done_at]
        );
    }
    let shown = match result {
        Some(text) => format!("{text}⏎"),
        None => "<none>".to_owned(),
    };
    expect.assert_eq(&shown);
}

/// Where generation stops when the model writes `completion` one character at a time.
fn done_at(document: &Arc<Document>, cursor_byte: usize, completion: &str) -> Option<usize> {
    let is_done = done_check(Arc::clone(document), cursor_byte);
    completion
        .char_indices()
        .map(|(idx, character)| idx + character.len_utf8())
        .find(|end| is_done(&completion[..*end]))
}

/// Generation stops on the character that settles the suggestion: the first character of the
/// line after a closed block (which shows nothing continues it), the first character of a line
/// that leaves the cursor's block, the newline after a line repeating the one below the cursor.
/// It does not stop while the suggestion may still grow.
#[test]
fn post_generation_stops_where_the_suggestion_is_complete() {
    let cases = [
        (
            "//- a.rs\nfn f(items: &[u8]) -> u32 {\n    let mut n = 0;\n    $0\n    n\n}\n",
            "for item in items {\n        n += *item as u32;\n    }\n    let unused = 1;\n    n",
        ),
        (
            "//- a.rs\nfn f() -> u32 {\n    let a = 1;\n    $0\n}\n\nfn g() {}\n",
            "a + 1\n}\n\nfn h() {}",
        ),
        (
            "//- a.py\ndef f(x):\n    y = x * 2\n    $0\n    return y\n",
            "y += 1\n    return y\n    pass",
        ),
        (
            "//- a.py\ndef f(xs):\n    total = 0\n    $0\n",
            "for x in xs:\n        total += x\n    return total\n\n\ndef g():\n    pass",
        ),
        (
            "//- a.rs\nfn f() {\n    $0\n}\n",
            "let x = vec![\n        1,\n        2,\n    ];\n    x.len();",
        ),
        (
            "//- a.rs\nfn f() {\n    $0\n}\n",
            "let x = 1;\n    let y = 2;\n    let z = 3;",
        ),
    ];
    let mut report = String::new();
    for (text, completion) in cases {
        let fixture = fixture(text);
        let document = &fixture.snapshot.current;
        let stopped = match done_at(document, fixture.cursor_byte, completion) {
            Some(end) => {
                assert_eq!(
                    postprocess(document, fixture.cursor_byte, &completion[..end]),
                    postprocess(document, fixture.cursor_byte, completion)
                );
                format!("{:?} | {:?}", &completion[..end], &completion[end..])
            }
            None => format!("{completion:?} | (no stop)"),
        };
        report.push_str(&stopped);
        report.push('\n');
    }
    expect![[r#"
        "for item in items {\n        n += *item as u32;\n    }\n    l" | "et unused = 1;\n    n"
        "a + 1\n}" | "\n\nfn h() {}"
        "y += 1\n    return y\n" | "    pass"
        "for x in xs:\n        total += x\n    r" | "eturn total\n\n\ndef g():\n    pass"
        "let x = vec![\n        1,\n        2,\n    ];\n    x" | ".len();"
        "let x = 1;\n    let y = 2;\n    let z = 3;" | (no stop)
    "#]]
    .assert_eq(&report);
}

#[test]
fn post_blank_suggestions_are_dropped() {
    check_post(
        "//- a.rs\nfn f() {\n    $0\n}\n",
        "  \n\t",
        expect!["<none>"],
    );
}

#[test]
fn post_rust_stops_where_the_opened_block_closes() {
    check_post(
        "//- a.rs\nfn f(items: &[u8]) -> u32 {\n    let mut n = 0;\n    $0\n    n\n}\n",
        "for item in items {\n        n += *item as u32;\n    }\n    let unused = 1;\n    n",
        expect![[r#"
            for item in items {
                    n += *item as u32;
                }⏎"#]],
    );
}

#[test]
fn post_rust_stops_before_leaving_the_cursor_block() {
    check_post(
        "//- a.rs\nfn f() -> u32 {\n    let a = 1;\n    $0\n}\n\nfn g() {}\n",
        "a + 1\n}\n\nfn h() {}",
        expect!["a + 1⏎"],
    );
}

#[test]
fn post_rust_drops_the_repeated_closing_paren() {
    check_post(
        "//- a.rs\nfn f() {\n    let v = compute($0);\n}\n",
        "1, 2);",
        expect!["1, 2⏎"],
    );
}

#[test]
fn post_rust_keeps_a_paren_it_needs() {
    check_post(
        "//- a.rs\nfn f() {\n    let v = outer($0);\n}\n",
        "inner()",
        expect!["inner()⏎"],
    );
}

#[test]
fn post_python_cuts_at_the_line_that_repeats_the_suffix() {
    check_post(
        "//- a.py\ndef f(x):\n    y = x * 2\n    $0\n    return y\n",
        "y += 1\n    return y",
        expect!["y += 1⏎"],
    );
}

#[test]
fn post_python_removes_doubled_indentation() {
    check_post(
        "//- a.py\ndef f(x):\n    y = x * 2\n    $0\n",
        "    return y",
        expect!["return y⏎"],
    );
}

#[test]
fn post_python_stops_after_the_opened_block() {
    check_post(
        "//- a.py\ndef f(xs):\n    total = 0\n    $0\n",
        "for x in xs:\n        total += x\n    return total\n\n\ndef g():\n    pass",
        expect![[r#"
            for x in xs:
                    total += x⏎"#]],
    );
}

#[test]
fn post_go_converts_space_indentation_to_tabs() {
    check_post(
        "//- a.go\npackage a\n\nfunc f(xs []int) int {\n\ttotal := 0\n\t$0\n}\n",
        "for _, x := range xs {\n        total += x\n    }\n    return total",
        expect![[r#"
            for _, x := range xs {
            		total += x
            	}⏎"#]],
    );
}

#[test]
fn post_javascript_shortens_to_a_clean_parse() {
    check_post(
        "//- a.js\nfunction f(a) {\n  const b = a + 1;\n  $0\n  return b;\n}\n",
        "console.log(b);\n  if (b > 2) {",
        expect!["console.log(b);⏎"],
    );
}

#[test]
fn post_typescript_drops_repeated_suffix_text() {
    check_post(
        "//- a.ts\nfunction f(a: number): number {\n  return Math.max(a, $0);\n}\n",
        "0);",
        expect!["0⏎"],
    );
}

#[test]
fn post_c_keeps_single_line_when_text_follows_the_cursor() {
    check_post(
        "//- a.c\nint f(int a) {\n    return $0 + 1;\n}\n",
        "a * 2\n}\nint g(void) { return 0; }",
        expect!["a * 2⏎"],
    );
}

#[test]
fn post_cpp_stops_at_the_closing_brace_of_the_function() {
    check_post(
        "//- a.cpp\nint f(int a) {\n    int b = a;\n    $0\n}\n",
        "b += 1;\n    return b;\n}\n\nint g() { return 0; }",
        expect![[r#"
            b += 1;
                return b;⏎"#]],
    );
}

#[test]
fn post_java_stops_after_the_opened_block() {
    check_post(
        "//- A.java\nclass A {\n    int f(int[] xs) {\n        int t = 0;\n        $0\n        return t;\n    }\n}\n",
        "for (int x : xs) {\n            t += x;\n        }\n        t *= 2;",
        expect![[r#"
            for (int x : xs) {
                        t += x;
                    }⏎"#]],
    );
}

#[test]
fn post_lua_stops_before_the_existing_end() {
    check_post(
        "//- a.lua\nlocal function f(xs)\n  local t = 0\n  $0\nend\n",
        "for _, x in ipairs(xs) do\n    t = t + x\n  end\n  return t\nend",
        expect![[r#"
            for _, x in ipairs(xs) do
                t = t + x
              end⏎"#]],
    );
}

#[test]
fn post_tsx_keeps_a_complete_element() {
    check_post(
        "//- a.tsx\nexport function A() {\n  return (\n    <div>\n      $0\n    </div>\n  );\n}\n",
        "<span>hi</span>\n    </div>",
        expect!["<span>hi</span>⏎"],
    );
}

/// Looking up a few names summarises each with the classes around it found by a ranged query;
/// the summaries must equal those of the whole-file outline the index stores.
#[test]
fn outline_of_a_few_names_equals_the_whole_outline() {
    let cases = [
        (
            Language::Python,
            "class Outer:\n    \"\"\"Doc.\"\"\"\n\n    class Inner:\n        def run(self):\n            pass\n\n    @staticmethod\n    def make():\n        return 1\n\n\ndef run():\n    pass\n",
        ),
        (
            Language::Rust,
            "mod shapes {\n    /// A point.\n    pub struct Point { x: i32 }\n\n    impl Point {\n        pub fn new() -> Self { Point { x: 0 } }\n        fn run(&self) {}\n    }\n}\n\nfn run() {}\n",
        ),
        (
            Language::Cpp,
            "namespace geo {\nclass Shape {\n public:\n  int run() { return 1; }\n  struct Inner { int make() { return 2; } };\n};\n}  // namespace geo\n\nint run() { return 0; }\n",
        ),
        (
            Language::JavaScript,
            "class Outer {\n  run() { return 1; }\n  static make() { return new Outer(); }\n}\n\nfunction run() {}\nconst make = () => 2;\n",
        ),
    ];
    for (language, text) in cases {
        // Enough definitions that the whole outline reads the whole file's scopes at once.
        let filler: String = (0..20)
            .map(|n| match language {
                Language::Python => format!("def filler{n}():\n    pass\n"),
                Language::Rust => format!("fn filler{n}() {{}}\n"),
                Language::Cpp => format!("int filler{n}() {{ return 0; }}\n"),
                _ => format!("function filler{n}() {{}}\n"),
            })
            .collect();
        let rope = ropey::Rope::from_str(&format!("{text}{filler}"));
        let tree = crate::syntax::parse_rope(&mut language.parser(), &rope, None, None)
            .expect("fixture parses");
        let whole = outline::definitions(language, &rope, &tree);
        assert!(whole.len() >= 24, "{language:?}: {whole:#?}");
        for name in ["run", "make", "Inner", "new", "Point", "absent"] {
            let few = outline::definitions_matching(language, &rope, &tree, |it| it == name);
            let expected: Vec<_> = whole.iter().filter(|it| it.name == name).cloned().collect();
            assert_eq!(few, expected, "{language:?} {name}");
        }
    }
}

/// One walk with the joined outline query reads the same imports and definitions as the two
/// queries run apart.
#[test]
fn file_outline_equals_imports_and_definitions_apart() {
    let cases = [
        (
            Language::Rust,
            "use std::sync::Arc;\nmod shapes {\n    use super::Arc;\n    pub struct Point { x: i32 }\n    impl Point {\n        pub fn new() -> Self { Point { x: 0 } }\n    }\n}\nextern crate alloc;\nfn run() { use std::fmt; }\n",
        ),
        (
            Language::Python,
            "import os\nfrom typing import List\n\nclass Outer:\n    def run(self):\n        import json\n        return json\n\ndef make():\n    pass\n",
        ),
        (
            Language::JavaScript,
            "import fs from 'fs';\nconst path = require('path');\nclass Outer { run() {} }\nfunction make() {}\nconst helper = () => 1;\n",
        ),
        (
            Language::Cpp,
            "#include <vector>\nusing std::vector;\nnamespace geo {\nclass Shape { int run() { return 1; } };\n}\nint make() { return 0; }\n",
        ),
    ];
    for (language, text) in cases {
        let rope = ropey::Rope::from_str(text);
        let tree = crate::syntax::parse_rope(&mut language.parser(), &rope, None, None)
            .expect("fixture parses");
        let joined = outline::file_outline(language, &rope, &tree);
        let imports = outline::imports(language, &rope, &tree);
        assert!(imports.len() >= 2, "{language:?}: {imports:?}");
        assert_eq!(joined.imports, imports, "{language:?}");
        let apart = outline::definitions(language, &rope, &tree);
        assert!(apart.len() >= 3, "{language:?}: {apart:#?}");
        let together =
            outline::outline_definitions_matching(language, &rope, &tree, &joined, |_| true);
        assert_eq!(together, apart, "{language:?}");
    }
}

/// Remembers every text it was asked to count.
#[derive(Default)]
struct RecordingCounter(std::sync::Mutex<std::collections::HashSet<String>>);

impl TokenCounter for RecordingCounter {
    fn count_tokens(&self, text: &str) -> usize {
        self.0.lock().unwrap().insert(text.to_owned());
        BytesPerToken.count_tokens(text)
    }
}

/// Warming at open counts exactly the line texts a first prompt measures, so a remembering
/// counter answers all of them without tokenizing.
#[test]
fn warming_counts_the_lines_a_first_prompt_measures() {
    let mut body = String::new();
    for n in 0..200 {
        body.push_str(&format!(
            "    let value_{n} = input.len() + {n}; // note {n}\n"
        ));
    }
    let text =
        format!("//- src/lib.rs\nfn parse(input: &str) -> usize {{\n{body}    $0\n{body}}}\n");
    let fixture = fixture(&text);
    let warmed = RecordingCounter::default();
    let rope = &fixture.snapshot.current.rope;
    assert_eq!(
        warm_line_counts(rope, &warmed, MAX_WARM_LINES),
        rope.len_lines()
    );
    let asked = RecordingCounter::default();
    build(
        &fixture.snapshot,
        fixture.cursor_byte,
        &Budget {
            n_prompt_tokens: 1024,
        },
        &caps(true),
        &asked,
    );
    let warmed = warmed.0.into_inner().unwrap();
    let asked = asked.0.into_inner().unwrap();
    let lines: Vec<String> = rope.lines().map(|line| line.to_string()).collect();
    let asked_lines: Vec<&String> = asked.iter().filter(|text| lines.contains(text)).collect();
    assert!(
        asked_lines.len() > 50,
        "the prompt measures lines one by one: {}",
        asked_lines.len()
    );
    for text in asked_lines {
        assert!(warmed.contains(text), "not warmed: {text:?}");
    }
    assert_eq!(warm_line_counts(rope, &BytesPerToken, 10), 10);
}
