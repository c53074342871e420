#!/usr/bin/env bash
# The default run with the data loaded in the training process (--workers 0) against one data
# worker (the CPU default), alternated in one sitting, from a worktree built in place (sbs.sh
# makes one):  bash workers.sh /tmp/dualhead-sbs/wt_<sha>
# Appends one line per run (workers, training seconds, the last results.csv row) to $RUNS/workers.txt.
set -euo pipefail
wt=$1; py=${PY:-$(git -C "$(dirname "$0")" rev-parse --show-toplevel)/.venv/bin/python}
RUNS=${RUNS:-/tmp/dualhead-sbs}; mkdir -p "$RUNS"; cd "$wt"
i=0
for w in 0 1 0 1; do
  i=$((i + 1)); out=$RUNS/w${i}_workers$w
  t0=$(date +%s.%N)
  PYTHONPATH=$wt "$py" -m dualhead.cli train --workers $w --out "$out" >"$out.log" 2>&1
  t1=$(date +%s.%N)
  echo "$i workers=$w start=$(date -d "@${t0%.*}" +%H:%M:%S) train_s=$(echo "$t1 - $t0" | bc) $(tail -1 "$out/results.csv")" \
    >>"$RUNS/workers.txt"
done
