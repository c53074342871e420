#!/usr/bin/env bash
# Runs the CUDA tests on the emulation library of VARIANT (plain, asan, tsan, cov) in a Python whose
# sanitizer runtime comes first, as an instrumented library loaded into Python needs:
#   bash tests/cuda_emu_run.sh asan [pytest args]     (make cuda-emu runs both sanitizers)
# libstdc++ is preloaded too: ASan intercepts C++ exceptions and must find them at start-up.
# ThreadSanitizer runs with one torch thread: torch's own (uninstrumented) thread pool is not
# ours to check, and would only add noise to the report.
set -euo pipefail
cd "$(dirname "$0")/.."
variant=${1:?usage: cuda_emu_run.sh plain|asan|tsan [pytest args]}
shift
PY=${PY:-.venv/bin/python}
CXX=${CXX:-g++}
# A mutant build (<variant>-<mutant>, tests/cuda_emu_mutants.py) is made by its script.
[ "${DUALHEAD_CUDA_EMU_PREBUILT:-}" = 1 ] || $PY tests/cuda_emu.py build "$variant" >/dev/null
stdcxx=$($CXX -print-file-name=libstdc++.so.6)
case "${variant%%-*}" in
  asan) export LD_PRELOAD="$($CXX -print-file-name=libasan.so) $stdcxx"
        export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=0
        export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ;;
  tsan) export LD_PRELOAD="$($CXX -print-file-name=libtsan.so) $stdcxx"
        export TSAN_OPTIONS=halt_on_error=1:report_signal_unsafe=0:second_deadlock_stack=1
        export OMP_NUM_THREADS=1 ;;
  plain|cov) ;;
  *) echo "unknown variant $variant" >&2; exit 2 ;;
esac
export DUALHEAD_CUDA_EMU=$variant
export DUALHEAD_CUDA_EMU_COUNTS=${DUALHEAD_CUDA_EMU_COUNTS:-build/cuda_emu/$variant.counts.json}
# --capture=sys: a sanitizer report goes to file descriptor 2, which must reach the log even when
# the report ends the process.
exec $PY -m pytest -q -p no:cacheprovider --capture=sys tests/test_cuda.py -m "not cuda" "$@"
