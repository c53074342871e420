#!/usr/bin/env bash
# GPU check, for any machine with an NVIDIA GPU and the CUDA toolkit (no network needed):
#   bash benchmarks/gpu_check.sh            # results in benchmarks/gpu_results/
# 1. builds the extension in place against the installed torch (CUDA forced),
# 2. runs the CUDA tests (pytest -m cuda),
# 3. compute-sanitizer memcheck and racecheck on a small case,
# 4. the SPEC §5 GPU benchmarks (W1-W4; W3 also at B = 128), against ultralytics on the same GPU
#    when it is importable.
# Every step runs even if an earlier one fails; the summary at the end says which failed.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/gpu_results}
mkdir -p "$OUT"
PY=${PYTHON:-python}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} DUALHEAD_FORCE_CUDA=1 MAX_JOBS=${MAX_JOBS:-8}
export DUALHEAD_CUDA_ASSIGN=1  # the CUDA assign kernel is opt-in until verified here
status=()
step() {  # step NAME COMMAND...: run, log to $OUT/NAME.log, remember the exit code
  local name=$1; shift
  echo "== $name: $*"
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.log"
  status+=("$name=$rc")
}
step env bash -c "nvidia-smi; $PY -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))'"
step build $PY setup.py build_ext --inplace
step info $PY -m dualhead.cli info
step tests $PY -m pytest -q -p no:cacheprovider -m cuda tests/
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
step memcheck "$SAN" --tool memcheck --error-exitcode 1 $PY benchmarks/sanitizer_case.py
step racecheck "$SAN" --tool racecheck --error-exitcode 1 $PY benchmarks/sanitizer_case.py
step bench $PY -m dualhead.cli bench --device cuda --rounds 5 --json "$OUT/bench_cuda.json"
step bench_w3_b128 $PY -m dualhead.cli bench --device cuda --workloads W3 --batch 128 --impls dualhead,ultralytics --rounds 3 --json "$OUT/bench_cuda_w3_b128.json"
echo "== summary: ${status[*]}" | tee "$OUT/summary.txt"
