#!/usr/bin/env bash
# Runs every check Wellspring has: formatting, lints, unit and end-to-end tests, and the editor
# tests in a real Neovim and a real VS Code. Installs what it needs on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/test-models.sh
export WELLSPRING_TEST_MODEL="$PWD/models/tiny.gguf"

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
# The editor tests drive the binary `cargo test` just built for the end-to-end tests. A plain
# `cargo build` would build the dependencies again without the dev-dependencies' features,
# llama.cpp included (minutes on 2 cores).
export WELLSPRING_BIN="$PWD/target/debug/wellspring"

# Two minutes of the soak benchmark (docs/reliability.md): steady typing with completions, code
# actions and chats, cancellations and a client hanging up mid-chat; it fails on any error
# response, an unanswered request or a document that drifted from the editor's copy.
"$WELLSPRING_BIN" --model "$WELLSPRING_TEST_MODEL" bench soak --seconds 120 --sample-seconds 10

bash scripts/test-nvim.sh

# The portable release (docs/install.md), packed from the debug build `cargo test` makes with its
# features, so that the Vulkan tests below reuse that build: checked as a user gets it (checksum,
# `ldd`, a completion under `env -i`), then the VS Code test installs the extension package that
# carries it and runs with no wellspring.serverPath.
bash scripts/dist.sh --profile dev --vsix
bash scripts/test-dist.sh
WELLSPRING_BIN="" WELLSPRING_VSIX="$(ls -t dist/wellspring-*-linux-x64.vsix | head -1)" bash scripts/test-vscode.sh

# GPU offload without a GPU: the portable build's real-engine tests on Mesa's llvmpipe
# (docs/gpu.md).
bash scripts/test-vulkan.sh
