#!/usr/bin/env bash
# Builds the CUDA kernels' source and the torch-free self-tests (csrc/*/selftest) for the host-thread
# emulation (cuda_emu.h): clang++-19 or g++ with -DSEER_CUDA_EMU, no GPU, no nvcc. Usage: [SANITIZE=address] build.sh
# [out_dir] (default build/cuda_emu); the binaries are out_dir/seer_{fwd,bwd,decode,pooling}_selftest.
# SANITIZE=address: an AddressSanitizer build (every global-memory access of the kernels checked against
# the exact cudaMalloc sizes; the compute-sanitizer memcheck of the GPU, for the CUDA source).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$root/build/cuda_emu}"
mkdir -p "$out/obj"
CXX="${CXX:-$(command -v clang++-19 || command -v g++)}"  # either compiles it
CUDA_INC="${CUDA_HOME:-/usr/local/cuda}/include"
# The sources, with kernel launches and dynamic shared memory in their host form (emu_source.py).
python3 "$root/tests/cuda_emu/emu_source.py" "$root" "$out/src"
flags=(-std=c++20 -O2 -g0 -pthread -fno-strict-aliasing -Wno-unknown-pragmas -Wno-unused-result -Wno-pass-failed
       -DSEER_CUDA_EMU -DSEER_ATTN_SM90A -I"$root/tests/cuda_emu" -I"$out/src/csrc" -I"$CUDA_INC")
if [ -n "${SANITIZE:-}" ]; then flags+=(-fsanitize="$SANITIZE" -fno-omit-frame-pointer); fi
mapfile -t srcs < <(cd "$out/src" && find csrc -name '*.cu' | sort | sed "s|^|$out/src/|")
srcs+=("$root/tests/cuda_emu/cuda_emu_runtime.cpp")
obj_of() { echo "$out/obj/$(basename "$(dirname "$1")")_$(basename "$1").o"; }
compile() {  # src -> its object (skipped when newer than the source and every header)
  local src="$1" obj
  obj="$(obj_of "$1")"
  if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || \
     [ -n "$(find "$out/src/csrc" "$root/tests/cuda_emu" -newer "$obj" \( -name '*.h' -o -name '*.cuh' \) | head -1)" ]; then
    "$CXX" "${flags[@]}" -x c++ -c "$src" -o "$obj"
  fi
}
objs=()
jobs_n="${JOBS:-2}"
pids=()
for s in "${srcs[@]}"; do
  compile "$s" &
  pids+=($!)
  if [ "${#pids[@]}" -ge "$jobs_n" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p"; done
for s in "${srcs[@]}"; do objs+=("$(obj_of "$s")"); done
for t in attention/selftest/fwd_selftest attention/selftest/bwd_selftest decode/selftest/decode_selftest pooling/selftest/pooling_selftest; do
  name="seer_$(basename "$t")"
  "$CXX" "${flags[@]}" -x c++ "$out/src/csrc/$t.cpp" -x none "${objs[@]}" -o "$out/$name"
done
echo "built: $out/seer_{fwd,bwd,decode,pooling}_selftest"
