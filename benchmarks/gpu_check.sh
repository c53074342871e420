#!/usr/bin/env bash
# GPU check, for any machine with an NVIDIA GPU and the CUDA toolkit (no network needed):
#   bash benchmarks/gpu_check.sh [STEP ...]     # results in $OUT (default benchmarks/gpu_results/)
# Steps (default: all, in this order):
#   build      the extension in place against the installed torch (CUDA forced, sm_90)
#   tests      the CUDA tests (pytest -m cuda: CUDA vs CPU, fp16/bf16, empty, determinism, compile)
#   sanitize   compute-sanitizer memcheck and racecheck on a small case
#   bench      the SPEC §5 GPU benchmarks W1-W4, then W3 at B = 128, against ultralytics on the
#              same GPU when it is importable (bash benchmarks/gpu_wheels.sh fetches its wheel
#              and pycocotools' into .whl/ where there is network; they are installed from there)
#   split      W1 and W4 with DUALHEAD_CUDA_SPLIT_CELLS = 0, 8, 32, 128, off (the warp-split threshold)
# Every step runs even if an earlier one fails; the summary at the end says which failed. Each
# step takes a few minutes: on a machine with a per-command limit run them in several calls.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/gpu_results}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} DUALHEAD_FORCE_CUDA=1 MAX_JOBS=${MAX_JOBS:-8}
export DUALHEAD_CUDA_ASSIGN=1  # the CUDA assign kernel is opt-in until verified here
export PYTHONUNBUFFERED=1
if ls .whl/*.whl > /dev/null 2>&1; then  # wheels fetched by gpu_wheels.sh (no network needed here)
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/dualhead_site .whl/*.whl &&
    export PYTHONPATH=/tmp/dualhead_site${PYTHONPATH:+:$PYTHONPATH}
fi
status=()
step() {  # step NAME COMMAND...: run, log to $OUT/NAME.log, remember the exit code
  local name=$1; shift
  echo "== $name: $*"
  local t0=$SECONDS
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.log"
  echo "== $name: rc=$rc, $((SECONDS - t0)) s"
  status+=("$name=$rc")
}
BENCH="$PY -m dualhead.cli bench --device cuda"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(build tests sanitize bench split)
for s in "${steps[@]}"; do
  case $s in
    build)
      step env bash -c "nvidia-smi; $PY -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))'"
      step build $PY setup.py build_ext --inplace
      step info $PY -m dualhead.cli info ;;
    tests)
      step tests $PY -m pytest -q -p no:cacheprovider -m cuda tests/ ;;
    sanitize)
      SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
      step memcheck "$SAN" --tool memcheck --error-exitcode 1 $PY benchmarks/sanitizer_case.py
      step racecheck "$SAN" --tool racecheck --error-exitcode 1 $PY benchmarks/sanitizer_case.py ;;
    bench)
      step bench $BENCH --rounds 5 --json "$OUT/bench_cuda.json"
      step bench_w3_b128 $BENCH --workloads W3 --batch 128 --impls dualhead,ultralytics --rounds 3 \
        --json "$OUT/bench_cuda_w3_b128.json" ;;
    split)
      for c in 0 8 32 128 1000000000; do
        step split_$c env DUALHEAD_CUDA_SPLIT_CELLS=$c $BENCH --workloads W1,W4 --impls dualhead --modes dual-compact \
          --rounds 3 --no-memory --json "$OUT/bench_cuda_split_$c.json"
      done ;;
    *) echo "unknown step $s (build tests sanitize bench split)"; status+=("$s=unknown") ;;
  esac
done
echo "== summary: ${status[*]}" | tee "$OUT/summary.txt"
