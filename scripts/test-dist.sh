#!/usr/bin/env bash
# Tests the portable release as a user gets it: checks the tarball against its .sha256, unpacks
# it into a fresh directory, checks with `ldd` that the binary and its libraries need nothing from
# the system but glibc and the C++ runtime (the GPU backends also need their drivers' loaders, which
# the system supplies or ggml skips them), then runs the binary with an empty environment
# (`env -i`) from another directory: `--version`, `doctor`, and a completion from the tiny model.
#
# Usage: scripts/test-dist.sh [TARBALL]   (default: the newest dist/wellspring-*-linux-x86_64.tar.xz)
# Needs the tiny model ($WELLSPRING_TEST_MODEL, default models/tiny.gguf).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tarball="${1:-$(ls -t "$root"/dist/wellspring-*-linux-x86_64.tar.xz 2>/dev/null | head -1)}"
model="${WELLSPRING_TEST_MODEL:-$root/models/tiny.gguf}"
fail() {
  echo "test-dist: FAIL: $*" >&2
  exit 1
}
[[ -f $tarball ]] || fail "no tarball (run scripts/dist.sh, or pass its path)"
[[ -f $model ]] || fail "test model $model not found (scripts/test-models.sh)"
echo "test-dist: $tarball"

(cd "$(dirname "$tarball")" && sha256sum --quiet -c "$(basename "$tarball").sha256") || fail "the checksum does not match"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xJf "$tarball" -C "$work"
name=$(basename "$tarball" .tar.xz)
dir="$work/$name"
[[ -x $dir/wellspring && -f $dir/README.md ]] || fail "the tarball has no $name/wellspring and README.md"
ls "$dir"/libggml-cpu-*.so >/dev/null 2>&1 || fail "no CPU backends in the tarball"

# Only glibc, the C++ runtime and the bundle's own files; the GPU backends may also ask for their
# loader (libvulkan.so.1, CUDA's libraries), which ggml does without when it is missing.
system_ok='^(linux-vdso\.so\.1|libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libstdc\+\+\.so\.6|libgcc_s\.so\.1|/lib64/ld-linux-x86-64\.so\.2|ld-linux-x86-64\.so\.2)$'
for file in "$dir"/wellspring "$dir"/*.so*; do
  base=$(basename "$file")
  # "lib => path (address)", "lib => not found", or "name (address)" for the loader and vDSO.
  while read -r lib path; do
    [[ -z $lib || $path == "$dir/"* || $lib =~ $system_ok ]] && continue
    # The binary loads the release's own libraries first (its run path is $ORIGIN); libraries
    # opened later find them already loaded under the same name.
    [[ $base != wellspring && -e $dir/$lib ]] && continue
    case "$base:$lib" in
      libggml-vulkan.so:libvulkan.so.1) continue ;;
      libggml-cuda.so:libcuda*.so* | libggml-cuda.so:libcublas*.so* | libggml-cuda.so:libcudart*.so*) continue ;;
    esac
    fail "$base needs $lib ($path) from the system"
  done < <(env -i ldd "$file" | awk '{ if ($2 == "=>") print $1, $3; else print $1 }')
done
if env -i ldd "$dir/wellspring" | grep -q "not found"; then
  fail "the binary misses a library: $(env -i ldd "$dir/wellspring" | grep 'not found')"
fi
echo "test-dist: ldd: the binary and its libraries need only glibc and the C++ runtime"

# A user's run: nothing in the environment, another working directory, a file to complete.
cd "$work"
printf 'def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return \n' >"$work/example.py"
version=$(env -i "$dir/wellspring" --version) || fail "--version failed"
echo "test-dist: $version"
doctor=$(env -i HOME="$work" "$dir/wellspring" doctor --model "$model" 2>&1) || fail "doctor failed: $doctor"
grep -qi "cpu" <<<"$doctor" || fail "doctor names no CPU device: $doctor"
out=$(env -i HOME="$work" "$dir/wellspring" complete --model "$model" --max-tokens 8 --log-level info \
  "$work/example.py:6:11" 2>"$work/complete.err") || fail "complete failed: $(tail -20 "$work/complete.err")"
# The backends came from the unpacked directory, not from the build that made them.
grep -q "loading ggml backends.*dir=$dir" "$work/complete.err" ||
  fail "the backends were not loaded from $dir: $(grep -i backend "$work/complete.err" | head -5)"
echo "test-dist: a completion from the unpacked tarball under env -i: $(head -c 200 <<<"$out" | tr '\n' ' ')"
echo "test-dist: passed"
