"""The CUDA execution layer's teeth: kernels with one defect planted each, built under the
sanitizer that should see it, run on the tests that reach the defect; each must be caught.

    python tests/cuda_emu_mutants.py [INDEX ...]     (make cuda-emu-mutants: all of them)

Each mutant names its test selection and the catcher expected to see it:
  race     ThreadSanitizer: data race            asan     AddressSanitizer report
  ubsan    UndefinedBehaviorSanitizer report      barrier  the layer's barrier fault
  launch   a launch error (bound or resources)   assert   an assertion failure of a selected test
A verdict is "caught (...)" only when the clean build of the same variant passed the same
selection (at least one test ran, none failed) and the mutant's run failed by the expected
catcher. A failure by anything else (no tests ran, a collection or import error, another
catcher, a crash) is "broken"; a passing run is "escaped". Prints one line per mutant and exits
1 unless every mutant was caught.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import cuda_emu

ROOT = cuda_emu.ROOT
ONE_CALL = "dual_assign_equals_cpu_kernel and coco and o2o1"
BIG_ROWS = "tiles_big_rows_and_fallback and emu-grid"

# (name, variant, file under csrc/, text, replacement, test selection (-k), expected catcher)
MUTANTS = [
    (
        "__syncwarp removed (tile merge -> commit)",
        "tsan",
        "cuda/assign_kernel.cu",
        "    const int n = tile_merged_len(T, x, cap);\n    __syncwarp();\n",
        "    const int n = tile_merged_len(T, x, cap);\n",
        ONE_CALL,
        "race",
    ),
    (
        "__syncthreads removed (big rows: tiles -> pairwise merge)",
        "tsan",
        "cuda/assign_kernel.cu",
        "    warp_tiles(p, sc, r, rc, lists[warp], warp, kBigWarps, lane);\n    __syncthreads();\n",
        "    warp_tiles(p, sc, r, rc, lists[warp], warp, kBigWarps, lane);\n",
        BIG_ROWS,
        "race",
    ),
    (
        "__syncthreads removed (block scan: carry read -> update)",
        "tsan",
        "cuda/assign_kernel.cu",
        "    __syncthreads();  // every thread has read carry; tmp may be reused\n",
        "",
        "dual_assign_equals_cpu_kernel and crowded and o2o1",
        "race",
    ),
    (
        "__syncwarp removed (grid search: probes -> narrowing)",
        "tsan",
        "cuda/anchor_grid_kernel.cu",
        "    grid_probe(anc, N, s, lane);\n    __syncwarp();\n",
        "    grid_probe(anc, N, s, lane);\n",
        "grid_recognised_on_the_device and square",
        "race",
    ),
    (
        "shared-memory index off by one (tile staging)",
        "asan",
        "assign_core.h",
        "  for (int x = 0; x < kLists; ++x) T.ca[x][lane] = -1;",
        "  for (int x = 0; x < kLists; ++x) T.ca[x][lane + 1] = -1;",
        ONE_CALL,
        "ubsan",
    ),
    (
        "block size above the launch bound (gt_tiles_kernel)",
        "plain",
        "cuda/assign_kernel.cu",
        "blocks_for(p.B * p.M, kTileWarps), kTileWarps * kTile, 0, st)",
        "blocks_for(p.B * p.M, kTileWarps), 2 * kTileWarps * kTile, 0, st)",
        ONE_CALL,
        "launch",
    ),
]

CATCHERS = {
    "race": r"WARNING: ThreadSanitizer: data race",
    "asan": r"ERROR: AddressSanitizer: [\w-]+",
    "ubsan": r"runtime error: [^\n]*",
    "barrier": r"dh_emu: [^\n]*(__syncthreads|__syncwarp)[^\n]*",
    "launch": r"__launch_bounds__|cudaErrorLaunchOutOfResources|cudaErrorInvalidConfiguration",
}
FAILED = re.compile(r"^FAILED (\S+)(?: - (\w+))?", re.M)
COUNTS = re.compile(r"(\d+) (passed|failed|error|errors|skipped|deselected)")


def _env(build: str) -> dict:
    return dict(
        os.environ,
        DUALHEAD_CUDA_EMU=build,
        DUALHEAD_CUDA_EMU_PREBUILT="1",
        DUALHEAD_CUDA_EMU_COUNTS=os.devnull,
        DH_EMU_HANG_S="60",
    )


def _pytest(build: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "tests/cuda_emu_run.sh", build, *args],
        cwd=ROOT,
        env=_env(build),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
    )


def selected(build: str, tests: str) -> list[str]:
    """The node ids the selection -k tests picks in that build's run."""
    r = _pytest(build, "--collect-only", "-k", tests)  # cuda_emu_run.sh gives -q: one id a line
    return [line for line in r.stdout.splitlines() if line.startswith("tests/") and "::" in line]


_clean: dict[tuple[str, str], str | None] = {}


def clean_failure(variant: str, tests: str, ids: list[str]) -> str | None:
    """Why the clean build of variant does not pass the selection (None: it passes, every
    selected test ran and none failed). Memoised: mutants share selections."""
    key = (variant, tests)
    if key not in _clean and not ids:
        _clean[key] = f"-k {tests!r} selects no test"
    elif key not in _clean:
        r = _pytest(variant, "-x", "-k", tests)
        counts = {k: int(n) for n, k in COUNTS.findall(r.stdout.splitlines()[-1] if r.stdout else "")}
        if r.returncode != 0 or counts.get("passed", 0) != len(ids):
            tail = r.stdout.strip().splitlines()[-1:] or ["no output"]
            _clean[key] = f"clean {variant} build: rc={r.returncode}, {tail[0][:160]}"
        else:
            _clean[key] = None
    return _clean[key]


def verdict(expect: str, rc: int, out: str, ids: list[str]) -> str:
    """caught (...) only by the expected catcher; broken for any other failure; escaped if it passed."""
    if expect == "assert":
        failed = FAILED.findall(out)
        ours = [(t, e) for t, e in failed if t in ids]
        if rc == 1 and ours and len(ours) == len(failed) and all(e == "AssertionError" for _, e in ours):
            return f"caught (assertion of {ours[0][0].split('::')[-1][:80]})"
    else:
        m = re.search(CATCHERS[expect], out)
        if m:
            what = re.sub(r"\S*/csrc/", "csrc/", m.group(0))[:160]
            return f"caught ({what})"
    if rc == 0:
        return "escaped"
    for other, pattern in CATCHERS.items():
        m = re.search(pattern, out)
        if m:
            return f"broken (expected {expect}, got {other}: {m.group(0)[:100]})"
    tail = out.strip().splitlines()[-1:] or ["no output"]
    return f"broken (expected {expect}; rc={rc}: {tail[0][:120]})"


def run(name, variant, path, old, new, tests, expect) -> str:
    cuda_emu.build(variant)
    ids = selected(variant, tests)
    why = clean_failure(variant, tests, ids)
    if why:
        return f"broken ({why})"
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:40]
    build = f"{variant}-{slug}"
    cuda_emu.build(build, mutations={path: [(old, new)]})
    proc = _pytest(build, "-x", "-k", tests)
    with open(os.path.join(cuda_emu.BUILD, build, "run.log"), "w") as f:
        f.write(proc.stdout)
    return verdict(expect, proc.returncode, proc.stdout, ids)


def main(only: list[int]) -> int:
    bad = 0
    for i, (name, variant, path, old, new, tests, expect) in enumerate(MUTANTS):
        if only and i not in only:
            continue
        t = time.time()
        v = run(name, variant, path, old, new, tests, expect)
        bad += not v.startswith("caught")
        print(f"{name:<60} [{variant}, csrc/{path}] {v} ({time.time() - t:.0f} s)", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main([int(a) for a in sys.argv[1:]]))
