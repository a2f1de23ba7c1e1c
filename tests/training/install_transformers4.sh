#!/usr/bin/env bash
# transformers 4.x next to the venv's 5.x, for the test that loads an HF export under both
# (tests/training/test_hf_import.py). Only the three packages whose versions differ between the two
# majors go into the target directory; everything else (torch, numpy, safetensors, ...) comes from the
# venv. Usage: tests/training/install_transformers4.sh [PYTHON]   (default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/../.."
python="${1:-.venv/bin/python}"
"$python" -m pip install --quiet --no-deps --upgrade --target .venv/transformers4 \
  'transformers==4.57.*' 'tokenizers>=0.22,<=0.23.0' 'huggingface_hub>=0.34,<1.0'
