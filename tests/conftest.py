import json
import os
import random
import sys
from contextlib import contextmanager

import numpy as np
import pytest
import torch


def pytest_configure(config):
    # the markers, here as well as in pyproject.toml: make compat runs a copy of tests/ without it
    config.addinivalue_line("markers", "cuda: needs a CUDA device (auto-skipped without one)")
    config.addinivalue_line("markers", "slow: end-to-end runs of a minute or more on 2 CPU cores (make test-slow)")


def pytest_sessionstart(session):
    # The kernel tests skip themselves without the extension; a run of the README's test command
    # on a build that does not load must fail, not pass green over the skips.
    from dualhead import _ext

    if not _ext.available() and os.environ.get("DUALHEAD_ALLOW_NO_EXTENSION") != "1":
        pytest.exit(
            f"dualhead's compiled extension did not load: {_ext.load_error()!r}. Rebuild it (make install); "
            "DUALHEAD_ALLOW_NO_EXTENSION=1 runs the tests that need no extension on purpose.",
            returncode=1,
        )


def pytest_collection_modifyitems(config, items):
    # CUDA tests are collected everywhere and skipped without a device (no GPU query at import).
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="no CUDA device")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)


def pytest_sessionfinish(session):
    # make cuda-emu: the emulated kernels' launch counts of this run, for its closing table.
    path = os.environ.get("DUALHEAD_CUDA_EMU_COUNTS")
    emu = sys.modules.get("cuda_emu")
    if path and emu is not None and emu._loaded:
        with open(path, "w") as f:
            json.dump(emu.launch_counts(), f)


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


_SEEDS = []  # the fresh seeds the running test drew, in order
_REPLAY = [int(s) for s in os.environ.get("DUALHEAD_SEEDS", "").split(",") if s.strip()]


def fresh_seed():
    """A new seed every run (random inputs with fresh seeds). A failing test's report names the
    seeds it drew and the command that re-runs it with them (DUALHEAD_SEEDS=a,b,... replays
    them in order). Drawn inside tests, never at collection, so xdist workers collect alike."""
    i = len(_SEEDS)
    seed = _REPLAY[i] if i < len(_REPLAY) else int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    _SEEDS.append(seed)
    return seed


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _SEEDS.clear()


@pytest.fixture(autouse=True)
def _seeded_global_rng():
    """torch's, numpy's and random's global generators seeded from a fresh seed per test: a test
    that draws from them (torch.rand, randn_like, a weight init) is reproducible from its report."""
    seed = fresh_seed()
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """torch's intra-op thread count back to what it was after each test: `dualhead bench` run
    in-process sets it, and the tests after it would otherwise run with more OpenMP threads than
    the run was given (two test processes on two cores then spin against each other)."""
    n = torch.get_num_threads()
    yield
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.failed and _SEEDS:
        seeds = ",".join(map(str, _SEEDS))
        report.sections.append(
            ("fresh seeds", f"seeds {seeds}; re-run: DUALHEAD_SEEDS={seeds} python -m pytest '{item.nodeid}'")
        )


CONFIGS = [
    ("o2m", dict(topk=10, min_side=16.0)),
    ("o2o", dict(topk=7, topk2=1, min_side=16.0)),
    ("yolov10-original", dict(topk=1, min_side=0.0)),
    ("class-defaults", dict(topk=13, alpha=1.0, beta=6.0, min_side=16.0)),
    ("claimants-diou", dict(topk=10, conflict="claimants", iou_type="diou", min_side=8.0)),
    ("giou-topk2-3", dict(topk=9, topk2=3, iou_type="giou", alpha=1.0, beta=2.0)),
]
DISTS = [
    ("coco", dict(imgsz=640, n_gt=(1, 40), kind="coco")),
    ("tiny", dict(imgsz=640, n_gt=(1, 40), kind="tiny")),
    ("crowded", dict(imgsz=640, n_gt=(150, 300), kind="crowded")),
    ("hires", dict(imgsz=1280, n_gt=(5, 60), kind="coco")),
]


def op_settings(o2m=(10, 10, 0.5, 6.0), o2o=(10, 10, 0.5, 6.0), **convention):
    """The `settings` list of a direct torch.ops.dualhead.assign call: each head's (topk, topk2,
    alpha, beta) and the Convention's fields by name (default: ultralytics 8.4.128+ at min_side
    16), packed in the op's own order (csrc/assign_settings.h) by dualhead's own packing, then the
    given values set without HeadSettings' or Convention's checks, so a test can hand the op
    values the Python layer would refuse."""
    from types import SimpleNamespace

    from dualhead.conventions import Convention
    from dualhead.conventions import op_settings as pack

    layout = settings_layout()
    heads = [SimpleNamespace(topk=1, kept=1, alpha=0.0, beta=0.0)] * 2
    values = dict(zip(layout, pack(heads, Convention(), layout)))
    for prefix, h in (("o2m", o2m), ("o2o", o2o)):
        values.update(zip((f"{prefix}_topk", f"{prefix}_topk2", f"{prefix}_alpha", f"{prefix}_beta"), h))
    values.update(convention)
    return [float(values[n]) for n in layout]


def settings_layout():
    return [n for n in torch.ops.dualhead.assign_settings().split(",") if n]


@contextmanager
def float64_default_dtype():
    """torch's default dtype float64 inside (the library must not follow it)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)
