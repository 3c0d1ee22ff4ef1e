#!/usr/bin/env bash
# Installs what the `vulkan` build needs on Debian 12 (bookworm) and prints the environment that
# build and its tests take (source it: `eval "$(bash scripts/setup-vulkan.sh)"`).
#
# - The Vulkan loader, glslc, SPIR-V headers and Mesa's drivers come from bookworm. Mesa's
#   `llvmpipe` is a Vulkan device that runs on the CPU, so offload is tested on machines without a
#   GPU.
# - ggml-vulkan needs newer Vulkan headers than bookworm's 1.3.239 (`vk::LayerSettingEXT` is
#   missing there). Trixie's libvulkan-dev headers (1.4.x) work: the package is fetched through a
#   private apt configuration that lists trixie, unpacked into .vulkan-headers/ (gitignored), and
#   only its include directory is used. The system keeps bookworm's loader.
# - ggml skips CPU-type Vulkan devices unless GGML_VK_VISIBLE_DEVICES names them; llvmpipe is
#   device 0 on a machine without a GPU.
# Safe to run again: it installs and fetches only what is missing. Its progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -e /usr/include/vulkan/vulkan.h ] || need+=(libvulkan-dev)
command -v glslc >/dev/null || need+=(glslc)
[ -d /usr/include/spirv ] || need+=(spirv-headers)
ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || need+=(mesa-vulkan-drivers)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup-vulkan: installing ${need[*]}" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

headers="$PWD/.vulkan-headers"
if [ ! -f "$headers/usr/include/vulkan/vulkan.hpp" ]; then
  echo "setup-vulkan: fetching trixie's Vulkan headers" >&2
  apt_dir=$(mktemp -d)
  trap 'rm -rf "$apt_dir"' EXIT
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/sources.list.d" "$apt_dir/preferences.d"
  touch "$apt_dir/status"
  echo "deb http://deb.debian.org/debian trixie main" >"$apt_dir/sources.list"
  options=(
    -o "Dir::Etc::sourcelist=$apt_dir/sources.list"
    -o "Dir::Etc::sourceparts=$apt_dir/sources.list.d"
    -o "Dir::Etc::preferencesparts=$apt_dir/preferences.d"
    -o "Dir::State::lists=$apt_dir/lists"
    -o "Dir::State::status=$apt_dir/status"
    -o "Dir::Cache=$apt_dir/cache"
    -o "APT::Get::List-Cleanup=0"
  )
  apt-get "${options[@]}" update -qq >&2
  (cd "$apt_dir" && apt-get "${options[@]}" download libvulkan-dev >&2)
  rm -rf "$headers.part"
  dpkg -x "$apt_dir"/libvulkan-dev_*.deb "$headers.part"
  rm -rf "$headers"
  mv "$headers.part" "$headers"
fi

# llama-cpp-sys-2's CMake build finds Vulkan through FindVulkan, which takes the include directory
# from Vulkan_INCLUDE_DIR; the C++ compiler takes it from CPLUS_INCLUDE_PATH as well, ahead of
# /usr/include.
# Evaluated twice (scripts/test.sh, then scripts/dist.sh inside it), it leaves the same values: a
# changed CPLUS_INCLUDE_PATH makes cargo rebuild every crate that compiles C.
echo "export Vulkan_INCLUDE_DIR='$headers/usr/include'"
echo "case \":\${CPLUS_INCLUDE_PATH:-}:\" in *':$headers/usr/include:'*) ;; *) export CPLUS_INCLUDE_PATH='$headers/usr/include'\${CPLUS_INCLUDE_PATH:+:\$CPLUS_INCLUDE_PATH} ;; esac"
echo "export GGML_VK_VISIBLE_DEVICES=0"
