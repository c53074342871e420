#!/usr/bin/env bash
# The stable-ABI promise, checked (`make compat`): build ONE wheel, then install it into fresh
# venvs holding other torch releases and run the kernel-vs-reference tests there.
#
#   bash benchmarks/compat.sh                  # wheel from .venv's torch (--no-build-isolation),
#                                              # tested under torch 2.10.0, 2.11.0, 2.12.1
#   COMPAT_TORCH="2.11.0" bash benchmarks/compat.sh
#   COMPAT_BUILD=isolated bash benchmarks/compat.sh   # plain `pip wheel .` in pip's isolated build
#                                              # environment (torch from pyproject.toml's
#                                              # build requirements, pinned by COMPAT_BUILD_TORCH)
#
# The wheel is a CUDA build (sm_80/sm_90) when the toolkit is found, so every venv gets a CUDA
# build of torch (pip's default here); the tests run on the CPU. Results: $OUT/compat.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-python3}
VENV_PY=${VENV_PY:-.venv/bin/python}
OUT=${OUT:-/tmp/dualhead-compat}
VERSIONS=${COMPAT_TORCH:-"2.10.0 2.11.0 2.12.1"}
BUILD=${COMPAT_BUILD:-venv}
export MAX_JOBS=${MAX_JOBS:-2}
TESTS="test_assign.py test_box_iou.py test_to_dense.py test_anchor_grid.py test_bad_input.py test_build.py"
mkdir -p "$OUT"
rm -rf "$OUT/wheel"

t0=$SECONDS
if [ "$BUILD" = isolated ]; then
  # pip's own isolated environment: setuptools, ninja and torch from [build-system] requires.
  # The pin only spares a multi-GB download of the newest torch: any torch >= 2.10 gives a
  # binary that loads under every torch >= 2.10.
  echo "torch==${COMPAT_BUILD_TORCH:-2.14.1}" > "$OUT/build-constraints.txt"
  "$VENV_PY" -m pip wheel --no-deps --build-constraint "$OUT/build-constraints.txt" -w "$OUT/wheel" .
else
  "$VENV_PY" -m pip wheel --no-deps --no-build-isolation -w "$OUT/wheel" .
fi
wheel=$(ls "$OUT"/wheel/dualhead-*.whl)
built_with=$("$VENV_PY" -c "import torch; print(torch.__version__)")
echo "built $(basename "$wheel") in $((SECONDS - t0)) s ($BUILD build)"
case $(basename "$wheel") in *-cp310-abi3-*) ;; *) echo "not an abi3 wheel: $wheel"; exit 1 ;; esac

{
  echo "| torch | kernel tests | seconds |"
  echo "|---|---|---|"
} > "$OUT/compat.md"
status=0
for v in $VERSIONS; do
  t0=$SECONDS
  venv=$OUT/venv-$v
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
  "$venv/bin/pip" install -q "torch==$v" numpy pytest hypothesis
  "$venv/bin/pip" install -q --no-deps --force-reinstall "$wheel"
  # The tests run from a copy, so `import dualhead` finds the installed wheel, not the source tree.
  rm -rf "$OUT/tests-$v" && cp -r tests "$OUT/tests-$v"
  set +e
  (cd "$OUT/tests-$v" && DUALHEAD_EXPECT_CUDA=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider \
    -k "not static_libstdcxx and not sources_use_only" $TESTS) > "$OUT/tests-$v.log" 2>&1
  rc=$?
  set -e
  line=$(tail -n 1 "$OUT/tests-$v.log")
  echo "torch $v: rc=$rc, $line"
  echo "| $v | $line | $((SECONDS - t0)) |" >> "$OUT/compat.md"
  [ $rc -eq 0 ] || status=1
done
echo
echo "One wheel ($(basename "$wheel"), built against torch $built_with, $BUILD build):"
cat "$OUT/compat.md"
exit $status
