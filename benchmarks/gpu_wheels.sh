#!/usr/bin/env bash
# Fetch, on a machine with network, the wheels gpu_check.sh needs on a GPU machine without one:
# ultralytics (pure Python; the baseline of the GPU benchmarks; its imports for the assigner --
# numpy, opencv, pillow, pyyaml, tqdm, nvidia-ml-py -- are usually there already) and
# pycocotools and faster-coco-eval (mAP in the CUDA training test; the trainer falls back to pycocotools).
#   bash benchmarks/gpu_wheels.sh [PYTHON_VERSION]   # default 3.12 -> .whl/
set -eu
cd "$(dirname "$0")/.."
python3 -m pip download --no-deps --only-binary=:all: --python-version "${1:-3.12}" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl ultralytics==8.4.190 pycocotools faster-coco-eval
ls -l .whl
