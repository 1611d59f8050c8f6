#!/usr/bin/env bash
# Builds llama.cpp's own tools (llama-bench, llama-batched-bench, llama-quantize, llama-server) from the
# llama-cpp-python sdist on PyPI, the peer that landauer's speed is measured against, and prints
# the folder that holds them. Built once into ${LLAMACPP_TOOLS:-~/.cache/landauer/llamacpp-tools}.
#
#   bin="$(scripts/llamacpp-tools.sh)"; LD_LIBRARY_PATH="$bin" "$bin/llama-bench" -m F ...
#
# Instruction sets: what this CPU *and its kernel* offer, read from /proc/cpuinfo and passed as
# ggml's options (AVX2, FMA, F16C, BMI2, AVX512F, AVX512-VNNI/VBMI/BF16, AVX-VNNI), instead of
# -DGGML_NATIVE=ON: on VMs whose CPUID advertises AMX that the kernel has not enabled,
# -march=native compiles AMX instructions in and the tools die of SIGILL (seen on a Xeon VM,
# 2026-12-04). About 5 minutes on 2 cores. Kept out of CI.
set -euo pipefail
version="${LLAMACPP_VERSION:-0.3.36}"
root="${LLAMACPP_TOOLS:-$HOME/.cache/landauer/llamacpp-tools}"
bin="$root/llama.cpp/build/bin"
if [[ -x "$bin/llama-bench" && -x "$bin/llama-batched-bench" && -x "$bin/llama-quantize" &&
      -x "$bin/llama-server" ]]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$root"
{
  python3 -m venv "$root/venv"
  "$root/venv/bin/pip" install -q cmake ninja scikit-build-core
  "$root/venv/bin/pip" download -q --no-deps --no-binary :all: --no-build-isolation \
    "llama-cpp-python==$version" -d "$root"
  tar xzf "$root/llama_cpp_python-$version.tar.gz" -C "$root"
  rm -rf "$root/llama.cpp"
  mv "$root/llama_cpp_python-$version/vendor/llama.cpp" "$root/llama.cpp"
  flags=$(grep -m1 '^flags' /proc/cpuinfo)
  has() { [[ " $flags " == *" $1 "* ]] && echo ON || echo OFF; }
  opts=(-DGGML_NATIVE=OFF -DGGML_AVX=$(has avx) -DGGML_AVX2=$(has avx2) -DGGML_FMA=$(has fma)
        -DGGML_F16C=$(has f16c) -DGGML_BMI2=$(has bmi2) -DGGML_AVX512=$(has avx512f)
        -DGGML_AVX512_VNNI=$(has avx512_vnni) -DGGML_AVX512_VBMI=$(has avx512vbmi)
        -DGGML_AVX512_BF16=$(has avx512_bf16) -DGGML_AVX_VNNI=$(has avx_vnni))
  echo "llamacpp-tools: ${opts[*]}"
  PATH="$root/venv/bin:$PATH" cmake -S "$root/llama.cpp" -B "$root/llama.cpp/build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_SERVER=ON "${opts[@]}"
  PATH="$root/venv/bin:$PATH" cmake --build "$root/llama.cpp/build" -j"$(nproc)" \
    --target llama-bench llama-batched-bench llama-quantize llama-server
} >&2
echo "$bin"
