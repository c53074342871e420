"""The CUDA execution layer's teeth: kernels with one defect planted each, built under the
sanitizer that should see it, run on the tests that reach the defect; each must be caught.

    python tests/cuda_emu_mutants.py [--repeat N] [INDEX ...]   (make cuda-emu-mutants: all of them)

Each mutant names its test selection and the catcher expected to see it:
  race       ThreadSanitizer: data race              asan     AddressSanitizer report
  ubsan      UndefinedBehaviorSanitizer report        barrier  the layer's barrier fault
  launch     a launch error (bound or configuration) registers  the register-file check
  fault      the layer's device-scope fault           assert   an assertion failure of a selected test
("asan|ubsan": either.)
A race mutant runs RACE_RUNS times (--repeat N: N times) and must be caught in every run.
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
RACE_RUNS = 3

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
        "atomicAdd made a plain ++ among a block's threads (member slots)",
        "tsan",
        "assign_core.h",
        "s.members[atomic_add_i32(s.cursor + s.anchor_gt[a], 1)]",
        "s.members[s.cursor[s.anchor_gt[a]]++]",
        ONE_CALL,
        "race",
    ),
    (
        "atomicAdd made a plain += across blocks (big rows' claims)",
        "tsan",
        "assign_core.h",
        "  atomicAdd(reinterpret_cast<unsigned long long*>(slot), static_cast<unsigned long long>(v));",
        "  *slot += v;",
        "big_rows_overlap",
        "race",
    ),
    (
        "one past a __shared__ array through a pointer (grid probes)",
        "asan",
        "anchor_grid.h",
        "  s.breaks[lane] = brk;",
        "  bool* probes = s.breaks;\n  probes[lane + 1] = brk;",
        "grid_recognised_on_the_device and square and emu",
        "asan",
    ),
    (
        "trailing __shared__ array indexed one past its end (grid probes)",
        "asan",
        "anchor_grid.h",
        "  s.breaks[lane] = brk;",
        "  s.breaks[lane + 1] = brk;",
        "grid_recognised_on_the_device and square and emu",
        "ubsan",
    ),
    (
        "host code reads device memory (the big-row queue's length)",
        "asan",
        "cuda/assign_kernel.cu",
        "static_cast<unsigned>(p.B * p.M < kMaxBigBlocks ? p.B * p.M : kMaxBigBlocks)",
        "static_cast<unsigned>(*s.n_big > 0 ? *s.n_big : 1)",
        BIG_ROWS,
        "asan",
    ),
    (
        "error record published with device scope",
        "plain",
        "cuda/assign_kernel.cu",
        "  atomicExch_system(&e->code, code);",
        "  atomicExch(&e->code, code);",
        "bad_row_dropped and label and emu",
        "fault",
    ),
    (
        "fallback launched with 1024 threads, no __launch_bounds__ (registers)",
        "plain",
        "cuda/assign_kernel.cu",
        "DH_LAUNCH(gt_rows_kernel<S>, blocks_for(p.B * p.M, kThreads), kThreads, 0, st)",
        "DH_LAUNCH(gt_rows_kernel<S>, blocks_for(p.B * p.M, 1024), 1024, 0, st)",
        "fallback_in_every and fp64 and emu",
        "registers",
    ),
    (
        "tie-break flipped among a tile's candidates",
        "plain",
        "assign_core.h",
        "for (int l = 0; l < kTile; ++l) rank += T.ca[x][l] >= 0 && ranks_before(T.cv[x][l], T.ca[x][l], m, a);",
        "for (int l = 0; l < kTile; ++l) rank += T.ca[x][l] >= 0 && (T.cv[x][l] > m || (T.cv[x][l] == m && T.ca[x][l] > a));",
        "exact_ties and tiles and emu",
        "assert",
    ),
    (
        "grid search: a round whose every probe holds skips a row",
        "plain",
        "anchor_grid.h",
        "    s.lo += (kGridLanes - 1) * step + 1;  // every probe held: the break is after the last one",
        "    s.lo += (kGridLanes - 1) * step + 2;",
        "grid_recognised_on_the_device and 64 and emu",
        "assert",
    ),
    (
        "a __shared__ field read before it is written (grid search start)",
        "asan",
        "anchor_grid.h",
        "  out.off_grid = 0;\n  s.start = 0;\n",
        "  out.off_grid = 0;\n",
        "grid_recognised_on_the_device and square and emu",
        "asan|ubsan",  # the poison byte as an index: 0xff..ff reads before anc (ASan), 0x7f..7f overflows the pointer (UBSan)
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
    "launch": r"__launch_bounds__|cudaErrorInvalidConfiguration",
    "registers": r"need \d+ registers, more than the \d+ of a block",
    "fault": r"dh_emu: [^\n]*host-mapped[^\n]*",
}
FAILED = re.compile(r"^FAILED (tests/\S+?::.+?)(?: - .*)?$", re.M)
RAISED = re.compile(r"^tests/[^\s:]+:\d+: (\w+)$", re.M)  # a failure's last traceback line: where, what
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


_selected: dict[str, list[str]] = {}


def selected(build: str, tests: str) -> list[str]:
    """The node ids the selection -k tests picks (memoised). Collected without a sanitizer
    runtime: collection loads no emulation library, and every variant runs the same tests."""
    if tests not in _selected:
        r = _pytest("plain", "--collect-only", "-k", tests)  # cuda_emu_run.sh gives -q: one id a line
        _selected[tests] = [x for x in r.stdout.splitlines() if x.startswith("tests/") and "::" in x]
    return _selected[tests]


def clean_runs(variant: str, selections: list[str]) -> None:
    """The clean build's runs of every selection of a variant in one process (the union must
    pass whole); on a failure, each selection alone, so the verdict names the one that fails."""
    ids = {t: selected(variant, t) for t in selections}
    union = set().union(*ids.values())
    if all(ids.values()):
        r = _pytest(variant, "-k", " or ".join(f"({t})" for t in selections))
        counts = {k: int(n) for n, k in COUNTS.findall(r.stdout.splitlines()[-1] if r.stdout else "")}
        if r.returncode == 0 and counts.get("passed", 0) == len(union):
            _clean.update({(variant, t): None for t in selections})
            return
    for t in selections:
        clean_failure(variant, t, ids[t])


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
        raised = RAISED.findall(out)
        ours = [t for t in failed if t in ids]
        if rc == 1 and ours and len(ours) == len(failed) and raised and set(raised) == {"AssertionError"}:
            return f"caught (assertion of {ours[0].split('::')[-1][:80]})"
    for one in expect.split("|"):  # "asan|ubsan": either sanitizer's report
        m = re.search(CATCHERS[one], out) if one != "assert" else None
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


def run(index, name, variant, path, old, new, tests, expect, runs=1) -> str:
    """The verdict of the mutant over `runs` runs: caught only if every run caught it. The
    mutant is built in place of the variant's clean build (ninja recompiles only the files that
    include the mutated one); main() runs the clean selections before and restores it after."""
    ids = selected(variant, tests)
    why = clean_failure(variant, tests, ids)
    if why:
        return f"broken ({why})"
    cuda_emu.build(variant, mutations={path: [(old, new)]})
    verdicts = []
    for i in range(runs):
        proc = _pytest(variant, "-x", "-k", tests)
        with open(os.path.join(cuda_emu.BUILD, variant, f"mutant{index}.run{i}.log"), "w") as f:
            f.write(proc.stdout)
        verdicts.append(verdict(expect, proc.returncode, proc.stdout, ids))
        if not verdicts[-1].startswith("caught"):
            return verdicts[-1] + (f" in run {i + 1} of {runs}" if runs > 1 else "")
    return verdicts[0] + (f" in {runs} of {runs} runs" if runs > 1 else "")


def main(argv: list[str]) -> int:
    repeat = None
    if "--repeat" in argv:
        at = argv.index("--repeat")
        repeat = int(argv[at + 1])
        argv = argv[:at] + argv[at + 2 :]
    only = [int(a) for a in argv]
    chosen = [(i, m) for i, m in enumerate(MUTANTS) if not only or i in only]
    bad = 0
    for variant in dict.fromkeys(m[1] for _, m in chosen):  # a variant at a time, in first-use order
        mine = [(i, m) for i, m in chosen if m[1] == variant]
        cuda_emu.build(variant)
        clean_runs(variant, list(dict.fromkeys(m[5] for _, m in mine)))  # first: the mutants replace the clean build
        try:
            for i, (name, _, path, old, new, tests, expect) in mine:
                t = time.time()
                runs = repeat or (RACE_RUNS if expect == "race" else 1)
                v = run(i, name, variant, path, old, new, tests, expect, runs)
                bad += not v.startswith("caught")
                print(f"{i:>2} {name:<66} [{variant}, csrc/{path}] {v} ({time.time() - t:.0f} s)", flush=True)
        finally:
            cuda_emu.build(variant)  # the clean build back
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
