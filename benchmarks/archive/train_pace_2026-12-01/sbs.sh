#!/usr/bin/env bash
# Side by side in one sitting: the default `make train` (dualhead train + dualhead predict) of
# several commits, alternated, each from its own worktree built in place (CPU build).
#   bash benchmarks/archive/train_pace_2026-12-01/sbs.sh 19d512c HEAD 01c888f HEAD 19d512c
# Appends one line per run (commit, training and predict seconds, the last results.csv row) to
# $RUNS/sbs.txt. Run it on a quiet machine: nothing else on the cores while it runs.
set -euo pipefail
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
py=${PY:-$repo/.venv/bin/python}
RUNS=${RUNS:-/tmp/dualhead-sbs}
mkdir -p "$RUNS"
i=0
for rev in "$@"; do
  sha=$(git -C "$repo" rev-parse --short "$rev")
  wt=$RUNS/wt_$sha
  if [ ! -d "$wt" ]; then
    git -C "$repo" worktree add -f --detach "$wt" "$sha" >/dev/null
    (cd "$wt" && DUALHEAD_NO_CUDA=1 MAX_JOBS=2 "$py" setup.py build_ext --inplace >"$wt.build.log" 2>&1)
  fi
  i=$((i + 1)); out=$RUNS/${i}_$sha
  cd "$wt"
  t0=$(date +%s.%N)
  PYTHONPATH=$wt "$py" -m dualhead.cli train --out "$out/train" >"$out.train.log" 2>&1
  t1=$(date +%s.%N)
  PYTHONPATH=$wt "$py" -m dualhead.cli predict --weights "$out/train/best.pt" --out "$out/predict" >"$out.predict.log" 2>&1
  t2=$(date +%s.%N)
  echo "$i $sha start=$(date -d "@${t0%.*}" +%H:%M:%S) train_s=$(echo "$t1 - $t0" | bc)" \
       "predict_s=$(echo "$t2 - $t1" | bc) $(tail -1 "$out/train/results.csv")" >>"$RUNS/sbs.txt"
done
