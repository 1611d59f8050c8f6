#!/usr/bin/env bash
# llama.cpp CPU baseline benchmark (reference figures for landauer).
#
# Creates a private virtualenv at ${LLAMACPP_VENV:-$HOME/.cache/landauer/venv-llamacpp}
# (if missing), builds llama-cpp-python from source into it (llama.cpp compiled
# with cmake and -DGGML_NATIVE=ON, so it uses this CPU's full instruction set),
# then runs scripts/bench-llamacpp.py with the venv's Python, passing all
# arguments through.  Example:
#
#   scripts/bench-llamacpp.sh --model /path/to/model.gguf --threads 2 --runs 5
#   scripts/bench-llamacpp.sh --model /path/to/model.gguf --json
#
# This script is deliberately kept OUT of the default build and of CI: it needs
# PyPI access and a C/C++ toolchain, and the from-source build of llama.cpp
# takes a long time (tens of minutes on 2 cores).  It is run by hand only.
#
# Environment:
#   LLAMACPP_VENV     virtualenv location (default: ~/.cache/landauer/venv-llamacpp)
#   LLAMACPP_VERSION  llama-cpp-python version to build (default: 0.3.36)
#   LLAMACPP_CMAKE_ARGS  CMAKE_ARGS for the build (default: -DGGML_NATIVE=ON)
#   PYTHON            interpreter used to create the venv (default: python3)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${LLAMACPP_VENV:-$HOME/.cache/landauer/venv-llamacpp}"
version="${LLAMACPP_VERSION:-0.3.36}"
cmake_args="${LLAMACPP_CMAKE_ARGS:--DGGML_NATIVE=ON}"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "bench-llamacpp: creating virtualenv at $venv" >&2
    mkdir -p "$(dirname "$venv")"
    if ! "$python" -m venv "$venv"; then
        echo "bench-llamacpp: '$python -m venv' failed (on Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
fi
vpy="$venv/bin/python"

if ! "$vpy" -c 'import llama_cpp' >/dev/null 2>&1; then
    echo "bench-llamacpp: installing cmake + ninja (binary wheels)" >&2
    "$vpy" -m pip install cmake ninja
    echo "bench-llamacpp: building llama-cpp-python==$version from source" \
         "(CMAKE_ARGS=$cmake_args); this takes a long time" >&2
    start=$(date +%s)
    # The venv's bin/ goes first on PATH so the build finds its cmake and ninja.
    PATH="$venv/bin:$PATH" CMAKE_ARGS="$cmake_args" \
        nice -n 19 "$vpy" -m pip install --no-binary llama-cpp-python \
        "llama-cpp-python==$version"
    echo "bench-llamacpp: build took $(( $(date +%s) - start )) s" >&2
fi

exec "$vpy" "$here/bench-llamacpp.py" "$@"
