#!/usr/bin/env bash
# The GPU checks of a session that is lent a device machine (the `device` tool: 30 minutes of GPU time,
# 10 minutes a command, no network there, a bare image with nvcc, CMake, ninja, PyTorch's cuDNN wheel and
# compute-sanitizer, but none of our Debian packages).
#
#   tools/dev/gpu_session.sh fetch        here, with the network: the Debian packages of the build that the
#                                         image lacks -> .gpu-debs/ (ignored by git; name it in `carry`)
#   tools/dev/gpu_session.sh build        there: unpack .gpu-debs, configure and build build-gpu/ for sm_90
#                                         with the cuDNN/cuBLAS comparison; kept between calls while warm
#   tools/dev/gpu_session.sh test         there: the CUDA tests on the GPU (ctest -L cuda)
#   tools/dev/gpu_session.sh bench [DTYPE...]  there: `segengine bench kernels --device cuda` in the dtypes
#                                         given (default f32 f16 bf16)
#   tools/dev/gpu_session.sh sanitize     there: compute-sanitizer memcheck and racecheck over the CUDA
#                                         kernel tests
#
# Each step writes its log (and the benchmarks their JSON) under $OUT, at most 8 files in all, and exits
# non-zero when it fails. A device call: `run` with carry [".gpu-debs"] and the command
#   tools/dev/gpu_session.sh build && tools/dev/gpu_session.sh test
# then, in a second call on the still warm machine, `bench` (its time on a GPU is not known yet: if the
# 10-minute limit is near, name one dtype per call).
# Written without a GPU to try it on: the first lent session checks it and fixes what the image differs in.
set -euo pipefail
cd "$(dirname "$0")/../.."

debs=.gpu-debs
build=build-gpu
out=${OUT:-/tmp/gpu-session}
mkdir -p "$out"
# Our test and bench build needs of Debian: GoogleTest/GoogleMock, nlohmann-json, stb (headers only).
packages=(googletest libgtest-dev libgmock-dev nlohmann-json3-dev libstb-dev)

fetch() {
  local exclude
  exclude=$(git rev-parse --git-path info/exclude)
  mkdir -p "$(dirname "$exclude")"
  grep -qx "/$debs/" "$exclude" 2>/dev/null || echo "/$debs/" >>"$exclude"
  mkdir -p "$debs"
  (cd "$debs" && apt-get download "${packages[@]}")
  du -sh "$debs"
}

# The packages' files, unpacked into / (headers and static libraries: nothing to configure).
unpack() {
  if [ -f /usr/include/gtest/gtest.h ] && [ -f /usr/include/nlohmann/json.hpp ] && [ -f /usr/include/stb/stb_image.h ]; then
    return
  fi
  [ -d "$debs" ] || { echo "gpu_session: $debs/ missing: run 'fetch' here and carry $debs" >&2; exit 1; }
  for f in "$debs"/*.deb; do dpkg -x "$f" /; done
}

# cuDNN from PyTorch's wheel (nvidia-cudnn-cu13): its library has only the versioned name, which CMake's
# find_library does not take, so the cache variables name the files directly.
cudnn_flags() {
  local root
  root=$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null) || return 0
  local lib
  lib=$(ls "$root"/lib/libcudnn.so.* 2>/dev/null | head -1)
  [ -n "$lib" ] && [ -f "$root/include/cudnn.h" ] && echo "-DSE_CUDNN_INCLUDE_DIR=$root/include -DSE_CUDNN_LIBRARY=$lib"
}

build() {
  unpack
  local generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  # shellcheck disable=SC2046
  cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DSEGENGINE_CUDA=real \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DSEGENGINE_BUILD_BENCH=OFF $(cudnn_flags) >"$out/build.log" 2>&1
  cmake --build "$build" -j "$(nproc)" >>"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
  tail -3 "$out/build.log"
}

test_cuda() {
  nvidia-smi -L | tee "$out/gpu.txt"
  ctest --test-dir "$build" -L cuda --output-on-failure -j 4 >"$out/ctest.log" 2>&1 || { tail -60 "$out/ctest.log"; exit 1; }
  tail -3 "$out/ctest.log"
}

bench() {
  local status=0
  local dtypes=("$@")
  [ ${#dtypes[@]} -gt 0 ] || dtypes=(f32 f16 bf16)
  for dtype in "${dtypes[@]}"; do
    "$build/segengine" bench kernels --device cuda --dtype "$dtype" --json "$out/kernels_$dtype.json" \
      >"$out/kernels_$dtype.txt" 2>&1 || status=1
    sed -n '/^vendor check/,$p' "$out/kernels_$dtype.txt"
  done
  return $status
}

# compute-sanitizer over the kernel tests' CUDA cases (the emulator's ASan run covers the host side).
sanitize() {
  local status=0
  for tool in memcheck racecheck; do
    for test in "$build"/tests/kernels/test_*; do
      [ -x "$test" ] || continue
      compute-sanitizer --tool "$tool" --error-exitcode 1 "$test" --gtest_filter='*Cuda*' \
        >>"$out/sanitize_$tool.log" 2>&1 || { status=1; echo "$tool: $(basename "$test") failed"; }
    done
    tail -2 "$out/sanitize_$tool.log"
  done
  return $status
}

case "${1:-}" in
  fetch) fetch ;;
  build) build ;;
  test) test_cuda ;;
  bench) shift; bench "$@" ;;
  sanitize) sanitize ;;
  *) sed -n '2,21p' "$0" >&2; exit 2 ;;
esac
