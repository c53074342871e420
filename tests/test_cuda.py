"""The CUDA backend's tests, run on two backends:

- emu: the CUDA kernels, their launchers and the CUDA host code compiled by the host compiler and
  executed on CPU threads (csrc/cuda/emu, tests/cuda_emu.py) -- in every test run, and under
  AddressSanitizer + UndefinedBehaviorSanitizer and ThreadSanitizer in `make cuda-emu`;
- cuda: the same tests on a GPU (marked cuda, skipped without one), plus what only a GPU has
  (streams, host-sync detection, graph capture, AMP training).

Each compares the CUDA backend with the CPU kernel on the same inputs: bitwise on emu (same
arithmetic: -ffp-contract=off and the host's libm on both sides), tie-aware on a GPU, where nvcc's
atanf/powf may differ from glibc's by an ulp (scores within 1e-5, identical positives on scored
anchors: dualhead.compare). Shapes are small: an emulated block is up to 512 OS threads.
"""

import contextlib
import os

import cuda_emu
import pytest
import torch
from conftest import fresh_seed, op_settings

import dualhead
from dualhead.anchors import make_anchors
from dualhead.compare import assert_same_targets
from dualhead.synthetic import make_batch

pytestmark = pytest.mark.skipif(
    not dualhead._ext.available(), reason=f"extension not built: {dualhead._ext.load_error()!r}"
)

C = 11
DUALS = [
    dict(o2o_topk=7, o2o_topk2=1),
    dict(o2o_topk=1),
    dict(o2m_topk=5, o2o_topk=4, o2o_topk2=2, conflict="claimants"),
]
DISTS = [
    ("coco", dict(imgsz=256, n_gt=(1, 30), kind="coco")),
    ("tiny", dict(imgsz=256, n_gt=(1, 30), kind="tiny")),
    ("crowded", dict(imgsz=256, n_gt=(260, 300), kind="crowded")),  # M > 256: the image kernel's scan tiles
    ("hires", dict(imgsz=512, n_gt=(5, 40), kind="coco")),
]


class Backend:
    """Where the CUDA code runs: 'emu' (CPU tensors, torch.ops.dualhead_emu) or 'cuda' (a GPU)."""

    def __init__(self, name):
        self.name = name
        self.emu = name == "emu"

    def put(self, args):
        """The arguments on this backend's device (copies: a test may change them)."""
        return [(t.clone() if self.emu else t.cuda()) if isinstance(t, torch.Tensor) else t for t in args]

    def __enter__(self):
        self._ctx = cuda_emu.routed() if self.emu else contextlib.nullcontext()
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)

    @property
    def ops(self):
        return torch.ops.dualhead_emu if self.emu else torch.ops.dualhead

    def sync(self):
        if not self.emu:
            torch.cuda.synchronize()

    def same(self, cpu, got, what=""):
        """An Assignment (or DualAssignment) of this backend equals the CPU kernel's."""
        pairs = [(cpu.o2m, got.o2m), (cpu.o2o, got.o2o)] if hasattr(cpu, "o2m") else [(cpu, got)]
        for c, g in pairs:
            if self.emu:
                for n in ("fg_mask", "gt_idx", "scores"):
                    assert torch.equal(getattr(c, n), getattr(g, n)), f"{what}: {n} differs"
            else:
                assert_same_targets(c.to_dense(C), tuple(t.cpu() for t in g.to_dense(C)), what=what)
        if getattr(cpu, "stats", None) is not None:
            assert torch.equal(cpu.stats.pick, got.stats.pick.cpu()), what
            assert torch.equal(cpu.stats.rank, got.stats.rank.cpu()), what
            if self.emu:
                assert torch.equal(cpu.stats.gap, got.stats.gap), what
            else:
                torch.testing.assert_close(got.stats.gap.cpu(), cpu.stats.gap, rtol=0, atol=1e-5)


@pytest.fixture(params=["emu", pytest.param("cuda", marks=pytest.mark.cuda)])
def dev(request):
    return Backend(request.param)


def _dual_args(seed, dtype=torch.float32, B=2, **dist):
    bt = make_batch(B=B, C=C, seed=seed, dtype=dtype, **dist)
    s2, b2 = bt.second_head(seed=seed + 1)
    return [bt.pd_scores, bt.pd_bboxes, s2, b2] + list(bt.args()[2:])


def _compare(dev, args, what="", **kw):
    cpu = dualhead.ops.dual_assign(*args, **kw)
    with dev:
        got = dualhead.ops.dual_assign(*dev.put(args), **kw)
    dev.same(cpu, got, what or str(kw))
    return got


@pytest.mark.parametrize("o2o", DUALS, ids=["o2o7+1", "o2o1", "claimants"])
@pytest.mark.parametrize("dist_name,dist", DISTS, ids=[d[0] for d in DISTS])
def test_dual_assign_equals_cpu_kernel(dev, o2o, dist_name, dist):
    """Both heads and the statistics, grid path: tiles, big rows, resolve, block scan, stats."""
    _compare(dev, _dual_args(fresh_seed(), **dist), **o2o)


def _whole_image_box(args):
    """Ground truth 0 of every image covers the whole image: over 256 cells (the big-row kernel)."""
    a = list(args)
    a[6] = a[6].clone()
    a[7] = a[7].clone()
    a[6][:, 0] = torch.tensor([2.0, 3.0, a[4][:, 0].max().item(), a[4][:, 1].max().item()])
    a[7][:, 0] = True
    return a


@pytest.mark.parametrize("grid", [True, False], ids=["grid", "general"])
def test_tiles_big_rows_and_fallback(dev, grid):
    """The warp-per-row tiles, the 16-warp big rows and the thread-per-row fallback (a topk above
    32), and topk 32 exactly (full tile lists), on the grid and on the general scan."""
    args = _whole_image_box(_dual_args(fresh_seed(), imgsz=128, n_gt=(3, 12)))
    if not grid:  # anchors and predictions reversed: no grid recognised, every row scans all anchors
        args[:4] = [t.flip(1) for t in args[:4]]
        args[4] = args[4].flip(0)
    assert torch.ops.dualhead.anchor_grid(args[4]).shape[0] == (3 if grid else 0)
    for kw in (
        dict(o2o_topk=7, o2o_topk2=1),
        dict(o2m_topk=32, o2o_topk=32, o2o_topk2=3),
        dict(o2m_topk=40, o2o_topk=33, o2o_topk2=1),
    ):
        _compare(dev, args, f"grid={grid} {kw}", **kw)


def test_big_rows_overlap(dev):
    """Only big rows, two per image over the same anchors: every claim comes from gt_big_kernel,
    one writer per anchor in each block and two blocks per anchor (a cross-block conflict)."""
    args = _dual_args(fresh_seed(), imgsz=128, n_gt=(2, 2))
    hi = args[4].max(0).values
    args[6] = torch.tensor([[2.0, 3.0, hi[0], hi[1]], [1.0, 1.0, hi[0] - 2, hi[1] - 1]]).expand(2, 2, 4).contiguous()
    args[7] = torch.ones(2, 2, 1, dtype=torch.bool)
    got = _compare(dev, args, o2m_topk=13, o2o_topk=4)
    assert (got.o2m.gt_idx[got.o2m.fg_mask] == 1).any() and (got.o2m.gt_idx[got.o2m.fg_mask] == 0).any()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_score_dtypes(dev, dtype):
    """Scores read in their own dtype and widened per element: each launch_typed instantiation
    through the tiles, big rows, the statistics' own ordering, both conflict rules of the
    ultralytics conventions, the all-pairs rule and the top-k-first scan."""
    args = _whole_image_box(_dual_args(fresh_seed(), dtype=dtype, imgsz=128, n_gt=(1, 20)))
    _compare(dev, args)
    _compare(dev, args, o2m_topk=5, o2o_topk=4, o2o_topk2=2, conflict="claimants")
    one = [args[i] for i in (0, 1, 4, 5, 6, 7)]
    for conv in (dualhead.Convention.yolov9(), dualhead.Convention.tood()):
        cpu = dualhead.ops.assign(*one, convention=conv, topk=10)
        with dev:
            got = dualhead.ops.assign(*dev.put(one), convention=conv, topk=10)
        dev.same(cpu, got, f"{dtype} {conv.name}")


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64], ids=["fp32", "fp16", "bf16", "fp64"]
)
def test_fallback_in_every_score_dtype(dev, dtype):
    """The thread-per-row fallback (a topk above the tiles' 32) in each score dtype: every
    gt_rows_kernel instantiation runs, and launches within the register file of its GPUs (its fp64
    instantiation needs the most registers); a padded slot, and the general scan (no grid)."""
    args = _dual_args(fresh_seed(), dtype=dtype, imgsz=128, n_gt=(1, 12))
    args[7] = args[7].clone()
    args[7][0, -1] = False
    _compare(dev, args, o2m_topk=40, o2o_topk=33)
    _compare(dev, args, o2m_topk=5, o2o_topk=40)  # the statistics' own ordering (o2m's list is shorter)
    one = [args[i] for i in (0, 1, 4, 5, 6, 7)]
    for conv in (None, dualhead.Convention.tood()):  # single head, no statistics; the top-k-first scan
        cpu = dualhead.ops.assign(*one, topk=40, convention=conv)
        with dev:
            got = dualhead.ops.assign(*dev.put(one), topk=40, convention=conv)
        dev.same(cpu, got, f"{dtype} single head {conv}")
    args[:4] = [t.flip(1) for t in args[:4]]
    args[4] = args[4].flip(0)
    _compare(dev, args, o2m_topk=40, o2o_topk=33)


def _tied(args):
    """Every anchor predicts the same box with the same scores: within a ground truth every
    candidate has the same metric, so the tie-breaks (the smaller anchor first) alone decide."""
    a = list(args)
    for i in (0, 2):
        a[i] = torch.full_like(a[i], 0.5)
    for i in (1, 3):
        a[i] = a[6][:, :1].expand_as(a[i]).contiguous()  # image b's first ground truth's box
    return a


@pytest.mark.parametrize("o2o", [dict(o2o_topk=7, o2o_topk2=1), dict(o2m_topk=40, o2o_topk=33)], ids=["tiles", "rows"])
def test_exact_ties(dev, o2o):
    """Exact ties between candidates, in the tiles' ranks and the one-to-one picks: the order is
    the CPU kernel's (smaller anchor first), whatever the lanes or the blocks' order."""
    args = _tied(_whole_image_box(_dual_args(fresh_seed(), imgsz=128, n_gt=(3, 12))))
    got = _compare(dev, args, **o2o)
    assert got.o2o.fg_mask.any(), "the ties were not exercised"


def test_rows_without_candidates(dev):
    """Ground truths outside the image hold no anchor: their rows have no candidate cells
    (beside ordinary ones, in the tiles and in the fallback)."""
    args = _dual_args(fresh_seed(), imgsz=128, n_gt=(4, 12))
    args[6] = args[6].clone()
    args[6][:, ::2] = torch.tensor([300.0, 310.0, 340.0, 330.0])  # every other slot: beyond the 128 px image
    args[6][:, 2::4] = torch.tensor([10.0, 300.0, 60.0, 330.0])  # some only below it (columns inside)
    for kw in (dict(o2o_topk=7, o2o_topk2=1), dict(o2m_topk=40, o2o_topk=33)):
        got = _compare(dev, args, **kw)
        # an outside ground truth holds no anchor; only rule 'all''s quirk hands one to slot 0, an
        # anchor contested with every overlap 0, at a zero target
        won = got.o2m.fg_mask & (got.o2m.gt_idx % 2 == 0)
        assert (got.o2m.gt_idx[won] == 0).all() and (got.o2m.scores[won] == 0).all(), "an outside ground truth won"


def test_single_head_and_conflict_rules(dev):
    args = _dual_args(fresh_seed(), imgsz=256, n_gt=(10, 40), kind="tiny")
    one = [args[i] for i in (0, 1, 4, 5, 6, 7)]
    for kw in (
        dict(topk=10),
        dict(topk=13, alpha=1.0, conflict="claimants", iou_type="diou", min_side=0.0),
        dict(topk=9, topk2=3, iou_type="giou"),
        dict(topk=10, iou_type="iou"),
    ):
        cpu = dualhead.ops.assign(*one, **kw)
        with dev:
            got = dualhead.ops.assign(*dev.put(one), **kw)
        dev.same(cpu, got, str(kw))


def test_empty_images_and_empty_calls(dev):
    """Images without a real ground truth beside ones with; no ground-truth slots at all (the
    host's early return)."""
    args = _dual_args(fresh_seed(), B=3, imgsz=128, n_gt=(1, 8))
    args[7] = args[7].clone()
    args[7][1] = 0  # image 1: padding only
    got = _compare(dev, args)
    assert not got.o2m.fg_mask[1].any() and not got.o2o.fg_mask[1].any()
    B, N = args[0].shape[:2]
    with dev:  # no ground-truth slots: the op itself (dualhead.ops answers M = 0 in Python)
        d = dev.put(args)
        fg, gt, t, pick, rank, gap = dev.ops.assign(
            d[0],
            d[1],
            d[2],
            d[3],
            d[4],
            d[5][:, :0, 0].long(),
            d[6][:, :0],
            d[7][:, :0, 0].bool(),
            op_settings(o2m=(10, 10, 0.5, 6.0), o2o=(7, 1, 0.5, 6.0)),
            True,
        )
    assert fg.shape == (2, B, N) and not fg.any() and not t.any() and pick.shape == (B, 0)


def test_deterministic_across_runs(dev):
    """Atomics only on packed integer keys and counters; member slices sorted before use."""
    args = dev.put(_dual_args(fresh_seed(), imgsz=256, n_gt=(260, 300), kind="crowded"))
    with dev:
        outs = [dualhead.ops.dual_assign(*args, o2o_topk=7, o2o_topk2=1) for _ in range(2)]
    for x, y in zip(_outputs(outs[0]), _outputs(outs[1])):
        assert torch.equal(x, y)


def _outputs(r):
    return [
        r.o2m.fg_mask,
        r.o2m.gt_idx,
        r.o2m.scores,
        r.o2o.fg_mask,
        r.o2o.gt_idx,
        r.o2o.scores,
        r.stats.pick,
        r.stats.rank,
        r.stats.gap,
    ]


def test_box_iou_and_to_dense(dev):
    g = torch.Generator().manual_seed(fresh_seed())
    xy = torch.rand(37, 2, generator=g) * 100
    b1 = torch.cat((xy, xy + torch.rand(37, 2, generator=g) * 50), 1)
    b1[3] = torch.tensor([5.0, 5.0, 5.0, 5.0])  # degenerate
    xy = torch.rand(23, 2, generator=g) * 100
    b2 = torch.cat((xy, xy + torch.rand(23, 2, generator=g) * 50), 1)
    for kind in ("iou", "giou", "diou", "ciou"):
        cpu = dualhead.ops.box_iou(b1, b2, kind)
        with dev:
            got = dualhead.ops.box_iou(*dev.put([b1, b2]), kind)
        assert torch.equal(cpu, got.cpu()) if dev.emu else torch.allclose(cpu, got.cpu(), atol=1e-6)
    labels = torch.randint(-1, C + 1, (3, 50), generator=g)  # -1 and C: outside [0, C), a zero row
    scores = torch.rand(3, 50, generator=g)
    want = torch.ops.dualhead.to_dense(labels, scores, C)
    with dev:
        la, sc = dev.put([labels, scores])
        assert torch.equal(dev.ops.to_dense(la, sc, C).cpu(), want)
        out = torch.full((3, 50, C), 7.0, device=la.device)
        dev.ops.to_dense_out(la, sc, out)
        assert torch.equal(out.cpu(), want)
        # empty inputs: the launchers' early returns
        assert dualhead.ops.box_iou(*dev.put([b1[:0], b2]), "iou").shape == (0, 23)
        assert dev.ops.to_dense(la[:, :0], sc[:, :0], C).shape == (3, 0, C)


# --- bad input: the device check drops the row and reports it to the next call -----------------

BAD_ROWS = [
    ("label -1", lambda a: _set_label(a, -1), r"gt_labels must be in \[0, C=11\).*got -1 \(image 0, slot 0\)"),
    ("label C", lambda a: _set_label(a, C), r"gt_labels must be in \[0, C=11\).*got 11 \(image 0, slot 0\)"),
    ("box nan", lambda a: _set_box(a, [1.0, float("nan"), 5.0, 9.0]), r"gt_bboxes must be finite.*nan"),
    ("box inf", lambda a: _set_box(a, [1.0, 2.0, float("inf"), 9.0]), r"gt_bboxes must be finite.*inf"),
    ("box inverted", lambda a: _set_box(a, [30.0, 2.0, 10.0, 9.0]), r"gt_bboxes must be xyxy with x2 >= x1"),
    ("box y inverted", lambda a: _set_box(a, [1.0, 20.0, 10.0, 9.0]), r"gt_bboxes must be xyxy with x2 >= x1"),
    ("box x1 nan", lambda a: _set_box(a, [float("nan"), 2.0, 5.0, 9.0]), r"gt_bboxes must be finite.*nan"),
    ("box y2 -inf", lambda a: _set_box(a, [1.0, 2.0, 5.0, float("-inf")]), r"gt_bboxes must be finite.*inf"),
]


def _set_label(a, v):
    a[5][0, 0] = v
    a[7][0, 0] = True


def _set_box(a, box):
    a[6][0, 0] = torch.tensor(box)
    a[7][0, 0] = True


@pytest.mark.parametrize("name,bad,message", BAD_ROWS, ids=[b[0] for b in BAD_ROWS])
def test_bad_row_dropped_and_reported_by_the_next_call(dev, monkeypatch, name, bad, message):
    """Without DUALHEAD_SYNC_CHECKS a bad ground truth does not stop its own call (no sync): its
    row is left out (the call equals the CPU kernel on the same inputs with the row masked), and
    the ValueError comes from dualhead.ops.check_errors() or the next call on the device; then
    all is clear. With DUALHEAD_SYNC_CHECKS=1 it is raised within the call."""
    monkeypatch.delenv("DUALHEAD_SYNC_CHECKS", raising=False)
    args = _dual_args(fresh_seed(), imgsz=128, n_gt=(2, 10))
    args[5], args[6], args[7] = args[5].clone(), args[6].clone(), args[7].clone()
    masked = list(args)
    bad(args)
    masked[7] = args[7].clone()
    masked[7][0, 0] = False
    want = dualhead.ops.dual_assign(*masked)
    with dev:
        got = dualhead.ops.dual_assign(*dev.put(args))
        dev.sync()
        dev.same(want, got, name)
        with pytest.raises(ValueError, match=message + r".*earlier dualhead assign call"):
            dualhead.ops.check_errors()
        dualhead.ops.check_errors()  # cleared
        dualhead.ops.dual_assign(*dev.put(args))
        dev.sync()
        with pytest.raises(ValueError, match=message + r".*earlier dualhead assign call"):
            dualhead.ops.dual_assign(*dev.put(masked))
        dev.same(want, dualhead.ops.dual_assign(*dev.put(masked)), name)
        monkeypatch.setenv("DUALHEAD_SYNC_CHECKS", "1")
        with pytest.raises(ValueError, match=message):
            dualhead.ops.dual_assign(*dev.put(args))
        dualhead.ops.check_errors()  # raised within the call: nothing left


def test_bad_anchor_reported(dev, monkeypatch):
    """A non-finite anchor is never a candidate (and breaks the grid: the general scan); the
    error reaches the next call."""
    monkeypatch.delenv("DUALHEAD_SYNC_CHECKS", raising=False)
    args = _dual_args(fresh_seed(), imgsz=128, n_gt=(2, 10))
    for col, bad in ((1, float("nan")), (0, float("inf"))):
        args[4] = args[4].clone()
        args[4][17, col] = bad
        with dev:
            dualhead.ops.dual_assign(*dev.put(args))
            dev.sync()
            with pytest.raises(ValueError, match=r"anc_points must be finite, got \(.*(nan|inf).*\) at index 17"):
                dualhead.ops.check_errors()
        args[4][17, col] = 0.0


def test_first_bad_row_recorded_stays(dev, monkeypatch):
    """Two bad rows in one call: one error is recorded (whichever thread claims the record
    first), the other does not overwrite it; both rows are left out."""
    monkeypatch.delenv("DUALHEAD_SYNC_CHECKS", raising=False)
    args = _dual_args(fresh_seed(), B=2, imgsz=128, n_gt=(3, 10))
    args[5], args[7] = args[5].clone(), args[7].clone()
    args[5][0, 0] = -1
    args[5][1, 1] = C
    args[7][0, 0] = args[7][1, 1] = True
    with dev:
        dualhead.ops.dual_assign(*dev.put(args))
        dev.sync()
        with pytest.raises(ValueError, match=r"got (-1 \(image 0, slot 0\)|11 \(image 1, slot 1\))"):
            dualhead.ops.check_errors()
        dualhead.ops.check_errors()  # one record, cleared: the second error was not kept beside it


def test_more_ground_truths_than_anchors(dev):
    """A 32 px image has 21 anchors; 2 x 30 ground-truth rows (the check kernel's range is the rows)."""
    _compare(dev, _dual_args(fresh_seed(), imgsz=32, n_gt=(30, 30), kind="tiny"))


def test_check_errors_reads_the_named_device(monkeypatch):
    """check_errors('cuda') reads the current device's record, 'cuda:k' (or k) device k, and no
    argument every device (a fake device set: no second GPU needed)."""
    import dualhead.ops as ops

    read = []

    class FakeLib:
        def take_cuda_error(self, d):
            read.append(d)
            return ""

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    monkeypatch.setattr(dualhead._ext, "has_op", lambda op: True)
    monkeypatch.setattr(ops, "_lib", FakeLib())
    for device, want in (
        ("cuda", [2]),
        ("cuda:1", [1]),
        (torch.device("cuda", 0), [0]),
        (None, [0, 1, 2]),
        ("cpu", []),
    ):
        read.clear()
        ops.check_errors(device)
        assert read == want, (device, read)


# --- the anchor grid: recognised on the device for every call, from its own anchors -------------


def _layout(shapes, strides):
    pts, st = make_anchors(shapes, strides)
    return pts * st


LAYOUTS = {
    "square": ([(16, 16), (8, 8), (4, 4)], (8, 16, 32)),
    "wide": ([(8, 16), (4, 8), (2, 4)], (8, 16, 32)),  # the same N as tall
    "tall": ([(16, 8), (8, 4), (4, 2)], (8, 16, 32)),
    "odd": ([(13, 7), (7, 4), (4, 2)], (8, 16, 32)),  # make_anchors of a 100 x 52 image
    "four levels": ([(16, 16), (8, 8), (4, 4), (2, 2)], (8, 16, 32, 64)),
    "one level, one row": ([(1, 40)], (8,)),
    "one column": ([(40, 1), (20, 1)], (8, 16)),
    "64 rows": ([(64, 10)], (8,)),  # the rows search's first round: all 32 probes hold, the next row breaks
}


def _grid_oracle(shapes, strides):
    rows, start = [], 0
    for (h, w), s in zip(shapes, strides):
        rows.append([start, w, h, s])
        start += h * w
    return rows


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_grid_recognised_on_the_device(dev, name):
    """The device's search + verification find what the layout is, as the CPU does; one anchor
    off by a float ulp, or the anchors reversed, is no grid."""
    shapes, strides = LAYOUTS[name]
    anc = _layout(shapes, strides)
    want = _grid_oracle(shapes, strides)
    assert torch.ops.dualhead.anchor_grid(anc).tolist() == want
    off = anc.clone()
    off[len(off) // 2, 0] = torch.nextafter(off[len(off) // 2, 0], torch.tensor(1e9))
    row_start = anc.clone()  # the first anchor of level 0's last row, its x off: the rows search's probe
    h, w = shapes[0]
    row_start[(h - 1) * w, 0] = torch.nextafter(row_start[(h - 1) * w, 0], torch.tensor(1e9))
    with dev:
        assert dev.ops.anchor_grid(dev.put([anc])[0]).tolist() == want
        assert dev.ops.anchor_grid(dev.put([anc.flip(0)])[0]).shape == (0, 4)
        assert dev.ops.anchor_grid(dev.put([off])[0]).shape == (0, 4)
        assert dev.ops.anchor_grid(dev.put([row_start])[0]).shape == (0, 4)
    assert torch.ops.dualhead.anchor_grid(off).shape == (0, 4)
    assert torch.ops.dualhead.anchor_grid(row_start).shape == (0, 4)


def test_grid_edge_layouts(dev):
    """No anchors; a first anchor at 0 (stride 0) or beyond the search's range: no grid, on the
    device as on the CPU."""
    square = _layout(*LAYOUTS["square"])
    for name, anc in (("empty", torch.zeros(0, 2)), ("at zero", square - square[0]), ("huge", square * 1e7)):
        assert torch.ops.dualhead.anchor_grid(anc).shape == (0, 4), name
        with dev:
            assert dev.ops.anchor_grid(dev.put([anc])[0]).shape == (0, 4), name


def test_grid_not_recognised_beyond_eight_levels(dev):
    shapes = [(1, 1)] * 9
    anc = _layout(shapes, tuple(2.0**i for i in range(9)))
    assert torch.ops.dualhead.anchor_grid(anc).shape == (0, 4)
    with dev:
        assert dev.ops.anchor_grid(dev.put([anc])[0]).shape == (0, 4)


def _layout_args(anc, M, g):
    N = anc.shape[0]
    hi = anc.max(0).values + 4
    xy = torch.rand(2, M, 2, generator=g) * hi * 0.8
    wh = 4 + torch.rand(2, M, 2, generator=g) * hi * 0.5
    gt = torch.cat([xy, xy + wh], -1)
    pred = (torch.cat([anc - 10, anc + 10], 1) + torch.randn(2, N, 4, generator=g) * 3).contiguous()
    return [
        torch.rand(2, N, 5, generator=g),
        pred,
        anc,
        torch.randint(0, 5, (2, M), generator=g),
        gt,
        torch.rand(2, M, generator=g) < 0.8,
    ]


def test_layouts_alternate_without_host_reads(dev):
    """Multi-scale training and rectangular batches: layouts alternate call by call (two with the
    same N, a third with another N, and anchors that are no grid first). Each call recognises its
    own grid on the device: every result equals the CPU kernel's, and no call reads anything back
    to the host (emu: no host synchronisation; GPU: torch.cuda's sync debug mode raises on one),
    from the very first call: there is no cache to warm up."""
    g = torch.Generator().manual_seed(fresh_seed())
    tall, wide, odd = (_layout(*LAYOUTS[k]) for k in ("tall", "wide", "odd"))
    order = [tall.flip(0), tall, wide, wide, tall, odd, wide, tall.flip(0), odd, tall]
    calls = [_layout_args(anc, 9, g) for anc in order]
    want = [dualhead.ops.assign(*a, topk=10) for a in calls]
    on_dev = [dev.put(a) for a in calls]
    with dev:
        before = cuda_emu.host_syncs() if dev.emu else None
        if not dev.emu:
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
        try:
            got = [dualhead.ops.assign(*a, topk=10) for a in on_dev]
        finally:
            if not dev.emu:
                torch.cuda.set_sync_debug_mode("default")
        if dev.emu:
            assert cuda_emu.host_syncs() == before
    for i, (w, r) in enumerate(zip(want, got)):
        dev.same(w, r, f"call {i}")


def test_cuda_assign_host_code_reads_nothing_back():
    """The CUDA assign host code has no device-to-host read: no copy to the CPU, and its one
    stream synchronisation is DUALHEAD_SYNC_CHECKS's (the emulated tests cannot see a copy, the
    GPU's sync-debug test can; this holds on every machine)."""
    import os

    path = os.path.join(cuda_emu.CSRC, "cuda", "assign_cuda.cpp")
    with open(path) as f:
        lines = f.read().splitlines()
    assert not [ln for ln in lines if "to_cpu(" in ln or "cudaMemcpy" in ln]
    syncs = [i for i, ln in enumerate(lines) if "cudaStreamSynchronize" in ln]
    assert len(syncs) == 1 and "sync_checks()" in lines[syncs[0] - 1], syncs


# --- GPU only ---------------------------------------------------------------------------------


def _cuda(args):
    return [t.cuda() if isinstance(t, torch.Tensor) else t for t in args]


@pytest.mark.cuda
def test_cuda_w_sized_equals_cpu_kernel():
    """At training size (640 px, up to 300 ground truths), tie-aware."""
    dev = Backend("cuda")
    for dist in (dict(imgsz=640, n_gt=(1, 40)), dict(imgsz=640, n_gt=(150, 300), kind="crowded")):
        _compare(dev, _dual_args(fresh_seed(), B=3, **dist), o2o_topk=7, o2o_topk2=1)


@pytest.mark.cuda
def test_cuda_side_stream_and_device_guard():
    """Kernels run on the current stream: inputs made on a side stream are read after they exist."""
    args = _cuda(_dual_args(fresh_seed(), imgsz=640, n_gt=(5, 40)))
    want = _outputs(dualhead.ops.dual_assign(*args))
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fresh = [t.clone() if isinstance(t, torch.Tensor) else t for t in args]
        got = _outputs(dualhead.ops.dual_assign(*fresh))
    side.synchronize()
    for x, y in zip(want, got):
        assert torch.equal(x, y)


@pytest.mark.cuda
def test_cuda_graph_capture_and_reduce_overhead():
    """The assignment is capturable in a CUDA graph and replays on new predictions written into
    the captured inputs; torch.compile(mode='reduce-overhead') of a DualAssigner, which builds on
    graphs, gives the eager results."""
    args = _cuda(_dual_args(fresh_seed(), imgsz=640, n_gt=(5, 40)))

    def f():
        return _outputs(dualhead.ops.dual_assign(*args, o2o_topk=7, o2o_topk2=1))

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        f()  # allocator warm-up (the assignment itself needs none)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = f()
    fresh = _cuda(_dual_args(fresh_seed(), imgsz=640, n_gt=(5, 40)))
    for i in (0, 1, 2, 3):  # new predictions of both heads, same ground truths
        args[i].copy_(fresh[i])
    graph.replay()
    torch.cuda.synchronize()
    for x, y in zip(f(), captured):
        assert torch.equal(x, y)

    dual = dualhead.DualAssigner(num_classes=C, o2o_topk=7, o2o_topk2=1)

    def step(*a):
        r = dual(*a)
        return r.o2m.fg_mask, r.o2m.scores, r.o2o.fg_mask, r.o2o.scores

    compiled = torch.compile(step, mode="reduce-overhead", fullgraph=True)
    for _ in range(3):  # records, then replays the graph
        got = compiled(*args)
    for x, y in zip(step(*args), got):
        assert torch.equal(x, y)


@pytest.mark.cuda
def test_cuda_training_step_amp(tmp_path):
    """The trainer on CUDA (AMP fp16 + GradScaler, the CUDA assign kernel): a short run learns
    nothing in particular but must produce finite losses and loadable checkpoints."""
    pytest.importorskip("pycocotools", reason="mAP needs pycocotools (benchmarks/gpu_wheels.sh fetches it)")
    from dualhead.detector.train import TrainConfig, train
    from dualhead.detector.train.checkpoint import load_checkpoint

    m = train(
        TrainConfig(
            data="shapes-easy",
            imgsz=128,
            train_len=64,
            val_len=16,
            batch=16,
            workers=0,
            epochs=1,
            device="cuda",
            amp="on",
            out=str(tmp_path),
        )
    )
    assert all(v == v for v in m.values() if isinstance(v, float))  # no NaN
    assert load_checkpoint(tmp_path / "last.pt") is not None


def test_register_table_covers_every_kernel():
    """The register table the emulated launches are checked against (tests/cuda_emu.py
    resources): every kernel, each arch setup.py builds for, registers within the 255 a thread
    may have; the archs are setup.py's. Without nvcc there is no table: skipped, saying so."""
    import re

    with open(os.path.join(cuda_emu.ROOT, "setup.py")) as f:
        archs = re.search(r'DEFAULT_ARCHS = "([^"]+)"', f.read()).group(1)
    assert archs == cuda_emu.DEFAULT_ARCHS
    table = cuda_emu.resources()
    if table is None:
        pytest.skip("no nvcc: no register table, the emulated launches are not checked against the register file")
    rows = [line.rstrip("\n").split("\t") for line in open(table) if not line.startswith("#")]
    for arch in archs.split(";"):
        names = {sig.split("(")[0] for a, sig, _, _ in rows if a == f"sm_{arch.replace('.', '')}"}
        assert names == set(cuda_emu.kernels()), (arch, names)
    assert all(0 < int(regs) <= 255 for _, _, regs, _ in rows)
    assert os.environ.get("DH_EMU_RESOURCES") == table  # what the runtime of this process reads


def test_emulated_launch_counts_cover_every_kernel():
    """Every __global__ kernel of csrc/cuda/ has run in this process's emulation library (runs
    last in this file: pytest keeps file order)."""
    counts = cuda_emu.launch_counts()
    missing = [k for k in cuda_emu.kernels() if not counts.get(k)]
    assert not missing, f"never launched: {missing} ({counts})"


CONVENTIONS = [
    dualhead.Convention.ultralytics("8.4.0"),
    dualhead.Convention.ultralytics("8.3.0"),
    dualhead.Convention.yolov9(),
    dualhead.Convention.mmyolo(use_ciou=True),
    dualhead.Convention.tood(),
]


@pytest.mark.parametrize("conv", CONVENTIONS, ids=[c.name for c in CONVENTIONS])
def test_conventions_equal_cpu_kernel(dev, conv):
    """Each codebase's rules on the device path, bitwise with the CPU: the all-pairs conflict
    (resolve over every ground truth), the top-k-first scan (every row a big row over all N
    anchors), the floor rules; single head and dual with statistics."""
    args = _dual_args(fresh_seed(), imgsz=320, n_gt=(5, 30), kind="tiny")
    one = [args[i] for i in (0, 1, 4, 5, 6, 7)]
    for kw in (dict(topk=10), dict(topk=7, topk2=1), dict(topk=40)):  # topk 40: the fallback
        cpu = dualhead.ops.assign(*one, convention=conv, **kw)
        with dev:
            got = dualhead.ops.assign(*dev.put(one), convention=conv, **kw)
        dev.same(cpu, got, f"{conv.name} {kw}")
    _compare(dev, args, conv.name, o2o_topk=7, o2o_topk2=1, convention=conv)
