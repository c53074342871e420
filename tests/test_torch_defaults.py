"""The library makes its tensors on its inputs' device and in its own dtypes, never on torch's
default device or in its default dtype.

A user who sets `torch.set_default_device("cuda")` and hands the assigner CPU tensors (or the
reverse: a CUDA model under a CPU default), or who sets `torch.set_default_dtype(torch.float64)`,
must get the same targets, in the same dtypes. Each call below runs twice on the same CPU inputs:
as is, and under the "meta" default device (where a tensor made without its inputs' device cannot
meet them: an error) or the float64 default dtype; the results must be equal. This is also the
only way a CPU-only run can tell `device=x.device` from a dropped or `None` device argument."""

from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import torch
from conftest import float64_default_dtype

import dualhead
from dualhead import ops, reference
from dualhead.assignment import Assignment, DualAssignment
from dualhead.conventions import Convention as C
from dualhead.synthetic import make_batch

NC = 7


@contextmanager
def meta_default_device():
    torch.set_default_device("meta")
    try:
        yield
    finally:
        torch.set_default_device(None)


DEFAULTS = pytest.mark.parametrize("defaults", [meta_default_device, float64_default_dtype], ids=["meta", "float64"])


def _flat(x):
    """Every tensor of a result, in a fixed order (Assignments through their dense form)."""
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, DualAssignment):
        return _flat(x.o2m) + _flat(x.o2o) + _flat((x.stats.pick, x.stats.rank, x.stats.gap, x.stats.valid))
    if isinstance(x, Assignment):
        return _flat(x.to_dense(NC)) + [x.scores]
    if isinstance(x, dict):
        return [t for k in sorted(x) for t in _flat(x[k])]
    if isinstance(x, (tuple, list)):
        return [t for v in x for t in _flat(v)]
    if hasattr(x, "gt_inds"):  # mmdet's AssignResult or its stand-in
        return _flat((x.gt_inds, x.max_overlaps, x.labels, x.assign_metrics))
    raise TypeError(type(x))


def _same_both_ways(defaults, call, *args, **kw):
    """call(*args, **kw) as is and under other torch defaults: equal tensors, of equal dtypes, all
    on the CPU. The dense forms are taken inside each context (they make tensors too)."""
    want = _flat(call(*args, **kw))
    with defaults():
        got = _flat(call(*args, **kw))
    assert len(got) == len(want) and len(want) > 0
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.device.type == "cpu", f"output {i} made on {g.device}"
        assert g.dtype == w.dtype, f"output {i} is {g.dtype} under {defaults.__name__}, {w.dtype} otherwise"
        assert torch.equal(g, w), f"output {i} differs under {defaults.__name__}"


def _batch(n_gt=(1, 25), kind="crowded", B=3):
    bt = make_batch(B=B, C=NC, seed=11, n_gt=n_gt, kind=kind)
    s2, b2 = bt.second_head(seed=2)
    return bt, s2, b2


PRESETS = [
    lambda: None,
    lambda: C.ultralytics("8.4.60"),
    lambda: C.yolov9(),
    lambda: C.mmyolo(use_ciou=True),
    lambda: C.tood(),
]


@pytest.mark.parametrize("preset", PRESETS, ids=["default", "ultralytics-8.4.60", "yolov9", "mmyolo", "tood"])
@pytest.mark.parametrize("impl", ["reference", "ops"])
@DEFAULTS
def test_assignment_ignores_torch_defaults(defaults, impl, preset):
    mod = reference if impl == "reference" else ops
    bt, s2, b2 = _batch()
    conv = preset()
    kw = {} if conv is None else {"convention": conv}
    _same_both_ways(defaults, lambda: mod.assign(*bt.args(), topk=10, **kw))
    _same_both_ways(defaults, lambda: mod.dual_assign(bt.pd_scores, bt.pd_bboxes, s2, b2, *bt.args()[2:], **kw))


@pytest.mark.parametrize("preset", PRESETS, ids=["default", "ultralytics-8.4.60", "yolov9", "mmyolo", "tood"])
@pytest.mark.parametrize("impl", ["reference", "ops"])
@DEFAULTS
def test_empty_cases_ignore_torch_defaults(defaults, impl, preset):
    """No ground-truth slots, and slots that are all padding: the early-out paths (one per
    candidate order) make their outputs from scratch."""
    mod = reference if impl == "reference" else ops
    bt, s2, b2 = _batch()
    s, b, anc, lab, gt, mask = bt.args()
    conv = preset()
    kw = {} if conv is None else {"convention": conv}
    for lab_, gt_, mask_ in ((lab[:, :0], gt[:, :0], mask[:, :0]), (lab, gt, torch.zeros_like(mask))):
        _same_both_ways(defaults, mod.assign, s, b, anc, lab_, gt_, mask_, **kw)
        _same_both_ways(defaults, mod.dual_assign, s, b, s2, b2, anc, lab_, gt_, mask_, **kw)


@DEFAULTS
def test_overlaps_and_dense_targets_ignore_torch_defaults(defaults):
    g = torch.Generator().manual_seed(4)
    xy = torch.rand(9, 2, generator=g) * 50
    boxes = torch.cat((xy, xy + 1 + torch.rand(9, 2, generator=g) * 30), 1)
    for kind in ("iou", "giou", "diou", "ciou"):
        _same_both_ways(defaults, ops.box_iou, boxes, boxes.flip(0), kind)
        _same_both_ways(defaults, reference.box_iou, boxes, boxes.flip(0), kind)
        _same_both_ways(defaults, dualhead.iou.iou_aligned, boxes, boxes.flip(0), kind)
    bt, _, _ = _batch()
    a = reference.assign(*bt.args(), topk=10)
    _same_both_ways(defaults, lambda: ops.to_dense(a, NC))
    _same_both_ways(defaults, lambda: reference.to_dense(a, NC))


@DEFAULTS
def test_assigner_modules_and_drop_ins_ignore_torch_defaults(defaults):
    from dualhead.integrations.mmdet import TaskAlignedAssigner as MMDet
    from dualhead.integrations.mmyolo import BatchTaskAlignedAssigner as MMYolo
    from dualhead.integrations.ultralytics import UltralyticsTaskAlignedAssigner
    from dualhead.integrations.yolov9 import TaskAlignedAssigner as V9

    bt, s2, b2 = _batch()
    s, b, anc, lab, gt, mask = bt.args()
    _same_both_ways(defaults, lambda: dualhead.TaskAlignedAssigner(topk=10, num_classes=NC)(*bt.args()))
    _same_both_ways(defaults, lambda: dualhead.DualAssigner(num_classes=NC)(s, b, s2, b2, anc, lab, gt, mask))
    _same_both_ways(defaults, lambda: UltralyticsTaskAlignedAssigner(topk=10, num_classes=NC)(*bt.args()))
    _same_both_ways(defaults, lambda: V9(topk=10, num_classes=NC)(*bt.args()))
    priors = torch.cat((anc, torch.full_like(anc, 8.0)), 1)
    _same_both_ways(defaults, lambda: MMYolo(num_classes=NC, topk=10)(b, s, priors, lab, gt, mask))
    boxes = torch.cat((anc - 16, anc + 16), 1)
    mm = MMDet(topk=13)
    _same_both_ways(defaults, lambda: mm.assign_batch(boxes, b, s, gt, lab[..., 0], mask[..., 0]))
    _same_both_ways(defaults, lambda: mm.assign_batch(boxes, b, s, gt[:, :0], lab[:, :0, 0], mask[:, :0, 0]))
    m = mask[0, :, 0].bool()
    pred = SimpleNamespace(priors=boxes, bboxes=b[0], scores=s[0])
    _same_both_ways(defaults, lambda: mm.assign(pred, SimpleNamespace(bboxes=gt[0][m], labels=lab[0, :, 0][m].long())))
    _same_both_ways(defaults, lambda: mm.assign(pred, SimpleNamespace(bboxes=gt[0][:0], labels=lab[0, :0, 0].long())))


def test_anchor_points_are_made_where_asked():
    """anchor_points / make_anchors take their device as an argument (the CPU by default), not
    torch's default device."""
    want = dualhead.anchors.anchor_points(64)
    with meta_default_device():
        got = dualhead.anchors.anchor_points(64)
        pts, strides = dualhead.anchors.make_anchors([(8, 8), (4, 4)], (8, 16))
    assert got.device.type == "cpu" and torch.equal(got, want)
    assert pts.device.type == "cpu" and strides.device.type == "cpu"
    there = dualhead.anchors.anchor_points(64, device="meta")
    assert there.device.type == "meta" and there.shape == want.shape
    with float64_default_dtype():
        pts, strides = dualhead.anchors.make_anchors([(8, 8), (4, 4)], (8, 16), offset=0.0)
        got = dualhead.anchors.anchor_points(64)
    assert pts.dtype == strides.dtype == got.dtype == torch.float32 and torch.equal(got, want)
