#!/usr/bin/env bash
# The portable Linux x86-64 release: one directory that runs on any x86-64 Linux with glibc and
# the C++ runtime, whatever the CPU and whether or not there is a GPU (docs/install.md).
#
#   wellspring                the binary; its run path is $ORIGIN, so it finds the rest beside it
#   libllama.so.0, libggml*.so.0
#                             llama.cpp and ggml, as the binary was linked against them
#   libggml-cpu-*.so          ggml's CPU backend for each x86-64 level (SSE4.2 to AVX-512); ggml
#                             loads the best one this CPU runs
#   libggml-vulkan.so         the Vulkan backend: any GPU with a Vulkan driver (needs the system's
#                             libvulkan.so.1; without it ggml skips this library)
#   libggml-cuda.so           the CUDA backend, when nvcc was present at build time (needs the
#                             CUDA runtime and cuBLAS libraries on the machine)
#   libgomp.so.1              GCC's OpenMP runtime, which the CPU backends use
#   README.md
#
# Writes into dist/ (or --out DIR): that directory, wellspring-VERSION-linux-x86_64.tar.xz and its
# .sha256, and with --vsix the VS Code extension carrying it (wellspring-VERSION-linux-x64.vsix).
#
# Usage: scripts/dist.sh [--profile release|dev] [--out DIR] [--no-vulkan] [--vsix]
#   --profile dev   packs the debug build that `cargo test` makes (its dependencies, llama.cpp
#                   among them, are optimised anyway); CI uses it, because the Vulkan tests that
#                   follow share that build
#   --no-vulkan     leaves the Vulkan backend out (no Vulkan headers needed to build)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

profile=release
out=$root/dist
vulkan=1
vsix=0
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-vulkan) vulkan=0; shift ;;
    --vsix) vsix=1; shift ;;
    *) echo "dist: unknown argument $1 (see the comment at the top of $0)" >&2; exit 2 ;;
  esac
done
case "$profile" in
  release | dev) ;;
  *) echo "dist: --profile is release or dev, not $profile" >&2; exit 2 ;;
esac
[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || {
  echo "dist: builds the Linux x86-64 release only (this is $(uname -s) $(uname -m))" >&2
  exit 1
}
log() { echo "dist: $*" >&2; }

features=dynamic-backends
if [ "$vulkan" = 1 ]; then
  eval "$(bash scripts/setup-vulkan.sh)"
  features+=,vulkan
fi
if command -v nvcc >/dev/null; then
  features+=,cuda
fi
# The version, and the target directory (CARGO_TARGET_DIR and config included), from one query.
read -r version target_dir < <(cargo metadata --format-version 1 --no-deps --locked | python3 -c '
import json, sys
metadata = json.load(sys.stdin)
print([p["version"] for p in metadata["packages"] if p["name"] == "wellspring"][0], metadata["target_directory"])')
name=wellspring-$version-linux-x86_64

# llama-cpp-sys-2 links its libraries into the profile's directory unless a file of that name
# `exists()`, which is false for a dangling link, so a second build of it there (another feature
# set, or `cargo build` after `cargo test`) fails with "File exists" on the links the first one
# left. Dangling links of its libraries are removed first.
profile_dir=$target_dir/$([ "$profile" = release ] && echo release || echo debug)
if [ -d "$profile_dir" ]; then
  find "$profile_dir" -maxdepth 2 -xtype l \( -name 'libggml*.so*' -o -name 'libllama*.so*' \) -delete
fi

# The build. Its JSON messages name the binary and llama-cpp-sys-2's build directory, whichever
# target directory and feature hash this build got.
log "building $profile with --features $features"
messages=$(mktemp)
trap 'rm -f "$messages"' EXIT
if [ "$profile" = release ]; then
  cargo build --locked -p wellspring --bin wellspring --release --features "$features" \
    --message-format=json-render-diagnostics >"$messages"
else
  # The build `cargo test` makes (dev-dependencies' features included), so that the tests run
  # next with the same features (scripts/test-vulkan.sh) reuse it, llama.cpp and all.
  cargo test --no-run --locked -p wellspring --features "$features" \
    --message-format=json-render-diagnostics >"$messages"
fi
read -r binary sys_out < <(python3 - "$messages" <<'EOF'
import json, sys
binary = sys_out = None
for line in open(sys.argv[1]):
    try:
        message = json.loads(line)
    except ValueError:
        continue
    if message.get("reason") == "compiler-artifact" and message["target"]["name"] == "wellspring" \
            and "bin" in message["target"]["kind"] and not message["profile"]["test"]:
        binary = message["executable"]
    if message.get("reason") == "build-script-executed" and "llama-cpp-sys-2" in message["package_id"]:
        sys_out = message["out_dir"]
print(binary, sys_out)
EOF
)
[ -x "$binary" ] && [ -d "$sys_out/backends" ] || {
  log "the build did not leave a binary and ggml's backends (binary: $binary, llama-cpp-sys-2: $sys_out)"
  exit 1
}

stage=$out/$name
log "staging $stage"
rm -rf "$stage" && mkdir -p "$stage"
cp "$binary" "$stage/wellspring"
# llama.cpp's and ggml's libraries under the names the binary asks for.
for lib in $(readelf -d "$binary" | sed -n 's/.*Shared library: \[\(lib\(ggml\|llama\)[^]]*\)\].*/\1/p'); do
  cp -L "$sys_out/lib/$lib" "$stage/$lib"
done
cp "$sys_out"/backends/lib*.so "$stage/"
# On an AMX-capable Xeon (the machine this project builds on), the Sapphire Rapids variant died of
# SIGILL in a `tilezero` on batched Q8_0 products, and the Zen 4 variant, which ggml ranks next on
# such a CPU, segfaulted once; the Ice Lake variant ran everything (docs/gpu.md, known issues).
# Those CPUs get the Ice Lake variant until the cause is known upstream.
rm -f "$stage/libggml-cpu-sapphirerapids.so" "$stage/libggml-cpu-zen4.so"
# The CPU backends link GCC's OpenMP runtime, which minimal systems lack. The binary loads it
# first from beside itself ($ORIGIN; server/build.rs makes it a dependency of this build), so the
# backends ggml opens later find it already loaded.
if readelf -d "$stage"/libggml-cpu-x64.so | grep -q 'libgomp.so.1'; then
  cp -L "$(gcc -print-file-name=libgomp.so.1)" "$stage/libgomp.so.1"
fi
strip --strip-unneeded "$stage"/wellspring "$stage"/*.so* 2>/dev/null || true

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
backends_list=$(cd "$stage" && ls libggml-*.so | sed 's/^/- /')
cat >"$stage/README.md" <<EOF
# Wellspring $version for Linux x86-64

A language server that keeps a coding model resident on your own machine and serves code completion, code actions and chat to your editor.
Built from commit $commit with \`--features $features\`.

## Run

\`\`\`sh
./wellspring --version
./wellspring doctor                        # what this machine can run: devices, memory, the model's plan
./wellspring serve                         # the language server, on stdio (editors start it themselves)
./wellspring complete FILE:LINE:COL        # one completion on the command line
\`\`\`

Put this directory anywhere (for example \`~/.local/lib/wellspring\`) and link the binary onto your PATH (\`ln -s ~/.local/lib/wellspring/wellspring ~/.local/bin/\`); keep the files together.
The VS Code extension for Linux carries this same directory, and the Neovim plugin installs it with \`:WellspringInstall\`.

## What is inside

The binary needs only glibc and the C++ runtime from the system; everything else lies beside it.
ggml picks the CPU backend this processor runs best, and a GPU backend when the GPU's driver is present:

$backends_list

- \`libggml-vulkan.so\` needs the system's Vulkan loader (\`libvulkan.so.1\`) and a GPU driver with Vulkan; without them ggml leaves it unloaded and the model runs on the CPU.
- \`libggml-cuda.so\`, when present, needs the CUDA runtime and cuBLAS libraries of the toolkit it was built with.
- \`WELLSPRING_BACKENDS_DIR=DIR\` loads the backends from another directory instead.

The model is set in the editor's settings or in \`~/.config/wellspring/config.toml\`; the first run downloads the default model only when asked.
EOF

log "packing $name.tar.xz"
rm -f "$out/$name.tar.xz" "$out/$name.tar.xz.sha256"
XZ_OPT="-T0 -6" tar -C "$out" -cJf "$out/$name.tar.xz" "$name"
(cd "$out" && sha256sum "$name.tar.xz" >"$name.tar.xz.sha256")
du -sh "$stage" "$out/$name.tar.xz" >&2

if [ "$vsix" = 1 ]; then
  bash scripts/package-vscode.sh --server "$stage" --out "$out/wellspring-$version-linux-x64.vsix"
fi
log "done: $out/$name.tar.xz"
