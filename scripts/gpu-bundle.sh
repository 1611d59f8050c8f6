#!/usr/bin/env bash
# Pack the CUDA build of landauer for a GPU machine that has no Rust and no network.
#
#   scripts/gpu-bundle.sh [OUT_DIR] [--with LIB,...] [--llamacpp] [--pynvml]
#
# OUT_DIR (default dist/gpu-bundle) receives:
#   landauer.xz   the CUDA binary (target/cuda/release/landauer, built by scripts/build-cuda.sh)
#   lib/*.xz      CUDA libraries named with --with (e.g. --with curand), for GPU machines that
#                 lack them; taken from the build toolchain (CUDA 13.0 wheels)
#   launch.sh     unpacks the binary, finds libcuda, libcudart, libcublas(Lt) and libcurand
#                 on the machine (NVIDIA's cu13 Python wheels, the CUDA toolkit's lib64,
#                 the loader's cache, or lib/ here), prints what it found, and runs landauer
#                 with the arguments it was given:  OUT_DIR/launch.sh generate --device cuda ...
#                 (`launch.sh --cuda-libs` prints the library path it found, for other tools)
#   llamacpp/     with --llamacpp: llama.cpp's llama-bench and llama-batched-bench built with
#                 CUDA (scripts/llamacpp-cuda.sh --pack), run by llamacpp/run.sh
#   py/           with --pynvml: nvidia-ml-py (pynvml) from PyPI, for scripts/nvml-check.py
# The bundle must stay under 60 MiB (the GPU machine takes 64 MiB of files per call).
set -euo pipefail
cd "$(dirname "$0")/.."

out=dist/gpu-bundle
with=""
llamacpp=0
pynvml=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --with) with="$2"; shift 2 ;;
    --llamacpp) llamacpp=1; shift ;;
    --pynvml) pynvml=1; shift ;;
    -*) echo "gpu-bundle: unknown option $1" >&2; exit 2 ;;
    *) out="$1"; shift ;;
  esac
done

bin=target/cuda/release/landauer
[[ -x "$bin" ]] || { echo "gpu-bundle: error: $bin is missing; run scripts/build-cuda.sh first" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out/lib"
# Without debug sections: a third of the size, same code.
strip --strip-debug -o "$out/landauer.stripped" "$bin"
xz -T0 -6 -c "$out/landauer.stripped" >"$out/landauer.xz"
rm "$out/landauer.stripped"

if [[ -n "$with" ]]; then
  eval "$(scripts/build-cuda.sh --env)"
  IFS=, read -ra libs <<<"$with"
  for l in "${libs[@]}"; do
    f=$(ls "$CUDA_ROOT"/lib/lib"$l".so.[0-9]* 2>/dev/null | grep -E "\.so\.[0-9]+$" | head -n1 || true)
    [[ -n "$f" ]] || { echo "gpu-bundle: error: no lib$l.so.N in $CUDA_ROOT/lib" >&2; exit 1; }
    xz -T0 -6 -c "$f" >"$out/lib/$(basename "$f").xz"
  done
fi

if [[ $llamacpp == 1 ]]; then
  scripts/llamacpp-cuda.sh >/dev/null
  scripts/llamacpp-cuda.sh --pack "$out"
fi
if [[ $pynvml == 1 ]]; then
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary :all: nvidia-ml-py -d "$tmp"
  mkdir -p "$out/py"
  (cd "$out/py" && unzip -q "$tmp"/nvidia_ml_py-*.whl)
  rm -rf "$tmp"
fi

cat >"$out/launch.sh" <<'LAUNCH'
#!/usr/bin/env bash
# Unpacks landauer (CUDA build) next to this script, finds the CUDA libraries, runs it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${LANDAUER_BUNDLE_DIR:-/tmp/landauer-bundle}"
mkdir -p "$work/lib"
if [[ ! -x "$work/landauer" || "$here/landauer.xz" -nt "$work/landauer" ]]; then
  xz -dc "$here/landauer.xz" >"$work/landauer.tmp" && chmod +x "$work/landauer.tmp" && mv "$work/landauer.tmp" "$work/landauer"
fi
for f in "$here"/lib/*.xz; do
  [[ -e "$f" ]] || continue
  n="$work/lib/$(basename "${f%.xz}")"
  [[ -e "$n" ]] || xz -dc "$f" >"$n"
done
# Where NVIDIA's libraries live on such machines, in order of preference.
dirs=("$work/lib")
for py in python3 python; do
  command -v "$py" >/dev/null || continue
  while IFS= read -r d; do [[ -d "$d" ]] && dirs+=("$d"); done < <(
    "$py" -c 'import site,sys,glob; [print(p) for s in site.getsitepackages()+[site.getusersitepackages()] for p in glob.glob(s+"/nvidia/cu13/lib")+glob.glob(s+"/nvidia/*/lib")]' 2>/dev/null || true)
done
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu; do
  [[ -d "$d" ]] && dirs+=("$d")
done
path=""
missing=0
for lib in libcuda.so.1 libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10; do
  found=""
  for d in "${dirs[@]}"; do
    if [[ -e "$d/$lib" ]]; then found="$d/$lib"; break; fi
  done
  if [[ -z "$found" ]]; then
    found=$(ldconfig -p 2>/dev/null | awk -v l="$lib" '$1 == l { print $NF; exit }')
  fi
  if [[ -n "$found" ]]; then
    echo "launch: $lib -> $found" >&2
    d=$(dirname "$found")
    [[ ":$path:" == *":$d:"* ]] || path="${path:+$path:}$d"
  else
    if [[ $lib == libcuda.so.1 ]]; then
      echo "launch: $lib NOT FOUND: it comes with the NVIDIA driver; is this a GPU machine?" >&2
    else
      n=${lib%%.so*}
      echo "launch: $lib NOT FOUND (bundle it: scripts/gpu-bundle.sh --with ${n#lib})" >&2
    fi
    missing=1
  fi
done
[[ $missing == 0 ]] || { echo "launch: error: CUDA libraries missing; see above" >&2; exit 127; }
[[ "${1:-}" == "--cuda-libs" ]] && { echo "$path"; exit 0; }
export LD_LIBRARY_PATH="$path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$work/landauer" "$@"
LAUNCH
chmod +x "$out/launch.sh"
size=$(du -sb "$out" | cut -f1)
echo "gpu-bundle: $out is $((size / 1024 / 1024)) MiB ($(ls "$out" "$out/lib" | tr '\n' ' '))" >&2
du -sh "$out"/* >&2
if (( size > 60 * 1024 * 1024 )); then
  echo "gpu-bundle: error: over the 60 MiB budget" >&2
  exit 1
fi
