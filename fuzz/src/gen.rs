//! Generators the targets share: text that stresses line breaks and encodings, JSON that looks
//! enough like LSP params to get past the first field, and numbers from the edges of each type.
//!
//! The generators only produce values; what a target does with them, and what it checks, is the
//! target's business.

use std::fmt;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::Value;

/// Bytes that print as an escaped byte string in failure reports, not as a column of numbers.
#[derive(Clone, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

/// Characters and fragments that have broken position code somewhere: every line terminator LSP
/// knows and some it does not, characters of every UTF-8 and UTF-16 width, combining marks, NUL
/// (which turns a document binary) and the brackets and quotes that steer a parser.
const AWKWARD_PIECES: &[&str] = &[
    "\n",
    "\r\n",
    "\r",
    "\r\r\n",
    "\n\r",
    "\t",
    "é",
    "λ",
    "日本",
    "😀",
    "👩\u{200d}💻",
    "e\u{301}",
    "\u{feff}",
    "\u{2028}",
    "\u{2029}",
    "\u{85}",
    "\u{b}",
    "\u{c}",
    "\u{10ffff}",
    "\u{fffd}",
    "{",
    "}",
    "(",
    ")",
    "\"",
    "'",
    "`",
    "/*",
    "*/",
    "//",
    "#",
    ";",
    ":",
    "    ",
    "fn f() {\n",
    "def f(a):\n    ",
    "function g() {",
    "int main(void) {",
    "let x = 1;",
    "return",
];

/// One piece of text: mostly plain words and awkward fragments, now and then any `char` at all.
pub fn text_piece() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "[a-z_]{1,6}",
        2 => Just(" ".to_owned()),
        8 => prop::sample::select(AWKWARD_PIECES).prop_map(str::to_owned),
        1 => Just("\u{0}".to_owned()),
        2 => any::<char>().prop_map(String::from),
    ]
    .boxed()
}

/// Text of up to `max_pieces` pieces.
pub fn text(max_pieces: usize) -> BoxedStrategy<String> {
    vec(text_piece(), 0..=max_pieces)
        .prop_map(|pieces| pieces.concat())
        .boxed()
}

/// Integers from the edges: LSP positions are `u32`, versions `i32`, and JSON numbers go past both.
pub fn edge_integer() -> BoxedStrategy<i64> {
    prop_oneof![
        4 => 0..8_i64,
        1 => prop::sample::select(vec![
            -1,
            i64::from(i32::MAX),
            i64::from(i32::MIN),
            i64::from(u32::MAX),
            i64::from(u32::MAX) + 1,
            1 << 53,
            i64::MAX,
            i64::MIN,
        ]),
        1 => any::<i64>(),
    ]
    .boxed()
}

/// A position component as a client might send it: usually a small valid number, sometimes a
/// number from the edges, sometimes not a number at all.
pub fn position_component() -> BoxedStrategy<Value> {
    prop_oneof![
        20 => (0..12_u32).prop_map(Value::from),
        2 => prop::sample::select(vec![u32::MAX, u32::MAX - 1]).prop_map(Value::from),
        2 => edge_integer().prop_map(Value::from),
        1 => json_leaf(),
    ]
    .boxed()
}

/// LSP field names and values servers switch on, so random objects reach past the first check.
const KEYS: &[&str] = &[
    "textDocument",
    "uri",
    "position",
    "line",
    "character",
    "range",
    "start",
    "end",
    "version",
    "text",
    "languageId",
    "contentChanges",
    "context",
    "diagnostics",
    "message",
    "only",
    "triggerKind",
    "selectedCompletionInfo",
    "command",
    "arguments",
    "chatId",
    "question",
    "history",
    "role",
    "content",
    "instruction",
    "data",
    "action",
    "byteRange",
    "job",
    "title",
    "kind",
    "settings",
    "wellspring",
    "completion",
    "context",
    "chat",
    "enabled",
    "max_tokens",
    "capabilities",
    "id",
    "workDoneToken",
    "partialResultToken",
];

/// An object key: mostly one LSP uses, sometimes any short string.
pub fn json_key() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => text(2),
    ]
    .boxed()
}

/// A JSON scalar.
pub fn json_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        edge_integer().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text(4).prop_map(Value::from),
        prop::sample::select(URIS).prop_map(Value::from),
    ]
    .boxed()
}

/// Any JSON value, a few levels deep.
pub fn json_value() -> BoxedStrategy<Value> {
    json_leaf()
        .prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..5).prop_map(Value::Array),
                btree_map(json_key(), inner, 0..5)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
        .boxed()
}

/// A language id and a document URI for each grammar Wellspring parses, and plain text.
pub const LANGUAGES: &[(&str, &str)] = &[
    ("rust", "file:///w/a.rs"),
    ("python", "file:///w/a.py"),
    ("javascript", "file:///w/a.js"),
    ("typescriptreact", "file:///w/a.tsx"),
    ("go", "file:///w/a.go"),
    ("c", "file:///w/a.c"),
    ("cpp", "file:///w/a.cc"),
    ("java", "file:///w/a.java"),
    ("lua", "file:///w/a.lua"),
    ("plaintext", "file:///w/notes.txt"),
];

/// URIs the targets use, plus some no document has.
pub const URIS: &[&str] = &[
    "file:///w/scratch.rs",
    "file:///w/scratch.py",
    "file:///w/other.ts",
    "file:///w/no%20such%20file.go",
    "untitled:Untitled-1",
    "file:///",
    "",
    "not a uri",
    "file:///w/%E6%97%A5%E6%9C%AC.c",
];

/// How a target damages a well-shaped value, to reach the code behind the first check.
#[derive(Debug, Clone)]
pub enum Damage {
    /// Leave the value as it is.
    None,
    /// In the container numbered `at` (modulo their count, outermost first), remove the entry
    /// numbered `entry` (modulo its size).
    DropKey { at: usize, entry: usize },
    /// Replace the entry numbered `entry` in the container numbered `at` by `value`; one number
    /// past the last container stands for the whole value.
    Replace {
        at: usize,
        entry: usize,
        value: Value,
    },
}

pub fn damage() -> BoxedStrategy<Damage> {
    prop_oneof![
        6 => Just(Damage::None),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(at, entry)| Damage::DropKey { at, entry }),
        2 => (any::<usize>(), any::<usize>(), json_value())
            .prop_map(|(at, entry, value)| Damage::Replace { at, entry, value }),
    ]
    .boxed()
}

/// Every container in `value`, outermost first, as JSON pointers.
fn containers(value: &Value, pointer: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            out.push(pointer.clone());
            for (key, child) in map {
                let key = key.replace('~', "~0").replace('/', "~1");
                containers(child, format!("{pointer}/{key}"), out);
            }
        }
        Value::Array(items) => {
            out.push(pointer.clone());
            for (index, child) in items.iter().enumerate() {
                containers(child, format!("{pointer}/{index}"), out);
            }
        }
        _ => {}
    }
}

/// Applies `damage` to `value`.
pub fn apply_damage(value: &mut Value, damage: &Damage) {
    let mut pointers = Vec::new();
    containers(value, String::new(), &mut pointers);
    match damage {
        Damage::None => {}
        Damage::DropKey { at, entry } => {
            if pointers.is_empty() {
                return;
            }
            match value.pointer_mut(&pointers[at % pointers.len()]) {
                Some(Value::Object(map)) if !map.is_empty() => {
                    let key = map.keys().nth(entry % map.len()).cloned();
                    if let Some(key) = key {
                        map.remove(&key);
                    }
                }
                Some(Value::Array(items)) if !items.is_empty() => {
                    items.remove(entry % items.len());
                }
                _ => {}
            }
        }
        Damage::Replace {
            at,
            entry,
            value: replacement,
        } => {
            let place = at % (pointers.len() + 1);
            if place == pointers.len() {
                *value = replacement.clone();
                return;
            }
            match value.pointer_mut(&pointers[place]) {
                Some(Value::Object(map)) if !map.is_empty() => {
                    let key = map.keys().nth(entry % map.len()).cloned();
                    if let Some(key) = key {
                        map.insert(key, replacement.clone());
                    }
                }
                Some(Value::Array(items)) if !items.is_empty() => {
                    let index = entry % items.len();
                    items[index] = replacement.clone();
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn damaged(mut value: Value, damage: Damage) -> Value {
        apply_damage(&mut value, &damage);
        value
    }

    #[test]
    fn damage_drops_and_replaces_entries_anywhere_in_the_value() {
        let value = json!({"a": {"b": 1, "c": [2, 3]}});
        assert_eq!(damaged(value.clone(), Damage::None), value);
        // Containers, outermost first: "", "/a", "/a/c".
        assert_eq!(
            damaged(value.clone(), Damage::DropKey { at: 1, entry: 0 }),
            json!({"a": {"c": [2, 3]}})
        );
        assert_eq!(
            damaged(
                value.clone(),
                Damage::Replace {
                    at: 2,
                    entry: 1,
                    value: json!("x")
                }
            ),
            json!({"a": {"b": 1, "c": [2, "x"]}})
        );
        assert_eq!(
            damaged(
                value,
                Damage::Replace {
                    at: 3,
                    entry: 0,
                    value: json!(null)
                }
            ),
            json!(null)
        );
    }
}
