#!/usr/bin/env python3
"""Finds cross-file call sites in a corpus laid out by corpus.sh and writes benchmark cases.

A case is a call `name(` in one file whose callee is defined exactly once in the repository, in
another file. Definitions are found with plain regular expressions, independently of the
tree-sitter queries the prompt builder uses, so the benchmark does not grade the queries against
themselves. Selection is deterministic (hash order), capped per repository, callee and file.

    python3 bench/context/make-cases.py CORPUS REPO... > bench/context/cases.jsonl
"""
import hashlib
import json
import os
import re
import sys

EXTENSIONS = {
    ".rs": "rust", ".py": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".ts": "typescript", ".go": "go", ".c": "c", ".h": "c", ".cpp": "cpp", ".cc": "cpp",
    ".hpp": "cpp", ".java": "java", ".lua": "lua",
}
DEFINITION = {
    "rust": re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?"
                       r"(?:extern\s+\"[^\"]*\"\s+)?fn\s+([A-Za-z_]\w*)"),
    "python": re.compile(r"^\s*(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\("),
    "javascript": re.compile(r"^\s*(?:export\s+)?(?:default\s+)?(?:async\s+)?function\s*\*?\s*([A-Za-z_$][\w$]*)\s*\("),
    "typescript": re.compile(r"^\s*(?:export\s+)?(?:default\s+)?(?:async\s+)?function\s*\*?\s*([A-Za-z_$][\w$]*)\s*[<(]"),
    "go": re.compile(r"^func\s+(?:\([^)]*\)\s*)?([A-Za-z_]\w*)\s*[\[(]"),
    "c": re.compile(r"^(?!(?:if|while|for|switch|return|else|do|case|typedef|#)\b)[A-Za-z_][\w\s\*]*?\b([A-Za-z_]\w*)\s*\([^;]*$"),
    "cpp": re.compile(r"^(?!(?:if|while|for|switch|return|else|do|case|typedef|#)\b)[A-Za-z_][\w\s\*&:<>,]*?\b([A-Za-z_]\w*)\s*\([^;]*$"),
    "java": re.compile(r"^\s+(?:(?:public|private|protected|static|final|abstract|synchronized)\s+)+[\w<>\[\],\s]+\s([a-z]\w*)\s*\("),
    "lua": re.compile(r"^\s*(?:local\s+)?function\s+(?:[\w.]+[.:])?([A-Za-z_]\w*)\s*\("),
}
COMMENT = re.compile(r"^\s*(//|#|--|\*|/\*)")
MAX_CASES_PER_REPO = 40
MAX_PER_CALLEE = 1
MAX_PER_FILE = 2
MAX_FILE_BYTES = 512 * 1024


def source_files(root):
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in ("target", "build", "dist"))
        for name in sorted(filenames):
            language = EXTENSIONS.get(os.path.splitext(name)[1])
            path = os.path.join(dirpath, name)
            if language and os.path.getsize(path) <= MAX_FILE_BYTES:
                yield os.path.relpath(path, root), language


def read_lines(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().split("\n")
    except (UnicodeDecodeError, OSError):
        return None


def c_like_opens_body(lines, line_idx):
    """A C/C++ definition line is followed by `{` on it or on one of the next two lines."""
    for probe in lines[line_idx:line_idx + 3]:
        if "{" in probe:
            return True
        if ";" in probe:
            return False
    return False


def cases_for(corpus, repo):
    root = os.path.join(corpus, repo)
    files = {}
    definitions = {}
    for relative, language in source_files(root):
        lines = read_lines(os.path.join(root, relative))
        if lines is None:
            continue
        files[relative] = (language, lines)
        for line_idx, line in enumerate(lines):
            found = DEFINITION[language].match(line)
            if not found or len(found.group(1)) < 4:
                continue
            if language in ("c", "cpp") and not c_like_opens_body(lines, line_idx):
                continue
            definitions.setdefault(found.group(1), []).append((relative, line_idx, language))
    unique = {name: places[0] for name, places in definitions.items() if len(places) == 1}
    candidates = []
    for relative, (language, lines) in files.items():
        for line_idx, line in enumerate(lines):
            if COMMENT.match(line) or DEFINITION[language].match(line):
                continue
            for found in re.finditer(r"(?<![\w$])([A-Za-z_$][\w$]*)\s*\(", line):
                name = found.group(1)
                place = unique.get(name)
                if place is None or place[0] == relative or place[2] != language:
                    continue
                def_file, def_line, _ = place
                def_text = files[def_file][1][def_line]
                is_member_call = line[:found.start(1)].rstrip().endswith(".")
                if language in ("javascript", "typescript") and is_member_call:
                    # `xs.push(` is a method of some object, not the one free `function push`.
                    continue
                key_end = def_text.index(name, len(def_text) - len(def_text.lstrip())) + len(name)
                key = def_text[:key_end].strip()
                column = len(line[:found.end()]) + 1  # 1-based, just after the `(`
                digest = hashlib.sha1(f"{repo}:{relative}:{line_idx}:{name}".encode()).hexdigest()
                candidates.append((digest, {
                    "repo": repo, "language": language, "file": relative, "line": line_idx + 1,
                    "column": column, "call_column": found.start(1) + 1, "callee": name,
                    "def_file": def_file, "def_line": def_line + 1, "def_key": key,
                }))
    candidates.sort(key=lambda item: item[0])
    chosen, per_callee, per_file = [], {}, {}
    for _, case in candidates:
        if per_callee.get(case["callee"], 0) >= MAX_PER_CALLEE or per_file.get(case["file"], 0) >= MAX_PER_FILE:
            continue
        per_callee[case["callee"]] = per_callee.get(case["callee"], 0) + 1
        per_file[case["file"]] = per_file.get(case["file"], 0) + 1
        chosen.append(case)
        if len(chosen) == MAX_CASES_PER_REPO:
            break
    return chosen


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: make-cases.py CORPUS REPO...")
    corpus = sys.argv[1]
    for repo in sys.argv[2:]:
        cases = cases_for(corpus, repo)
        print(f"{repo}: {len(cases)} cases", file=sys.stderr)
        for case in cases:
            print(json.dumps(case, sort_keys=True))


if __name__ == "__main__":
    main()
