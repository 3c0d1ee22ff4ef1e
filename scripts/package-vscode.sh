#!/usr/bin/env bash
# Packages the VS Code extension (editors/vscode).
#
#   scripts/package-vscode.sh                      editors/vscode/wellspring.vsix, for every
#                                                  platform; it runs `wellspring` from PATH or
#                                                  `wellspring.serverPath`
#   scripts/package-vscode.sh --server DIR [--out FILE]
#                                                  the Linux x64 package, carrying DIR (the portable
#                                                  build from scripts/dist.sh) as its server
#   scripts/package-vscode.sh --deps-only          only installs the extension's npm dependencies
#                                                  (the workbench test's Playwright among them)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ext="$root/editors/vscode"
server=""
out=""
deps_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --server) server=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --deps-only) deps_only=1; shift ;;
    *) echo "package-vscode: unknown argument $1" >&2; exit 2 ;;
  esac
done

eval "$(bash "$root/scripts/node-env.sh")"
cd "$ext"
# npm ci only when the lockfile changed since the last install.
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ ! -f node_modules/.lock-sum || $(cat node_modules/.lock-sum) != "$lock_sum" ]]; then
  echo "package-vscode: npm ci (editors/vscode)" >&2
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
  echo "$lock_sum" >node_modules/.lock-sum
fi
[[ $deps_only == 0 ]] || exit 0
npx --no-install tsc --noEmit
options=(--no-dependencies --skip-license --allow-missing-repository)
if [[ -z $server ]]; then
  rm -rf server
  npx --no-install vsce package "${options[@]}" -o "${out:-$ext/wellspring.vsix}" >&2
  exit 0
fi
[[ -x $server/wellspring ]] || { echo "package-vscode: $server/wellspring is not an executable" >&2; exit 1; }
# The server goes into server/ for this package only (.vscodeignore lets server/ in).
rm -rf server
trap 'rm -rf "$ext/server"' EXIT
mkdir server
cp -a "$server"/. server/
npx --no-install vsce package "${options[@]}" --target linux-x64 -o "${out:-$ext/wellspring-linux-x64.vsix}" >&2
