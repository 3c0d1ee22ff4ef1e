#!/usr/bin/env bash
# GPU offload tested without a GPU: builds the `vulkan` feature and runs the real-engine tests with
# every layer offloaded to Mesa's llvmpipe, a Vulkan device that runs on the CPU
# (scripts/setup-vulkan.sh installs it). The tests check that the layers really are on the Vulkan
# device (`WELLSPRING_TEST_BACKEND`), that greedy completions agree with the CPU's on fixed
# prompts, and that every editor feature works end to end through the language server.
# The default build stays CPU-only; this build shares target/ with it (only llama.cpp and the
# crates that compile C differ), so it costs the Vulkan backend's compile and little else.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(bash scripts/setup-vulkan.sh)"
export WELLSPRING_TEST_MODEL=${WELLSPRING_TEST_MODEL:-$PWD/models/tiny.gguf}
export WELLSPRING_TEST_BACKEND=vulkan

# The engine's real-backend tests, the offload agreement test among them.
cargo test --locked -p wellspring --features vulkan --lib engine::llama_tests
# Every editor feature through the language server, and the shared engine process.
cargo test --locked -p wellspring --features vulkan --test lsp -- features:: shared_engine::
