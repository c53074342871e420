"""The CUDA execution layer's teeth: kernels with one defect planted each, built under the
sanitizer that should see it, run on the tests that reach the defect; each must be caught.

    python tests/cuda_emu_mutants.py [INDEX ...]     (make cuda-emu-mutants: all of them)

Prints one line per mutant, `caught (<what caught it>)` or `escaped`, and exits 1 if one escaped.
What counts as caught, strongest first: a sanitizer report (ThreadSanitizer data race,
AddressSanitizer, UndefinedBehaviorSanitizer), a fault of the layer (a barrier misuse, a launch
error), or, last, a test failure on wrong results alone.
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

# (name, variant, file under csrc/, text, replacement, tests)
MUTANTS = [
    (
        "__syncwarp removed (tile merge -> commit)",
        "tsan",
        "cuda/assign_kernel.cu",
        "    const int n = tile_merged_len(T, x, cap);\n    __syncwarp();\n",
        "    const int n = tile_merged_len(T, x, cap);\n",
        ONE_CALL,
    ),
    (
        "__syncthreads removed (big rows: tiles -> pairwise merge)",
        "tsan",
        "cuda/assign_kernel.cu",
        "    warp_tiles(p, sc, r, rc, lists[warp], warp, kBigWarps, lane);\n    __syncthreads();\n",
        "    warp_tiles(p, sc, r, rc, lists[warp], warp, kBigWarps, lane);\n",
        BIG_ROWS,
    ),
    (
        "__syncthreads removed (block scan: carry read -> update)",
        "tsan",
        "cuda/assign_kernel.cu",
        "    __syncthreads();  // every thread has read carry; tmp may be reused\n",
        "",
        "dual_assign_equals_cpu_kernel and crowded and o2o1",
    ),
    (
        "__syncwarp removed (grid search: probes -> narrowing)",
        "tsan",
        "cuda/anchor_grid_kernel.cu",
        "    grid_probe(anc, N, s, lane);\n    __syncwarp();\n",
        "    grid_probe(anc, N, s, lane);\n",
        "grid_recognised_on_the_device and square",
    ),
    (
        "shared-memory index off by one (tile staging)",
        "asan",
        "assign_core.h",
        "  for (int x = 0; x < kLists; ++x) T.ca[x][lane] = -1;",
        "  for (int x = 0; x < kLists; ++x) T.ca[x][lane + 1] = -1;",
        ONE_CALL,
    ),
    (
        "block size above the launch bound (gt_tiles_kernel)",
        "plain",
        "cuda/assign_kernel.cu",
        "blocks_for(p.B * p.M, kTileWarps), kTileWarps * kTile, 0, st)",
        "blocks_for(p.B * p.M, kTileWarps), 2 * kTileWarps * kTile, 0, st)",
        ONE_CALL,
    ),
]

CAUGHT_BY = [
    (r"WARNING: ThreadSanitizer: data race", "ThreadSanitizer: data race"),
    (r"ERROR: AddressSanitizer: [\w-]+", None),
    (r"runtime error: .*", None),
    (r"dh_emu: .*(__syncthreads|__syncwarp)[^\n]*", "barrier fault"),
    (r"__launch_bounds__|cudaErrorLaunchOutOfResources|cudaErrorInvalidConfiguration", "launch error"),
]


def verdict(rc: int, out: str) -> str:
    for pattern, label in CAUGHT_BY:
        m = re.search(pattern, out)
        if m:
            what = label or m.group(0)
            if label == "barrier fault":
                what += ": " + re.sub(r"\S*/csrc/", "csrc/", m.group(0)[len("dh_emu: ") :])[:160]
            return f"caught ({what})"
    if rc != 0:
        return "caught (wrong results only: no sanitizer or layer report)"
    return "escaped"


def run(name, variant, path, old, new, tests) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:40]
    build = f"{variant}-{slug}"
    cuda_emu.build(build, mutations={path: [(old, new)]})
    env = dict(
        os.environ,
        DUALHEAD_CUDA_EMU=build,
        DUALHEAD_CUDA_EMU_PREBUILT="1",
        DUALHEAD_CUDA_EMU_COUNTS=os.devnull,
        DH_EMU_HANG_S="60",
    )
    proc = subprocess.run(
        ["bash", "tests/cuda_emu_run.sh", build, "-x", "-k", tests],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
    )
    with open(os.path.join(cuda_emu.BUILD, build, "run.log"), "w") as f:
        f.write(proc.stdout)
    return verdict(proc.returncode, proc.stdout)


def main(only: list[int]) -> int:
    escaped = 0
    for i, (name, variant, path, old, new, tests) in enumerate(MUTANTS):
        if only and i not in only:
            continue
        t = time.time()
        v = run(name, variant, path, old, new, tests)
        escaped += v == "escaped"
        print(f"{name:<60} [{variant}, csrc/{path}] {v} ({time.time() - t:.0f} s)", flush=True)
    return 1 if escaped else 0


if __name__ == "__main__":
    sys.exit(main([int(a) for a in sys.argv[1:]]))
