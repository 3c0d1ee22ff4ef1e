#!/usr/bin/env bash
# Runs every check Wellspring has: formatting, lints, unit and end-to-end tests, and the editor
# tests in a real Neovim and a real VS Code. Installs what it needs on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# Runs one step and says how long it took, so that a CI log shows where the time goes.
timed() {
  local start=$SECONDS
  "$@"
  echo "test: $(( SECONDS - start ))s for: $*" >&2
}

timed bash scripts/setup.sh
timed bash scripts/test-models.sh
export WELLSPRING_TEST_MODEL="$PWD/models/tiny.gguf"

timed cargo fmt --all -- --check
timed cargo clippy --all-targets --locked -- -D warnings
timed cargo test --locked
# The editor tests drive the binary `cargo test` just built for the end-to-end tests. A plain
# `cargo build` would build the dependencies again without the dev-dependencies' features,
# llama.cpp included (minutes on 2 cores).
export WELLSPRING_BIN="$PWD/target/debug/wellspring"

# Two minutes of the soak benchmark (docs/reliability.md): steady typing with completions, code
# actions and chats, cancellations and a client hanging up mid-chat; it fails on any error
# response, an unanswered request or a document that drifted from the editor's copy.
timed "$WELLSPRING_BIN" --model "$WELLSPRING_TEST_MODEL" bench soak --seconds 120 --sample-seconds 10

timed bash scripts/test-nvim.sh

# The portable release (docs/install.md), packed from the debug build `cargo test` makes with its
# features, so that the Vulkan tests below reuse that build: checked as a user gets it (checksum,
# `ldd`, a completion under `env -i`), then the VS Code test installs the extension package that
# carries it and runs with no wellspring.serverPath.
timed bash scripts/dist.sh --profile dev --vsix
timed bash scripts/test-dist.sh
vsix="$(ls -t dist/wellspring-*-linux-x64.vsix | head -1)"
WELLSPRING_BIN="" WELLSPRING_VSIX="$vsix" timed bash scripts/test-vscode.sh
# Once more with the real Qwen2.5-Coder 0.5B (scripts/test-models.sh fetches it), up to the accepted
# suggestion: the screenshot shows one a person would take, and its text is checked.
real_model="$PWD/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
if [ -f "$real_model" ]; then
  WELLSPRING_BIN="" WELLSPRING_VSIX="$vsix" WELLSPRING_TEST_MODEL="$real_model" WELLSPRING_EXPECT_GHOST="onacci(" \
    WELLSPRING_VSCODE_ARTIFACTS="$PWD/.test-artifacts/vscode-real-model" timed bash scripts/test-vscode.sh
else
  echo "test: $real_model is missing (no ../shared/tools/fetch_models.sh); the VS Code run with a real model is skipped" >&2
fi

# GPU offload without a GPU: the portable build's real-engine tests on Mesa's llvmpipe
# (docs/gpu.md).
timed bash scripts/test-vulkan.sh
