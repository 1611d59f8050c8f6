#!/usr/bin/env bash
# Build landauer with candle's CUDA backend on a machine that has no GPU and no CUDA install.
#
#   scripts/build-cuda.sh            install the toolchain (once, cached) and build
#   scripts/build-cuda.sh --env      print the environment the build uses (for `eval`)
#
# What it installs, into $LANDAUER_CUDA_PREFIX (default ~/.cache/landauer/cuda-13.0):
#   - nvcc 13.0.x and the CUDA 13.0 libraries from NVIDIA's PyPI wheels, unpacked with unzip
#     (a second `pip install --target` into one folder has silently skipped packages);
#   - a link-time stand-in for libcuda.so (the driver's library, which no wheel ships): one
#     dummy function for every cu* entry point declared in cuda.h. The GPU machine's real
#     libcuda.so.1 is used at run time.
# nvcc is pinned to 13.0.x: 13.1 writes PTX ISA 9.1, which a CUDA 13.0 (580.x) driver cannot JIT.
# Kernels are compiled for compute capability $CUDA_COMPUTE_CAP (default 90: sm_90a, H100/H200).
#
# Output: target/cuda/release/landauer (a separate target dir, so CPU builds stay cached).
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX="${LANDAUER_CUDA_PREFIX:-$HOME/.cache/landauer/cuda-13.0}"
CUDA_ROOT="$PREFIX/nvidia/cu13"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"

# Exact versions: CUDA 13.0 toolchain (see ../shared/reference/cuda-build.md).
WHEELS=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-cccl==13.0.85
  nvidia-cuda-nvrtc==13.0.88
  nvidia-curand==10.4.0.35
  nvidia-cublas==13.0.2.14
)

say() { echo "build-cuda: $*" >&2; }

install_toolchain() {
  if [[ -f "$PREFIX/.complete" ]]; then
    say "toolchain cached in $PREFIX"
    return
  fi
  command -v unzip >/dev/null || { say "error: unzip is missing; install it (apt-get install unzip) and rerun"; exit 1; }
  command -v gcc >/dev/null || { say "error: gcc is missing; install it (apt-get install gcc g++) and rerun"; exit 1; }
  mkdir -p "$PREFIX/wheels"
  say "downloading the CUDA 13.0 wheels into $PREFIX/wheels (about 0.65 GB; deleted once unpacked)"
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --python-version 3.12 -d "$PREFIX/wheels" "${WHEELS[@]}" \
    || { say "error: pip could not download the CUDA wheels; check that PyPI is reachable and rerun"; exit 1; }
  say "unpacking"
  for w in "$PREFIX"/wheels/*.whl; do
    unzip -qo "$w" -d "$PREFIX"
  done
  rm -rf "$PREFIX/wheels" # unpacked; the archives would only take 0.6 GB of disk
  # Unversioned names for the linker.
  (
    cd "$CUDA_ROOT/lib"
    for lib in cudart cublas cublasLt curand nvrtc; do
      real=$(ls "lib$lib.so."* 2>/dev/null | grep -E "lib$lib\.so\.[0-9]+$" | head -n1 || true)
      [[ -n "$real" ]] || { say "error: lib$lib.so.N missing from the wheels"; exit 1; }
      ln -sf "$real" "lib$lib.so"
    done
  )
  chmod +x "$CUDA_ROOT"/bin/* "$CUDA_ROOT"/nvvm/bin/* 2>/dev/null || true
  make_libcuda_stub
  "$CUDA_ROOT/bin/nvcc" --version | grep -q "release 13.0" \
    || { say "error: nvcc is not 13.0.x"; exit 1; }
  touch "$PREFIX/.complete"
}

# A stand-in libcuda.so for linking only: every cu* function cuda.h declares, as a dummy.
# Hand-written because no package ships a libcuda link stub outside a full CUDA toolkit.
make_libcuda_stub() {
  local stubs="$CUDA_ROOT/lib/stubs" tmp
  mkdir -p "$stubs"
  tmp=$(mktemp -d)
  gcc -E -P -I"$CUDA_ROOT/include" "$CUDA_ROOT/include/cuda.h" >"$tmp/cuda.i"
  grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' "$tmp/cuda.i" | sed -E 's/[[:space:]]*\($//' \
    | sort -u | awk '{ printf "int %s(void) { return 999; }\n", $1 }' >"$tmp/stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stubs/libcuda.so" "$tmp/stub.c"
  say "libcuda stand-in: $(wc -l <"$tmp/stub.c") entry points"
  rm -rf "$tmp"
}

print_env() {
  echo "export CUDA_ROOT='$CUDA_ROOT'"
  echo "export PATH='$CUDA_ROOT/bin':\"\$PATH\""
  echo "export CUDA_COMPUTE_CAP='$CUDA_COMPUTE_CAP'"
  echo "export LIBRARY_PATH='$CUDA_ROOT/lib:$CUDA_ROOT/lib/stubs'\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
}

case "${1:-}" in
  --env) print_env; exit 0 ;;
  --install-only) install_toolchain; exit 0 ;;
  "") ;;
  *) say "error: unknown argument '$1' (use --env or --install-only, or nothing to build)"; exit 2 ;;
esac

install_toolchain
eval "$(print_env)"
say "building target/cuda/release/landauer for compute capability $CUDA_COMPUTE_CAP (about 8 min the first time)"
cargo build --release --features cuda --target-dir target/cuda --bin landauer
bin=target/cuda/release/landauer
say "built $bin ($(du -h "$bin" | cut -f1))"
say "dynamic dependencies:"
readelf -d "$bin" | awk '/NEEDED/ { gsub(/[\[\]]/, "", $5); print "  " $5 }' >&2
