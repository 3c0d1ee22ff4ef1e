#!/usr/bin/env python3
"""Cuts line-completion cases out of real files in a corpus laid out by corpus.sh.

A case is one line of a source file, cut at a random character in the first half of its content
(after the indentation, which an editor types for the user); everything after the cut is
removed and is what a completion should produce. Trivial lines are skipped: blank, comment-only,
lone brackets, and lines shorter than MIN_CONTENT_CHARS. Selection is deterministic: candidates
are ordered by a hash of repo, file and line, and each cut comes from a generator seeded with the
same hash, so the same corpus always gives the same cases. Each language gets a quota, shared
evenly among its repositories, with at most MAX_PER_FILE cases per file.

    python3 bench/quality/make-cases.py CORPUS > bench/quality/cases.jsonl
    # The 21-case quick set: every 10th case of the 208-case first draft.
    python3 bench/quality/make-cases.py CORPUS --draft | awk 'NR % 10 == 5' > bench/quality/quick-cases.jsonl
    python3 bench/quality/make-cases.py CORPUS --draft | awk 'NR % 10 == 0' > bench/quality/quick-cases-2.jsonl
"""
import hashlib
import json
import os
import random
import re
import sys

EXTENSIONS = {
    ".rs": "rust", ".py": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".go": "go", ".c": "c", ".h": "c", ".cpp": "cpp",
    ".cc": "cpp", ".hpp": "cpp", ".java": "java", ".lua": "lua",
}
# Cases per language; a language with no source in the corpus simply gets none. About 100 cases
# keep one run of both systems near 40 minutes on a 2-core machine (prompts of ~2k tokens).
QUOTA = {
    "rust": 18, "python": 18, "javascript": 12, "typescript": 12, "c": 10, "cpp": 12, "lua": 12,
    "go": 6, "java": 10,
}
# The first draft's quotas (208 cases, too slow to run whole); the quick set samples it.
DRAFT_QUOTA = {
    "rust": 40, "python": 40, "javascript": 25, "typescript": 25, "c": 20, "cpp": 25, "lua": 25,
    "go": 8, "java": 20,
}
COMMENT = re.compile(r"^(//|#(?!include|define|if|else|endif|pragma)|--|\*|/\*|\"\"\"|''')")
PUNCTUATION_ONLY = re.compile(r"^[\s{}()\[\];,.:]*$")
MIN_CONTENT_CHARS = 10
MAX_LINE_CHARS = 160
MAX_PER_FILE = 2
MAX_FILE_BYTES = 256 * 1024
SKIPPED_DIRS = {"target", "build", "dist", "node_modules", "vendor", "__pycache__", "third_party"}
SEED = "wellspring-quality-1"


def source_files(root):
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames
                             if not d.startswith((".", "dist")) and d not in SKIPPED_DIRS)
        for name in sorted(filenames):
            # Declarations, minified bundles and CommonJS builds are generated, not written.
            if name.endswith((".d.ts", ".cjs")) or ".min." in name:
                continue
            language = EXTENSIONS.get(os.path.splitext(name)[1])
            path = os.path.join(dirpath, name)
            if language and os.path.getsize(path) <= MAX_FILE_BYTES:
                yield os.path.relpath(path, root), language


def read_lines(path):
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            text = handle.read()
    except (UnicodeDecodeError, OSError):
        return None
    if "\r" in text or "\0" in text:
        return None
    lines = text.split("\n")
    if lines and sum(len(line) for line in lines) / len(lines) > 100:
        return None  # minified or generated
    return lines


def worth_completing(line):
    content = line.strip()
    if len(content) < MIN_CONTENT_CHARS or len(line.rstrip()) > MAX_LINE_CHARS:
        return False
    if COMMENT.match(content) or PUNCTUATION_ONLY.match(content):
        return False
    return True


def candidates_for(corpus, repo):
    root = os.path.join(corpus, repo)
    out = []
    for relative, language in source_files(root):
        lines = read_lines(os.path.join(root, relative))
        if lines is None:
            continue
        in_docstring = False
        for line_idx, line in enumerate(lines):
            if language == "python" and line.count('"""') + line.count("'''") == 1:
                # Docstring text is prose: the lines inside one count as comments.
                in_docstring = not in_docstring
                continue
            if in_docstring or not worth_completing(line):
                continue
            digest = hashlib.sha1(f"{SEED}:{repo}:{relative}:{line_idx}".encode()).hexdigest()
            out.append((digest, repo, relative, language, line_idx, line))
    return out


def make_case(digest, repo, relative, language, line_idx, line):
    line = line.rstrip()
    indent = len(line) - len(line.lstrip())
    content = line[indent:]
    cut = indent + random.Random(digest).randint(0, len(content) // 2)
    return {
        "repo": repo, "language": language, "file": relative, "line": line_idx + 1,
        "column": cut + 1, "expected": line[cut:],
    }


def main():
    args = sys.argv[1:]
    quotas = QUOTA
    if args[1:] == ["--draft"]:
        quotas = DRAFT_QUOTA
        args = args[:1]
    if len(args) != 1:
        sys.exit("usage: make-cases.py CORPUS [--draft]")
    corpus = args[0]
    by_language = {}
    for repo in sorted(os.listdir(corpus)):
        for candidate in candidates_for(corpus, repo):
            by_language.setdefault(candidate[3], {}).setdefault(repo, []).append(candidate)
    cases = []
    for language, repos in sorted(by_language.items()):
        quota = quotas.get(language, 0)
        chosen = []
        # Round-robin over repositories in hash order, so each gets an even share.
        ordered = {repo: sorted(items) for repo, items in repos.items()}
        positions = {repo: 0 for repo in ordered}
        per_file = {}
        while len(chosen) < quota and any(positions[r] < len(ordered[r]) for r in ordered):
            for repo in sorted(ordered):
                if len(chosen) == quota:
                    break
                items = ordered[repo]
                while positions[repo] < len(items):
                    candidate = items[positions[repo]]
                    positions[repo] += 1
                    key = (repo, candidate[2])
                    if per_file.get(key, 0) < MAX_PER_FILE:
                        per_file[key] = per_file.get(key, 0) + 1
                        chosen.append(make_case(*candidate))
                        break
        print(f"{language}: {len(chosen)} cases from {len(repos)} repositories", file=sys.stderr)
        cases.extend(chosen)
    for case in cases:
        print(json.dumps(case, sort_keys=True, ensure_ascii=False))


if __name__ == "__main__":
    main()
