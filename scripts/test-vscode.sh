#!/usr/bin/env bash
# Real-editor test of editors/vscode: packages the extension, installs it into code-server (the
# real VS Code workbench, served on 127.0.0.1) and drives it with headless Chromium against the
# real wellspring server on the tiny test model. Installs what it needs on a fresh Debian machine.
#
# Environment: WELLSPRING_VSIX (an extension package to test; default: one packaged here),
# WELLSPRING_BIN (the server the extension is pointed at with wellspring.serverPath; default:
# target/debug/wellspring, built if missing, unless WELLSPRING_VSIX is given, whose own server is
# then used with no serverPath set),
# WELLSPRING_TEST_MODEL (default: models/tiny.gguf), WELLSPRING_VSCODE_CACHE (where code-server
# is installed; default editors/vscode/.e2e), WAIT_SCALE (stretches the test's bounded waits).
# WELLSPRING_EXPECT_GHOST (with a real model: the start its suggestion must have; the run ends
# once it is accepted). Screenshots and logs go to .test-artifacts/vscode/ (or
# $WELLSPRING_VSCODE_ARTIFACTS).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ext="$root/editors/vscode"
cache="${WELLSPRING_VSCODE_CACHE:-$ext/.e2e}"
code_server_version=4.100.3
artifacts="${WELLSPRING_VSCODE_ARTIFACTS:-$root/.test-artifacts/vscode}"
begin=$SECONDS

log() { echo "[test-vscode $((SECONDS - begin))s] $*"; }
die() {
    echo "test-vscode: error: $*" >&2
    exit 1
}

# System packages: Chromium to drive the workbench, ripgrep and libkrb5 + a C++ toolchain for
# code-server's native modules, npm (which then fetches Node 20 when the system Node is another).
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v rg >/dev/null || missing+=(ripgrep)
command -v g++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
command -v python3 >/dev/null || missing+=(python3)
command -v npm >/dev/null || missing+=(nodejs npm)
dpkg -s libkrb5-dev >/dev/null 2>&1 || missing+=(libkrb5-dev)
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# code-server $code_server_version runs on Node 20 only.
eval "$(bash "$root/scripts/node-env.sh")"
# Native modules build against the running Node's own headers (node-gyp cannot download them).
npm_config_nodedir="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
[[ -f $npm_config_nodedir/include/node/common.gypi ]] ||
    die "Node $(node --version) at $npm_config_nodedir has no headers (include/node) to build native modules"
export npm_config_nodedir

# The server and the model.
if [[ -z ${WELLSPRING_BIN:-} && -n ${WELLSPRING_VSIX:-} ]]; then
    log "testing the server $WELLSPRING_VSIX carries (no wellspring.serverPath)"
elif [[ -z ${WELLSPRING_BIN:-} ]]; then
    log "cargo build --bin wellspring"
    (cd "$root" && cargo build --quiet --bin wellspring)
    WELLSPRING_BIN="$root/target/debug/wellspring"
fi
[[ -z ${WELLSPRING_BIN:-} || -x $WELLSPRING_BIN ]] || die "server binary $WELLSPRING_BIN is missing or not executable"
WELLSPRING_TEST_MODEL="${WELLSPRING_TEST_MODEL:-$root/models/tiny.gguf}"
[[ -f $WELLSPRING_TEST_MODEL ]] ||
    die "test model $WELLSPRING_TEST_MODEL not found; run scripts/test-models.sh (or set WELLSPRING_TEST_MODEL)"

# code-server, installed once per cache folder: its npm postinstall needs the internet, so the
# steps are done here by hand with the apt ripgrep in place of the downloaded one.
install_code_server() {
    local dir="$1"
    rm -rf "$dir"
    mkdir -p "$dir"
    cd "$dir"
    echo '{"private": true}' >package.json
    npm install --ignore-scripts --no-audit --no-fund --loglevel=error "code-server@$code_server_version"
    cd node_modules/code-server/lib/vscode
    npm install --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error
    mkdir -p node_modules/@vscode/ripgrep/bin
    ln -sf "$(command -v rg)" node_modules/@vscode/ripgrep/bin/rg
    JOBS=max npm_config_yes=true npm rebuild --loglevel=error node-pty @parcel/watcher @vscode/spdlog \
        @vscode/deviceid native-watchdog kerberos
    # What code-server's postinstall.sh would link.
    ln -sfn node_modules node_modules.asar
    ln -sf code-linux.sh bin/remote-cli/code-server
    ln -sf browser-linux.sh bin/helpers/browser.sh
    (cd extensions && npm install --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)
    cd "$dir"
    npm rebuild --loglevel=error argon2
    touch "$dir/.installed"
}
code_server_dir="$cache/code-server-$code_server_version"
if [[ ! -f $code_server_dir/.installed ]]; then
    log "installing code-server $code_server_version into $code_server_dir"
    (install_code_server "$code_server_dir") || die "installing code-server failed"
fi

# The extension: the package given (WELLSPRING_VSIX, e.g. the Linux package scripts/dist.sh --vsix
# makes, which carries its server), else one packaged from the working tree.
if [[ -z ${WELLSPRING_VSIX:-} ]]; then
    log "packaging the extension"
    bash "$root/scripts/package-vscode.sh" || die "packaging the extension failed"
    WELLSPRING_VSIX="$ext/wellspring.vsix"
fi
[[ -f $WELLSPRING_VSIX ]] || die "extension package $WELLSPRING_VSIX not found"
# The test itself runs on the extension's npm dependencies (Playwright).
bash "$root/scripts/package-vscode.sh" --deps-only || die "installing the extension's npm dependencies failed"

log "running the workbench test"
rm -rf "$artifacts"
CODE_SERVER_ENTRY="$code_server_dir/node_modules/code-server/out/node/entry.js" \
    WELLSPRING_BIN="${WELLSPRING_BIN:-}" WELLSPRING_TEST_MODEL="$WELLSPRING_TEST_MODEL" \
    WELLSPRING_VSIX="$WELLSPRING_VSIX" ARTIFACTS_DIR="$artifacts" \
    node "$ext/test/e2e.mjs" || die "the VS Code workbench test failed (screenshots and logs in $artifacts)"
log "passed"
