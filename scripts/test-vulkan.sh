#!/usr/bin/env bash
# GPU offload tested without a GPU: runs the real-engine tests with every layer offloaded to Mesa's
# llvmpipe, a Vulkan device that runs on the CPU (scripts/setup-vulkan.sh installs it). The tests
# check that the layers really are on the Vulkan device (`WELLSPRING_TEST_BACKEND`), that greedy
# completions agree with the CPU's on fixed prompts, and that every editor feature works end to
# end through the language server.
#
# It tests the build that ships: the portable release's features (`dynamic-backends,vulkan`), with
# ggml's backends loaded from the release directory that scripts/dist.sh packs from this same
# build (`--profile dev`, made first when dist/ lacks it). The default build stays CPU-only; this
# one shares target/ with it (only llama.cpp and the crates that compile C differ).
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
release="$PWD/dist/wellspring-$version-linux-x86_64"
if [ ! -x "$release/wellspring" ]; then
  bash scripts/dist.sh --profile dev
fi
eval "$(bash scripts/setup-vulkan.sh)"
export WELLSPRING_TEST_MODEL=${WELLSPRING_TEST_MODEL:-$PWD/models/tiny.gguf}
export WELLSPRING_TEST_BACKEND=vulkan
export WELLSPRING_BACKENDS_DIR="$release"
features=dynamic-backends,vulkan

cargo test --locked -p wellspring --features "$features" --no-run

# Runs `deadline.sh SECONDS COMMAND...` once more when it hangs. llvmpipe has hung these tests now
# and then (two runs of about ten on 2 busy cores, 2026-12-02): inside a `llama_decode`, the engine
# thread waiting in Mesa's lvp on what ggml-vulkan submitted, and every other thread idle, with
# nothing of Wellspring's in flight elsewhere (docs/gpu.md). The hang's stacks are printed, and a
# failed test, or a second hang, fails the run.
once_more_on_a_hang() {
  local status=0
  bash scripts/deadline.sh "$@" || status=$?
  if [ "$status" = 124 ]; then
    echo "test-vulkan: that run hung (its threads are above); running it once more" >&2
    status=0
    bash scripts/deadline.sh "$@" || status=$?
  fi
  return "$status"
}

# The engine's real-backend tests, the offload agreement test among them, one at a time: two
# engines of one process on one software device is not what these tests check, and a CI run once
# hung with two of them in flight. Locally they take under a minute; the deadline stops a hang
# early and prints where each thread was.
once_more_on_a_hang 300 cargo test --locked -p wellspring --features "$features" --lib engine::llama_tests -- --test-threads=1
# Every editor feature through the language server, and the shared engine process, also one at a
# time: llvmpipe shares the CPUs between every engine running, and a chat test among several at
# once once took longer than the tests wait for an answer.
once_more_on_a_hang 900 cargo test --locked -p wellspring --features "$features" --test lsp -- features:: shared_engine:: --test-threads=1
