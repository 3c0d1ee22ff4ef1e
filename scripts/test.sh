#!/usr/bin/env bash
# Runs every check Wellspring has: formatting, lints, unit and end-to-end tests, and the editor
# tests in a real Neovim and a real VS Code. Installs what it needs on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# Runs one step and says how long it took, so that a CI log shows where the time goes.
timed() {
  local start=$SECONDS status=0
  "$@" || status=$?
  echo "test: $(( SECONDS - start ))s for: $* (exit $status)" >&2
  return "$status"
}

timed bash scripts/setup.sh
timed bash scripts/test-models.sh
export WELLSPRING_TEST_MODEL="$PWD/models/tiny.gguf"

# The background builds (llama-server here, the portable release further down): each runs in a
# process group of its own, which is killed if this script stops before it has waited for it.
llama_pid="" dist_pid=""
kill_background() {
  local pid
  for pid in $llama_pid $dist_pid; do
    kill -- -"$pid" 2>/dev/null || true
  done
}
trap kill_background EXIT

# Waits for background build PID: its whole LOG and the end of the run if it failed (WHAT says
# which), else the last N_TAIL lines of the log.
await_build() {
  local pid=$1 log=$2 what=$3 n_tail=$4 status=0
  timed wait "$pid" || status=$?
  if [ "$status" != 0 ]; then
    cat "$log" >&2
    echo "test: $what failed (exit $status; its log is above)" >&2
    exit 1
  fi
  tail -n "$n_tail" "$log" >&2
}

# llama-server for the tests against a real server (scripts/build-llama-server.sh: about 11 minutes
# on 2 cores the first time, nothing once built), at the lowest priority while the lints below run.
mkdir -p .test-artifacts
llama_log="$PWD/.test-artifacts/llama-server-build.log"
llama_path="$PWD/.test-artifacts/llama-server.path"
setsid -w nice -n 19 bash -c 'start=$SECONDS; bash scripts/build-llama-server.sh >"$1" && echo "test: $(( SECONDS - start ))s for llama-server, in the background" >&2' \
  bash "$llama_path" >"$llama_log" 2>&1 &
llama_pid=$!

# The Vulkan build's environment, for every cargo run here: cargo rebuilds the crates that compile
# C (and llama.cpp) when it changes, so the default build and the portable one below share them
# only if both see the same. The editor tests of the portable build run without
# GGML_VK_VISIBLE_DEVICES, as a user's machine would (ggml then skips the CPU-type device).
vulkan_env=$(timed bash scripts/setup-vulkan.sh)
eval "$vulkan_env"

timed cargo fmt --all -- --check
timed cargo clippy --all-targets --locked -- -D warnings
await_build "$llama_pid" "$llama_log" "the llama-server build" 3
llama_pid=""
WELLSPRING_LLAMA_SERVER=$(cat "$llama_path")
export WELLSPRING_LLAMA_SERVER
timed cargo test --locked
# The soak and the Neovim test drive the binary `cargo test` just built for the end-to-end tests (a
# plain `cargo build` would build the dependencies again without the dev-dependencies' features,
# llama.cpp included: minutes on 2 cores), copied out because the portable build below writes its
# own binary to the same place.
mkdir -p target/test-bin .test-artifacts
cp target/debug/wellspring target/test-bin/wellspring
export WELLSPRING_BIN="$PWD/target/test-bin/wellspring"

# The portable release (docs/install.md), packed from the debug build `cargo test` makes with its
# features, so that the Vulkan tests below reuse that build: checked as a user gets it (checksum,
# `ldd`, a completion under `env -i`), then the VS Code test installs the extension package that
# carries it and runs with no wellspring.serverPath. Its build (llama.cpp for every x86-64 level
# and the Vulkan shaders: the longest step) runs at the lowest priority while the soak and the
# Neovim test, which leave the CPUs idle much of the time, run in front of it. Whatever it needs
# from the network is fetched before.
timed bash scripts/package-vscode.sh --deps-only
dist_log="$PWD/.test-artifacts/dist.log"
setsid -w nice -n 19 bash -c 'start=$SECONDS; bash scripts/dist.sh --profile dev --vsix && echo "test: $(( SECONDS - start ))s for the portable build, in the background" >&2' \
  >"$dist_log" 2>&1 &
dist_pid=$!

# Two minutes of the soak benchmark (docs/reliability.md): steady typing with completions, code
# actions and chats, cancellations and a client hanging up mid-chat; it fails on any error
# response, an unanswered request or a document that drifted from the editor's copy.
timed "$WELLSPRING_BIN" --model "$WELLSPRING_TEST_MODEL" bench soak --seconds 120 --sample-seconds 10

timed bash scripts/test-nvim.sh

await_build "$dist_pid" "$dist_log" "the portable build" 20
dist_pid=""
timed env -u GGML_VK_VISIBLE_DEVICES bash scripts/test-dist.sh
vsix="$(ls -t dist/wellspring-*-linux-x64.vsix | head -1)"
WELLSPRING_BIN="" WELLSPRING_VSIX="$vsix" timed env -u GGML_VK_VISIBLE_DEVICES bash scripts/test-vscode.sh
# Once more with the real Qwen2.5-Coder 0.5B (scripts/test-models.sh fetches it), up to the accepted
# suggestion: the screenshot shows one a person would take, and its text is checked.
real_model="$PWD/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
if [ -f "$real_model" ]; then
  WELLSPRING_BIN="" WELLSPRING_VSIX="$vsix" WELLSPRING_TEST_MODEL="$real_model" WELLSPRING_EXPECT_GHOST="onacci(" \
    WELLSPRING_VSCODE_ARTIFACTS="$PWD/.test-artifacts/vscode-real-model" timed env -u GGML_VK_VISIBLE_DEVICES bash scripts/test-vscode.sh
else
  echo "test: $real_model is missing (no ../shared/tools/fetch_models.sh); the VS Code run with a real model is skipped" >&2
fi

# GPU offload without a GPU: the portable build's real-engine tests on Mesa's llvmpipe
# (docs/gpu.md).
timed bash scripts/test-vulkan.sh
