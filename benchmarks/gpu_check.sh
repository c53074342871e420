#!/usr/bin/env bash
# GPU check, for any machine with an NVIDIA GPU and the CUDA toolkit; no network needed:
#   bash benchmarks/gpu_check.sh [STEP ...]     # results in $OUT (default benchmarks/gpu_results/)
# Steps (default: build tests sanitize bench, in this order; every step builds first if needed):
#   build      the extension in place against the installed torch (CUDA forced, sm_90), with the
#              system gcc/g++ when present (a compiler wrapper that links libstdc++ statically is
#              refused by setup.py: such builds crash on their first error message)
#   tests      the CUDA tests (pytest -m cuda): with pytest-xdist a crashing test is reported as
#              such and its worker replaced, so the others still run; without it, file by file
#   sanitize   compute-sanitizer memcheck, racecheck, synccheck and initcheck on a small case
#   bench      W1, W2, W4 (dualhead, ultralytics), then W3 at B = 128; per-kernel GPU times of W1;
#              ultralytics is the baseline when importable (.whl/ holds its wheel and pycocotools'
#              where the machine has no network: bash benchmarks/gpu_wheels.sh fetches them)
#   train      the default `dualhead train` on the GPU (its default data workers: up to 8; data wait
#              and images/s per epoch in its log and results.csv), and `dualhead bench --train-loop`
#              (data pipeline alone, step alone, whole loop)
#   train-compile  the same run with --compile (torch.compile of the model)
#   ablate     `dualhead ablate` on a longer schedule (ABLATE_EPOCHS, default 25; ABLATE_CONFIGS
#              o2m,dual; ABLATE_SEEDS 2; ABLATE_ANCHORS none), 4 runs at a time on the GPU, each
#              stopped after ABLATE_MINUTES (7) so that the step fits one 8-minute device call;
#              run folders under $RUNS (default /tmp/dualhead_gpu_runs, not $OUT: only
#              8 files come back), their logs and results.csv packed into $OUT/ablate_runs.tar.gz
#   lease      what one device call of at most 8 minutes holds (benchmarks/RESULTS.md has the exact
#              call): no compiling when the carried build (dualhead/_C.abi3.so, made here with
#              sm_90) loads, else a build there first; the CUDA tests (graph capture included),
#              compute-sanitizer memcheck, racecheck, synccheck and initcheck, and W1-W4 against
#              ultralytics; each step under its own time limit; 4 files in $OUT
# Each step writes <step>.log under $LOGS (default $OUT) as it goes and appends its exit code to
# $OUT/summary.md at once, so a crash or a kill of a later step (or of the whole call) loses
# nothing before it.
# The benchmark prints every row as it completes. At the end, summary.md holds the step table,
# the environment and the benchmark tables; logs.tar.gz holds every log (8 files at most come
# back from a device call: summary.md, logs.tar.gz and the JSON files).
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-benchmarks/gpu_results}
RUNS=${RUNS:-/tmp/dualhead_gpu_runs}
LOGS=${LOGS:-$OUT}
mkdir -p "$OUT" "$LOGS"
PY=${PYTHON:-python3}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} DUALHEAD_FORCE_CUDA=1 MAX_JOBS=${MAX_JOBS:-16}
export PYTHONUNBUFFERED=1 PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
[ -x /usr/bin/g++ ] && export CC=${DUALHEAD_CC:-/usr/bin/gcc} CXX=${DUALHEAD_CXX:-/usr/bin/g++}
if ls .whl/*.whl > /dev/null 2>&1; then  # wheels fetched by gpu_wheels.sh (no network needed here)
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/dualhead_site .whl/*.whl &&
    export PYTHONPATH=$PYTHONPATH:/tmp/dualhead_site
fi
SUMMARY=$OUT/summary.md
[ -f "$SUMMARY" ] || printf '# GPU check\n\n| step | rc | seconds |\n|---|---|---|\n' > "$SUMMARY"
pack() { tar -czf "$OUT/logs.tar.gz" -C "$LOGS" $(cd "$LOGS" && ls *.log 2>/dev/null) 2> /dev/null; }
step() {  # step NAME COMMAND...: run, log to $OUT/NAME.log, record the exit code at once
  local name=$1; shift
  echo "== $name: $*"
  local t0=$SECONDS
  "$@" > "$LOGS/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$LOGS/$name.log"
  echo "== $name: rc=$rc, $((SECONDS - t0)) s"
  echo "| $name | $rc | $((SECONDS - t0)) |" >> "$SUMMARY"
  pack
  return $rc
}
built() { $PY -c "from dualhead import _ext; import sys; sys.exit(0 if _ext.cuda_built() else 1)" 2> /dev/null; }
ensure_built() { built || step build $PY setup.py build_ext --inplace; }
BENCH="$PY -m dualhead.detector.cli bench --device cuda"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(build tests sanitize bench)
for s in "${steps[@]}"; do
  case $s in
    build)
      step env bash -c "nvidia-smi; $PY -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))'; git log -1 --format='commit %H %cd' 2>/dev/null; echo CC=\${CC:-} CXX=\${CXX:-}"
      step build $PY setup.py build_ext --inplace
      step info $PY -m dualhead.detector.cli info ;;
    tests)
      ensure_built
      if $PY -c "import xdist" 2> /dev/null; then
        step tests timeout 560 $PY -m pytest -q -rfE -p no:cacheprovider -m cuda -n 8 tests/
      else
        for f in tests/test_*.py; do
          step "tests_$(basename "$f" .py)" timeout 300 $PY -m pytest -q -rfE -p no:cacheprovider -m cuda "$f"
        done
      fi ;;
    sanitize)
      ensure_built
      SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
      for tool in memcheck racecheck synccheck initcheck; do
        step $tool "$SAN" --tool $tool --error-exitcode 1 $PY benchmarks/sanitizer_case.py
      done ;;
    bench)
      ensure_built
      step bench_w1w2w4 $BENCH --workloads W1,W2,W4 --impls dualhead,ultralytics --rounds 5 --kernels \
        --json "$OUT/bench_cuda.json"
      step bench_w3_b128 $BENCH --workloads W3 --batch 128 --impls dualhead,ultralytics --rounds 3 \
        --json "$OUT/bench_cuda_w3_b128.json" ;;
    train)
      ensure_built
      step train timeout 560 $PY -m dualhead.detector.cli train --device cuda --out "$RUNS/train"
      cp "$RUNS/train/results.csv" "$OUT/train_results.csv" 2>/dev/null
      step train_loop timeout 300 $PY -m dualhead.detector.cli bench --train-loop --device cuda --workers 8 \
        --json "$OUT/train_loop_cuda.json" ;;
    train-compile)
      ensure_built
      step train_compile timeout 560 $PY -m dualhead.detector.cli train --device cuda --compile --out "$RUNS/train_compile"
      cp "$RUNS/train_compile/results.csv" "$OUT/train_compile_results.csv" 2>/dev/null ;;
    ablate)
      ensure_built
      # a longer schedule than the CPU's 6 epochs within one device call: 4 runs at a time, each
      # stopped after the epoch that crosses ABLATE_MINUTES (its last finished epoch is its row)
      step ablate timeout ${ABLATE_TIMEOUT:-560} $PY -m dualhead.detector.cli ablate --device cuda --workers 3 \
        --jobs 4 --seeds ${ABLATE_SEEDS:-2} --epochs ${ABLATE_EPOCHS:-25} --configs ${ABLATE_CONFIGS:-o2m,dual} \
        --time-limit ${ABLATE_MINUTES:-7} --anchors "${ABLATE_ANCHORS:-}" --ablate-out "$RUNS/ablate"
      cp "$RUNS/ablate/ablation.md" "$RUNS/ablate/ablation.json" "$OUT/" 2>/dev/null
      tar -czf "$OUT/ablate_runs.tar.gz" -C "$RUNS/ablate" --exclude='*.pt' --exclude=data_yolo \
        --exclude=weights . 2>/dev/null ;;
    lease)
      step env bash -c "nvidia-smi; $PY -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))'; echo CC=\${CC:-} CXX=\${CXX:-}"
      built || step build timeout 240 $PY setup.py build_ext --inplace
      step info timeout 30 $PY -m dualhead.detector.cli info
      step tests timeout 150 $PY -m pytest -q -rfE -p no:cacheprovider -m cuda -n 8 tests/
      SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
      for tool in memcheck racecheck synccheck initcheck; do
        step $tool timeout 45 "$SAN" --tool $tool --error-exitcode 1 $PY benchmarks/sanitizer_case.py
      done
      step bench_w1w2w4 timeout 110 $BENCH --workloads W1,W2,W4 --impls dualhead,ultralytics --rounds 3 --kernels \
        --json "$OUT/bench_cuda.json"
      step bench_w3_b128 timeout 70 $BENCH --workloads W3 --batch 128 --impls dualhead,ultralytics --rounds 2 \
        --json "$OUT/bench_cuda_w3_b128.json" ;;
    *) echo "unknown step $s (build tests sanitize bench lease train train-compile ablate)"; echo "| $s | unknown | 0 |" >> "$SUMMARY" ;;
  esac
done
$PY benchmarks/gpu_summary.py "$OUT" >> "$SUMMARY" 2>&1
pack
cat "$SUMMARY"
