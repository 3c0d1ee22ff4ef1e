#!/usr/bin/env bash
# Puts together a CUDA toolkit from NVIDIA's wheels on PyPI, on a machine without one, and prints
# the environment a CMake build with ggml's CUDA backend takes (source it:
# `eval "$(bash scripts/setup-cuda.sh)"`). It is how `scripts/gpu-bench.sh build --backend cuda`
# is tested on machines without a GPU: CUDA code compiles without one.
#
# - The version is the GPU machines' own (nvcc 13.0 there), so a build that passes here is the
#   build that runs there. CUDA_WHEELS_VERSION picks another 13.x release.
# - NVIDIA's cu13 wheels unpack into one toolkit tree (bin/nvcc, nvvm/, include/, lib/), which
#   lacks nvcc's lib64 (a link to lib here), the unversioned library names a link asks for
#   (libcudart.so, libcublas.so) and the driver's link stub (lib/stubs/libcuda.so, which
#   ggml-cuda links for its virtual memory calls). The names are links to the versioned files; the stub is a library named
#   libcuda.so.1 whose functions do nothing, made from cuda.h's names: the driver's own
#   libcuda.so.1 gives the real ones where the library runs, as with NVIDIA's stub.
# - With nvcc already on the PATH (a CUDA machine), it prints nothing and changes nothing.
# Safe to run again: it fetches only what is missing. Its progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v nvcc >/dev/null; then
  exit 0
fi
if [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "export PATH='/usr/local/cuda/bin':\$PATH"
  exit 0
fi

version=${CUDA_WHEELS_VERSION:-13.0}
toolkit="$PWD/.cuda-toolkit/$version"
root="$toolkit/nvidia/cu13"
if [ ! -x "$root/bin/nvcc" ] || [ ! -e "$root/lib/stubs/libcuda.so" ]; then
  # The releases of 13.0 that NVIDIA put on PyPI (the runtime, cuBLAS and CCCL are numbered
  # on their own).
  case $version in
    13.0) wheels=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
      nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cublas==13.0.2.14) ;;
    *) wheels=("nvidia-cuda-nvcc==$version.*" "nvidia-cuda-crt==$version.*" "nvidia-nvvm==$version.*"
      "nvidia-cuda-runtime==$version.*" "nvidia-cuda-cccl==$version.*" "nvidia-cublas") ;;
  esac
  echo "setup-cuda: fetching CUDA $version's compiler, runtime and cuBLAS from PyPI (about 500 MiB)" >&2
  download=$(mktemp -d)
  trap 'rm -rf "$download"' EXIT
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_12_x86_64 --platform manylinux_2_5_x86_64 \
    -d "$download" "${wheels[@]}" >&2
  rm -rf "$toolkit.part" && mkdir -p "$toolkit.part"
  for wheel in "$download"/*.whl; do
    python3 -m zipfile -e "$wheel" "$toolkit.part"
  done
  part_root="$toolkit.part/nvidia/cu13"
  # Wheels keep no file modes; nvcc.profile looks for the libraries in lib64.
  chmod +x "$part_root"/bin/* "$part_root"/nvvm/bin/*
  ln -s lib "$part_root/lib64"
  (
    cd "$part_root/lib"
    for lib in libcudart libcublas libcublasLt; do
      ln -sf "$(basename "$(ls $lib.so.* | head -1)")" $lib.so
    done
    # One empty function for every driver API name cuda.h declares (its versioned names
    # included), so that a link resolves them against the stub and records libcuda.so.1 as
    # needed. A stub without them links too, but leaves the names unbound: the library then
    # fails to load where it runs ("undefined symbol: cuMemCreate").
    mkdir -p stubs
    grep -ohE '\bcu[A-Z][A-Za-z0-9_]*\b' ../include/cuda.h | sort -u |
      sed 's/.*/void &(void) {}/' >stubs/libcuda.c
    cc -shared -fPIC -o stubs/libcuda.so -Wl,-soname,libcuda.so.1 stubs/libcuda.c
    rm stubs/libcuda.c
  )
  rm -rf "$toolkit"
  mv "$toolkit.part" "$toolkit"
fi

# CMake finds nvcc on the PATH and the toolkit's libraries from it; CUDAToolkit_ROOT says so
# outright.
echo "export CUDAToolkit_ROOT='$root'"
echo "export CUDACXX='$root/bin/nvcc'"
echo "case \":\$PATH:\" in *':$root/bin:'*) ;; *) export PATH='$root/bin':\$PATH ;; esac"
