"""`dualhead bench`: the contract §5 workloads against the baselines, in one process, interleaved.

Implementations compared on identical inputs (each checked equal to ultralytics once before
timing, tie-aware as in the tests):
  dualhead     dualhead.ops (fused kernels when the extension is built)
  reference    dualhead.reference (pure torch)
  ultralytics  ultralytics' TaskAlignedAssigner, called twice for dual (o2m topk 10; o2o topk 7 +
               topk2 1); asked for (the default) but not installed is an error
A row gets a speed-up only when its output was checked equal to ultralytics' (column
checked_against). Where ultralytics did not run (left out of --impls, or out of memory) the
others are checked against dualhead.reference and report no speed-up.
Modes: dual-compact (both heads, compact targets), dual-dense (both heads, ultralytics tuples),
single-compact / single-dense (the o2m head alone; ultralytics called once, topk 10).
Times are medians of interleaved rounds (torch.utils.benchmark.Timer, which synchronises CUDA).
Peak extra memory is measured per implementation in a fresh subprocess (CPU: peak RSS over the
call with glibc's mmap threshold pinned, so freed tensors are returned to the OS; CUDA:
max_memory_allocated). Writes a table and JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

import dualhead
from dualhead.compare import assert_same_targets
from dualhead.conventions import Convention
from dualhead.reference.assign import candidate_pairs
from dualhead.settings import O2M, O2O_E2E
from dualhead.synthetic import WORKLOADS, make_batch

# The contract's workloads (docs/contract.md §5) assign both heads as ultralytics' E2ELoss does (o2m top-10; o2o top-7 then topk2 1)
HEADS = (O2M, O2O_E2E)


def add_arguments(p):
    p.add_argument("--workloads", default="W1,W2,W3,W4", help="comma list of contract §5 ids (default all)")
    p.add_argument("--impls", default="dualhead,reference,ultralytics")
    p.add_argument("--modes", default="dual-compact,dual-dense", help="also: single-compact,single-dense")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (the contract's: 2)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    p.add_argument("--min-time", type=float, default=0.2, help="seconds per measurement")
    p.add_argument("--batch", type=int, default=None, help="override B (W3 on GPU: 128)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--kernels", action="store_true", help="CUDA: also GPU time per kernel of dualhead (torch.profiler)")
    p.add_argument("--sweep-m", default="", help="comma list of M for a W1-like sweep over ground truths per image")
    p.add_argument("--json", default="bench_results.json")
    p.add_argument("--mem-child", nargs=4, help=argparse.SUPPRESS)


def have_ultralytics() -> bool:
    try:
        import ultralytics.utils.tal  # noqa: F401  (optional: the baseline)

        return True
    except Exception:
        return False


def workload_batch(wid, device, batch=None, seed=0, m_override=None):
    kw = dict(WORKLOADS[wid])
    if batch:
        kw["B"] = batch
    if m_override:
        kw["n_gt"] = (m_override, m_override)
    bt = make_batch(seed=seed, device=device, **kw)
    s2, b2 = bt.second_head(seed + 1)
    return bt, s2.to(device), b2.to(device), kw["C"]


def make_fn(impl, mode, bt, s2, b2, C):
    """A zero-argument callable computing both heads with impl in mode."""
    a = bt.args()
    rest = a[2:]
    single = mode.startswith("single")
    if impl == "ultralytics":
        from ultralytics.utils.tal import TaskAlignedAssigner as UT

        u1, u2 = (UT(topk=h.topk, topk2=h.topk2, num_classes=C, alpha=h.alpha, beta=h.beta) for h in HEADS)
        if mode.endswith("compact"):
            return None  # ultralytics has no compact form; its dense call is the baseline
        if single:
            return lambda: (u1(a[0], a[1], *rest),)
        return lambda: (u1(a[0], a[1], *rest), u2(s2, b2, *rest))
    mod = dualhead.ops if impl == "dualhead" else dualhead.reference
    if single:

        def one():
            return mod.assign(*a, topk=O2M.topk, alpha=O2M.alpha, beta=O2M.beta)

        if mode == "single-compact":
            return one
        return lambda: as_dense(one(), "single-compact", C)

    def dual():
        return mod.dual_assign(a[0], a[1], s2, b2, *rest, heads=HEADS)

    if mode == "dual-compact":
        return dual
    return lambda: as_dense(dual(), "dual-compact", C)


def as_dense(out, mode, C):
    """An implementation's output as a tuple of ultralytics 5-tuples (one per head)."""
    if mode == "dual-compact":
        return (out.o2m.to_dense(C), out.o2o.to_dense(C))
    if mode == "single-compact":
        return (out.to_dense(C),)
    return out


def check_equal(impl_out, ref_out, what):
    """Tie-aware equality of two (o2m, o2o) dense pairs (dualhead.compare)."""
    for r, g in zip(ref_out, impl_out):
        assert_same_targets(r, g, what=what)


def first_call(fn):
    """(output, None) of a first (warm-up) call, or (None, note) when it ran out of memory --
    an outcome to report (ultralytics on W3 at B = 128), not a crash of the benchmark."""
    try:
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return out, None
    except torch.OutOfMemoryError:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return None, "out of memory"


def time_fn(fn, min_time, threads=None):
    # here, not at the top: it imports torch.utils.cpp_extension, which logs a CUDA_HOME warning on
    # machines without CUDA into every command's output
    from torch.utils.benchmark import Timer

    # Timer runs with num_threads=1 unless told otherwise: pass the thread count being measured.
    m = Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads or torch.get_num_threads()).blocked_autorange(
        min_run_time=min_time
    )
    return m.median


def mem_child(impl, mode, wid, device, batch):
    """Runs in a subprocess: peak extra memory (bytes) of one call."""
    bt, s2, b2, C = workload_batch(wid, device, int(batch) or None)
    fn = make_fn(impl, mode, bt, s2, b2, C)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base

    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        return 0

    base = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak-RSS counter (VmHWM)
        f.write("5")
    fn()
    return status("VmHWM") - base


def measure_memory(impl, mode, wid, device, batch):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="2")
    cmd = [sys.executable, "-m", "dualhead.bench", "--mem-child", impl, mode, wid, f"{device}:{batch or 0}"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return None
    try:
        return int(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}"


def kernel_times(fn, calls=10):
    """{kernel name: GPU microseconds per call} of fn on CUDA (torch.profiler, after a warm-up)."""
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    out = {}
    for e in prof.key_averages():
        t = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
        if t > 0:
            out[e.key] = out.get(e.key, 0.0) + t / calls
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _finish_group(group, base, args):
    """Speed-ups and peak memory of one (workload, mode) group's rows, then print them."""
    for r in group:
        b = base.get((r["workload"], r["mode"].split("-")[0]))
        # a speed-up only for a row whose output was checked equal to the baseline's
        same = r["impl"] == "ultralytics" or r.get("checked_against") == "ultralytics"
        r["speedup_vs_ultralytics"] = b / r["median_s"] if b and r["median_s"] and same else None
        if not args.no_memory and r["workload"] in WORKLOADS:
            r["peak_extra_mb"] = (lambda v: None if v is None else v / 2**20)(
                measure_memory(r["impl"], r["mode"], r["workload"], args.device, args.batch)
            )
        print_row(r)
        for k, us in (r.get("kernels") or {}).items():
            print(f"{'':<12}  kernel {us:9.1f} us  {k[:90]}")
    sys.stdout.flush()


def _listed(value: str, option: str, allowed: tuple) -> list[str]:
    """A comma list option's entries, each one of allowed (ValueError naming the option otherwise)."""
    items = [v for v in value.split(",") if v]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise ValueError(f"{option} takes a comma list of {', '.join(allowed)}, got {value!r}")
    return items


def run(args) -> int:
    if args.mem_child:
        impl, mode, wid, dev_batch = args.mem_child
        device, batch = dev_batch.rsplit(":", 1)
        torch.set_num_threads(2)
        print(mem_child(impl, mode, wid, device, batch))
        return 0
    torch.set_num_threads(args.threads)
    impls = _listed(args.impls, "--impls", ("dualhead", "reference", "ultralytics"))
    _listed(args.workloads, "--workloads", tuple(WORKLOADS))
    _listed(args.modes, "--modes", ("dual-compact", "dual-dense", "single-compact", "single-dense"))
    if "ultralytics" in impls and not have_ultralytics():
        # no baseline means no equality check and no speed-up: refuse rather than print timings alone
        raise ValueError(
            "--impls names the baseline 'ultralytics', which is not installed: pip install ultralytics==8.4.190, "
            "or leave it out (--impls dualhead,reference: timings checked against dualhead.reference, no speed-ups)"
        )
    # Dense modes first: ultralytics only has a dense call, and the compact rows' speed-up is
    # against that call's time, so every row can be printed as soon as its group is timed.
    modes = sorted((m for m in args.modes.split(",") if m), key=lambda m: m.endswith("compact"))
    cases = [(w, None) for w in args.workloads.split(",") if w]
    cases += [("W1", int(m)) for m in args.sweep_m.split(",") if m]
    meta = dict(
        date=time.strftime("%Y-%m-%d %H:%M"),
        machine=machine(),
        torch=torch.__version__,
        threads=args.threads,
        command=" ".join(["dualhead", "bench"] + sys.argv[2:]),
    )
    print(f"{meta['date']}  {meta['machine']}  torch {meta['torch']}  threads {args.threads}")
    print_header()
    rows, base = [], {}
    for wid, m_over in cases:
        bt, s2, b2, C = workload_batch(wid, args.device, args.batch, m_override=m_over)
        name = wid if m_over is None else f"W1 M={m_over}"
        n_gt = int(bt.mask_gt.sum())
        n_cand = len(candidate_pairs(bt.anc_points, bt.gt_bboxes, bt.mask_gt[..., 0].bool(), Convention()))
        for mode in modes:
            fns = {i: make_fn(i, mode, bt, s2, b2, C) for i in impls}
            fns = {i: f for i, f in fns.items() if f is not None}
            notes, checked = {}, {}
            ref, against = None, None
            if "ultralytics" in impls:  # assert equal once before timing
                ref, notes["ultralytics"] = first_call(
                    make_fn("ultralytics", mode.replace("compact", "dense"), bt, s2, b2, C)
                )
                against = "ultralytics" if ref is not None else None
            outs = {}
            for i, f in fns.items():
                if i != "ultralytics":
                    outs[i], notes[i] = first_call(f)
            if ref is None and outs.get("reference") is not None:
                # no baseline output (not asked for, or out of memory): dualhead.reference, itself
                # tested equal to ultralytics, is the check; no speed-up is reported from it
                ref, against = as_dense(outs["reference"], mode, C), "reference"
            for i, out in outs.items():
                if out is None or ref is None or i == against:
                    continue
                try:
                    check_equal(as_dense(out, mode, C), ref, f"{name}/{mode}/{i}")
                    checked[i] = against
                except AssertionError as e:  # keep measuring, but say so loudly (and fail at the end)
                    notes[i] = f"NOT EQUAL to {against}: {e}"
                    print(f"!! {name}/{mode}/{i}: {notes[i]}", file=sys.stderr)
            ref = outs = None
            ran = list(fns)
            fns = {i: f for i, f in fns.items() if notes.get(i) != "out of memory"}
            times = {i: [] for i in fns}
            for _ in range(args.rounds):  # interleaved: machine noise hits every impl alike
                for i, f in fns.items():
                    times[i].append(time_fn(f, args.min_time, args.threads))
            group = []
            for i in ran:
                group.append(
                    dict(
                        workload=name,
                        mode=mode,
                        impl=i,
                        B=bt.pd_scores.shape[0],
                        M=bt.gt_bboxes.shape[1],
                        n_gt=n_gt,
                        candidates=n_cand,
                        device=args.device,
                        note=notes.get(i),
                        checked_against="itself" if i == against else checked.get(i),
                        median_s=statistics.median(times[i]) if times.get(i) else None,
                    )
                )
                if args.kernels and i == "dualhead" and args.device.startswith("cuda") and i in fns:
                    group[-1]["kernels"] = kernel_times(fns[i])
                if i == "ultralytics" and group[-1]["median_s"]:
                    base[(name, mode.split("-")[0])] = group[-1]["median_s"]
            _finish_group(group, base, args)
            rows += group
            with open(args.json, "w") as f:  # after every group: a killed run keeps what it measured
                json.dump(dict(meta=meta, rows=rows), f, indent=1)
    print()
    print_table(rows)
    print(f"\n-> {args.json}")
    for r in rows:
        if r.get("note"):
            print(f"note: {r['workload']}/{r['mode']}/{r['impl']}: {r['note']}")
    unchecked = [f"{r['workload']}/{r['mode']}/{r['impl']}" for r in rows if r["median_s"] and not r["checked_against"]]
    if unchecked:
        print(f"note: not checked for equality (no ultralytics or reference output): {', '.join(unchecked)}")
    return 1 if any((r.get("note") or "").startswith("NOT EQUAL") for r in rows) else 0


HEADER = (
    f"{'workload':<12}{'mode':<16}{'impl':<13}{'B':>4}{'M':>6}{'cands':>9}{'median ms':>12}"
    f"{'x ultralytics':>15}{'peak MB':>10}"
)


def print_header():
    print(HEADER)
    print("-" * len(HEADER))


def print_row(r):
    sp = r.get("speedup_vs_ultralytics")
    mem = r.get("peak_extra_mb")
    t = f"{r['median_s'] * 1e3:.3f}" if r["median_s"] else ("OOM" if r.get("note") == "out of memory" else "-")
    print(
        f"{r['workload']:<12}{r['mode']:<16}{r['impl']:<13}{r['B']:>4}{r['M']:>6}{r['candidates']:>9}{t:>12}"
        f"{(f'{sp:.1f}x' if sp else '-'):>15}{(f'{mem:.0f}' if mem is not None else '-'):>10}",
        flush=True,
    )


def print_table(rows):
    print_header()
    for r in rows:
        print_row(r)


def main(argv=None) -> int:
    """`python -m dualhead.bench` (the same as `dualhead bench`, without the detector's options)."""
    p = argparse.ArgumentParser(
        prog="python -m dualhead.bench",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
