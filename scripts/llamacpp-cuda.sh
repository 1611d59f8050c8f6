#!/usr/bin/env bash
# Builds llama.cpp's own benchmark tools (llama-bench, llama-batched-bench) WITH CUDA, for
# compute capability 90 (H100/H200), on a machine that has no GPU and no CUDA install, and packs
# them for a GPU machine that has no network. Same llama.cpp as scripts/llamacpp-tools.sh (the
# vendor/llama.cpp of the llama-cpp-python sdist on PyPI, ${LLAMACPP_VERSION:-0.3.36}); same
# CUDA 13.0 toolchain as scripts/build-cuda.sh (nvcc and libraries from NVIDIA's PyPI wheels,
# a link-time stand-in libcuda.so). Built once into ${LLAMACPP_CUDA:-~/.cache/landauer/llamacpp-cuda}.
#
#   scripts/llamacpp-cuda.sh                build (once; rerun resumes) and print the bin folder
#   scripts/llamacpp-cuda.sh --pack OUT     build if needed, then write OUT/llamacpp/: the tools
#                                           and the llama/ggml libraries they load, stripped and
#                                           xz-compressed, and run.sh, which unpacks them into a
#                                           temp dir and runs one:
#   OUT/llamacpp/run.sh llama-bench -m F.gguf -ngl 99 ...
#     LD_LIBRARY_PATH = that dir + $LANDAUER_CUDA_LIBS (where libcuda.so.1, libcudart.so.13,
#     libcublas(Lt).so.13 are on the GPU machine; the pack holds none of them).
#
# Kernels: sm_90 SASS only (${LLAMACPP_CUDA_ARCH:-90-real}; no PTX, to keep the pack small).
# CPU code: AVX/AVX2/FMA/F16C only (the GPU machine's CPU is unknown). Built under nice -n 19
# with -j${LLAMACPP_CUDA_JOBS:-2}. About 25 minutes on 2 cores here (the 144 CUDA kernel files are
# most of it); the pack is 21 MiB (libggml-cuda.so, 46 MiB built, is 18 MiB of it). The GPU
# machine needs glibc >= 2.34 and GCC 12's libstdc++ (GLIBCXX_3.4.30), e.g. Ubuntu 22.04 or
# later, and a CUDA 13 driver (580+); libgomp is packed. Kept out of CI.
set -euo pipefail
cd "$(dirname "$0")/.."

version="${LLAMACPP_VERSION:-0.3.36}"
root="${LLAMACPP_CUDA:-$HOME/.cache/landauer/llamacpp-cuda}"
arch="${LLAMACPP_CUDA_ARCH:-90-real}"
jobs="${LLAMACPP_CUDA_JOBS:-2}"
src="$root/llama.cpp"
bin="$src/build/bin"
tools=(llama-bench llama-batched-bench)

say() { echo "llamacpp-cuda: $*" >&2; }

built() { [[ -x "$bin/llama-bench" && -x "$bin/llama-batched-bench" ]]; }

build() {
  built && return 0
  local t0=$SECONDS
  mkdir -p "$root"
  # CUDA toolchain: installed (once) by build-cuda.sh.
  eval "$(scripts/build-cuda.sh --env)"
  [[ -x "$CUDA_ROOT/bin/nvcc" ]] || scripts/build-cuda.sh --install-only
  [[ -x "$root/venv/bin/cmake" && -x "$root/venv/bin/ninja" ]] || {
    python3 -m venv "$root/venv"
    "$root/venv/bin/pip" install -q cmake ninja scikit-build-core
  }
  # Source: extracted once; a rerun after an interrupted build keeps it (and the build dir).
  if [[ ! -f "$src/.extracted" ]]; then
    local tarball="$root/llama_cpp_python-$version.tar.gz"
    local shared="$HOME/.cache/landauer/llamacpp-tools/llama_cpp_python-$version.tar.gz"
    if [[ ! -f "$tarball" ]]; then
      if [[ -f "$shared" ]]; then
        cp "$shared" "$tarball"
      else
        "$root/venv/bin/pip" download -q --no-deps --no-binary :all: --no-build-isolation \
          "llama-cpp-python==$version" -d "$root"
      fi
    fi
    rm -rf "$root/llama_cpp_python-$version" "$src"
    tar xzf "$tarball" -C "$root"
    mv "$root/llama_cpp_python-$version/vendor/llama.cpp" "$src"
    rm -rf "$root/llama_cpp_python-$version"
    touch "$src/.extracted"
  fi
  # RPATH is $ORIGIN only: the tools find libllama/libggml beside them, here and in the pack,
  # and no build machine path (such as the stub libcuda's folder) is baked in; -rpath-link lets
  # the linker find libcudart/libcublas, which libggml-cuda needs, when it links the tools.
  local opts=(
    -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF
    -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
    -DGGML_BMI2=OFF -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF -DGGML_CCACHE=OFF
    -DGGML_CUDA=ON -DGGML_CUDA_NCCL=OFF -DGGML_CUDA_FA_ALL_QUANTS=OFF
    -DCMAKE_CUDA_ARCHITECTURES="$arch"
    -DCMAKE_CUDA_COMPILER="$CUDA_ROOT/bin/nvcc" -DCMAKE_CUDA_HOST_COMPILER="$(command -v g++)"
    -DCUDAToolkit_ROOT="$CUDA_ROOT"
    -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON '-DCMAKE_INSTALL_RPATH=$ORIGIN'
    -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$CUDA_ROOT/lib"
  )
  say "cmake ${opts[*]}"
  PATH="$root/venv/bin:$PATH" cmake -S "$src" -B "$src/build" -G Ninja "${opts[@]}"
  say "building ${tools[*]} with -j$jobs (about 25 minutes on 2 cores)"
  PATH="$root/venv/bin:$PATH" nice -n 19 cmake --build "$src/build" -j"$jobs" --target "${tools[@]}"
  say "built in $(( (SECONDS - t0) / 60 )) min $(( (SECONDS - t0) % 60 )) s"
  say "libraries llama-bench loads (libcuda, libcudart and libcublas come from the GPU machine):"
  LD_LIBRARY_PATH="" ldd "$bin/llama-bench" | sed 's/^/  /' >&2 || true
}

# The files of $bin that the tools load, by soname, recursively (NEEDED entries found in $bin).
needed_here() {
  local todo=("${tools[@]}") seen=" " f n
  while ((${#todo[@]})); do
    f=${todo[0]}; todo=("${todo[@]:1}")
    [[ $seen == *" $f "* ]] && continue
    seen+="$f "
    echo "$f"
    for n in $(readelf -d "$bin/$f" | awk '/NEEDED/ { gsub(/[\[\]]/, "", $5); print $5 }'); do
      [[ -e "$bin/$n" ]] && todo+=("$n")
    done
  done
}

pack() {
  local out="$1/llamacpp" f total=0 size
  rm -rf "$out"
  mkdir -p "$out"
  # Plus GCC's OpenMP runtime (ggml-cpu uses it), which minimal images may lack.
  local gomp
  gomp=$(LD_LIBRARY_PATH="$bin" ldd "$bin/libggml-cpu.so" | awk '$1 == "libgomp.so.1" { print $3 }')
  for f in $(needed_here) ${gomp:+libgomp.so.1}; do
    local from="$bin/$f"
    [[ $f == libgomp.so.1 ]] && from="$gomp"
    from=$(readlink -f "$from")
    strip --strip-unneeded -o "$out/$f" "$from"
    xz -T0 -6 -c "$out/$f" >"$out/$f.xz"
    size=$(stat -c %s "$out/$f.xz")
    total=$((total + size))
    say "  $f.xz: $((size / 1024)) KiB (stripped $(( $(stat -c %s "$out/$f") / 1024 )) KiB, built $(( $(stat -c %s "$from") / 1024 )) KiB)"
    rm "$out/$f"
  done
  cat >"$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# Unpacks llama.cpp's CUDA tools (llamacpp-cuda.sh --pack) into a temp dir and runs one:
#   run.sh llama-bench -m F.gguf -ngl 99 ...      run.sh llama-batched-bench -m F.gguf ...
# libcuda.so.1, libcudart.so.13 and libcublas(Lt).so.13 are not packed: put their folders in
# LANDAUER_CUDA_LIBS (colon-separated), or have them on LD_LIBRARY_PATH or the loader's cache.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tool="${1:?usage: run.sh llama-bench|llama-batched-bench ARGS...}"
shift
[[ -e "$here/$tool.xz" ]] || { echo "run.sh: no $tool here ($(cd "$here" && ls *.xz | sed 's/\.xz$//' | tr '\n' ' '))" >&2; exit 2; }
tmp="$(mktemp -d "${TMPDIR:-/tmp}/llamacpp-cuda.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
for f in "$here"/*.xz; do
  n="$tmp/$(basename "${f%.xz}")"
  if command -v xz >/dev/null; then
    xz -dc "$f" >"$n"
  else
    python3 -c 'import lzma,shutil,sys
with lzma.open(sys.argv[1]) as i, open(sys.argv[2], "wb") as o: shutil.copyfileobj(i, o)' "$f" "$n"
  fi
  chmod +x "$n"
done
export LD_LIBRARY_PATH="$tmp${LANDAUER_CUDA_LIBS:+:$LANDAUER_CUDA_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
"$tmp/$tool" "$@"
RUN
  chmod +x "$out/run.sh"
  total=$((total + $(stat -c %s "$out/run.sh")))
  say "packed $out: $((total / 1024)) KiB ($(( total / 1024 / 1024 )) MiB)"
  if (( total > 40 * 1024 * 1024 )); then
    say "error: over the 40 MiB budget"
    exit 1
  fi
}

case "${1:-}" in
  "") build >&2; echo "$bin" ;;
  --pack)
    [[ -n "${2:-}" ]] || { say "error: --pack needs OUT_DIR"; exit 2; }
    build >&2
    pack "$2"
    ;;
  *) say "error: unknown argument '$1' (use --pack OUT_DIR, or nothing to build)"; exit 2 ;;
esac
