"""The library's small promises, each stated exactly: the consistency summaries, the argument
messages, the pure-torch fallbacks, the drop-ins' default arguments, the empty cases. (The
mutation run, make mutation, found each of these able to change unnoticed.)"""

import contextlib
import inspect
import math

import pytest
import torch

import dualhead
from dualhead import ops, reference
from dualhead.assignment import ConsistencyStats
from dualhead.compare import assert_same_targets
from dualhead.conventions import IOU_KINDS
from dualhead.synthetic import make_batch

C = dualhead.Convention


def test_consistency_rates_count_real_ground_truths_with_a_pick():
    """top1/top5/top10: the share of real ground truths with an o2o pick whose o2m rank is below
    1/5/10; padding and ground truths without a pick (-1) are not counted; none -> nan."""
    pick = torch.tensor([[0, 3, -1, 7, 2, 9, 4, 6, 8]])
    rank = torch.tensor([[0, 4, -1, 5, 9, 0, 1, 10, 4]])
    valid = torch.tensor([[True, True, True, True, True, False, True, True, True]])
    gap = torch.tensor([[0.5, 1.5, 0.0, 1.0, 2.0, 9.0, 0.0, 1.0, 0.0]])
    s = ConsistencyStats(pick, rank, gap, valid)
    # 7 picks counted (pick 0 included, the -1 and the padding not): ranks 0, 4, 5, 9, 1, 10, 4
    assert (s.top1, s.top5, s.top10) == (1 / 7, 4 / 7, 6 / 7)
    assert s.as_dict() == {"top1": 1 / 7, "top5": 4 / 7, "top10": 6 / 7, "gap": 6.0 / 8}
    none = ConsistencyStats(
        torch.full((1, 2), -1), torch.full((1, 2), -1), torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool)
    )
    assert all(math.isnan(v) for v in (none.top1, none.top5, none.top10))


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
def test_box_iou_without_the_kernel_is_the_reference(monkeypatch, kind):
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(6, 2, generator=g) * 50
    b1 = torch.cat((xy, xy + 5 + torch.rand(6, 2, generator=g) * 30), 1)
    b2 = b1.flip(0)[:4] + 2.0
    kernel = ops.box_iou(b1, b2, kind)
    monkeypatch.setattr(ops, "_use_kernel", lambda op, t: False)
    fallback = ops.box_iou(b1, b2, kind)
    assert fallback.shape == (6, 4) and torch.equal(fallback, reference.box_iou(b1, b2, kind))
    torch.testing.assert_close(fallback, kernel, rtol=1e-5, atol=1e-6)
    assert torch.equal(ops.box_iou(b1, b2), ops.box_iou(b1, b2, "ciou"))


def test_reference_box_iou_defaults_and_messages():
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0]])
    assert torch.equal(reference.box_iou(b, b), reference.box_iou(b, b, "ciou"))
    assert float(reference.box_iou(b, b, "iou")[0, 1]) == pytest.approx(25 / 175, rel=1e-5)
    with pytest.raises(ValueError, match=r"kind must be one of \['ciou', 'diou', 'giou', 'iou'\], got 'siou'"):
        reference.box_iou(b, b, "siou")
    with pytest.raises(ValueError, match=r"^boxes1 must be \(N, 4\), got \(2, 3\)$"):
        reference.box_iou(b[:, :3], b)
    with pytest.raises(ValueError, match=r"^boxes2 must be \(N, 4\), got \(4,\)$"):
        reference.box_iou(b, b[0])
    with pytest.raises(ValueError, match=r"^boxes2 must be \(N, 4\), got \(1, 2, 4\)$"):
        reference.box_iou(b, b[None])


@pytest.mark.parametrize("impl", [ops, reference])
def test_messages_name_the_shape_or_the_type(impl):
    bt = make_batch(B=2, C=3, seed=0, n_gt=(1, 4))
    a = list(bt.args())
    with pytest.raises(ValueError, match=r"pd_scores must be \(B, N, C\), got \(2, 8400\)"):
        impl.assign(a[0][..., 0], *a[1:])
    with pytest.raises(ValueError, match=r"pd_bboxes must be \(B, N, 4\) = \(2, 8400, 4\), got \(2, 8400, 3\)"):
        impl.assign(a[0], a[1][..., :3], *a[2:])
    with pytest.raises(ValueError, match=r"pd_scores must be a torch.Tensor, got list"):
        impl.assign(a[0].tolist(), *a[1:])


def test_assignment_repr():
    bt = make_batch(B=2, C=3, seed=0, n_gt=(1, 4))
    a = reference.assign(*bt.args())
    assert repr(a) == f"Assignment(B=2, N=8400, positives={int(a.fg_mask.sum())})" and a.fg_mask.any()


@pytest.mark.parametrize("impl", [ops, reference])
def test_dense_buffer_of_the_wrong_shape_is_refused(impl):
    bt = make_batch(B=2, C=3, seed=0, n_gt=(1, 4))
    a = impl.assign(*bt.args())
    from dualhead.assignment import dense_torch

    want = dense_torch(a, 3)
    out = torch.full((2, 8400, 3), 7.0)
    got = dense_torch(a, 3, out)
    assert got[2] is out and torch.equal(out, want[2])  # written in place, zeros included
    with pytest.raises(ValueError, match=r"^out must be \(2, 8400, 3\), got \(2, 8400, 4\)$"):
        dense_torch(a, 3, torch.zeros(2, 8400, 4))
    with pytest.raises(ValueError, match=r"^out must be \(2, 8400, 3\), got \(8400, 3\)$"):
        ops.to_dense(a, 3, torch.zeros(8400, 3))


def test_no_ground_truth_slots_in_the_reference():
    """M = 0: every anchor background with class C, index 0, zero box and score (ultralytics)."""
    bt = make_batch(B=2, C=4, seed=0, n_gt=(1, 3))
    a = list(bt.args())
    a[3], a[4], a[5] = a[3][:, :0], a[4][:, :0], a[5][:, :0]
    for conv in (C(), C.tood()):
        r = reference.assign(*a, convention=conv)
        assert r.fg_mask.dtype == torch.bool and r.fg_mask.shape == (2, 8400) and not r.fg_mask.any()
        assert r.gt_idx.dtype == torch.int64 and not r.gt_idx.any() and (r.labels == 4).all()
        assert r.bboxes.shape == (2, 8400, 4) and not r.bboxes.any() and r.scores.shape == (2, 8400)
        assert not r.scores.any()


@pytest.mark.parametrize("impl", [ops, reference])
def test_topk_first_with_no_real_ground_truth_and_with_zero_metrics(impl):
    """TOOD's rule: only padding -> no positives; an object whose top-k anchors inside it all have
    metric 0 (the predictions do not overlap it) gets no positive, not its zero-metric anchors."""
    bt = make_batch(B=2, C=4, seed=1, n_gt=(2, 5))
    a = list(bt.args())
    pad = torch.zeros_like(a[5])
    r = impl.assign(*a[:5], pad, topk=9, convention=C.tood())
    assert not r.fg_mask.any() and (r.scores == 0).all()
    far = a[1].clone()
    far[...] = torch.tensor([-50.0, -50.0, -40.0, -40.0])  # every prediction outside the image
    r = impl.assign(a[0], far, *a[2:], topk=9, convention=C.tood())
    assert not r.fg_mask.any()


def test_o2m_weight_schedule():
    """ultralytics E2ELoss: 0.8 at epoch 0, 0.1 at the last epoch, linear between, never below."""
    from dualhead.detector.loss import o2m_weight

    assert o2m_weight(0, 5) == pytest.approx(0.8) and o2m_weight(4, 5) == pytest.approx(0.1)
    assert o2m_weight(2, 5) == pytest.approx(0.45) and o2m_weight(9, 5) == pytest.approx(0.1)
    assert o2m_weight(1, 2) == pytest.approx(0.1) and o2m_weight(0, 1) == pytest.approx(0.8)


@pytest.mark.parametrize(
    "cls_path,defaults",
    [
        # WongKinYiu/yolov9 utils/tal/assigner.py TaskAlignedAssigner.__init__
        (
            "dualhead.integrations.yolov9.TaskAlignedAssigner",
            dict(topk=13, num_classes=80, alpha=1.0, beta=6.0, eps=1e-9),
        ),
        # mmyolo BatchTaskAlignedAssigner.__init__
        (
            "dualhead.integrations.mmyolo.BatchTaskAlignedAssigner",
            dict(topk=13, alpha=1.0, beta=6.0, eps=1e-7, use_ciou=False),
        ),
    ],
)
def test_drop_ins_default_arguments_are_their_codebases(cls_path, defaults):
    import importlib

    mod, name = cls_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(mod), name)
    sig = inspect.signature(cls.__init__)
    assert {k: sig.parameters[k].default for k in defaults} == defaults
    a = cls(num_classes=5) if "num_classes" not in defaults else cls()
    assert (a.topk, a.alpha, a.beta, a.eps) == (defaults["topk"], defaults["alpha"], defaults["beta"], defaults["eps"])
    assert a.convention.eps == defaults["eps"]
    c = cls(num_classes=5, topk=4, alpha=0.25, beta=2.5, eps=1e-5)
    assert (c.topk, c.num_classes, c.alpha, c.beta, c.eps, c.convention.eps) == (4, 5, 0.25, 2.5, 1e-5, 1e-5)
    if "use_ciou" in defaults:
        assert a.use_ciou is False and a.convention.iou_type == "iou"
        b = cls(num_classes=5, use_ciou=True, eps=1e-6)
        assert b.use_ciou is True and b.convention.iou_type == "ciou" and b.eps == b.convention.eps == 1e-6
    else:
        assert a.num_classes == 80 and cls(eps=1e-7).convention.eps == 1e-7


def test_box_iou_runs_the_compiled_kernel_when_there_is_one(monkeypatch):
    """ops.box_iou dispatches to torch.ops.dualhead.box_iou for a tensor it has a kernel for (the
    reference gives the same numbers, so only the call shows which one ran)."""
    calls = []

    class Spy:
        def box_iou(self, *args):
            calls.append(args[2])
            return torch.ops.dualhead.box_iou(*args)

    monkeypatch.setattr(ops, "_lib", Spy())
    b = torch.tensor([[0.0, 0, 10, 10], [5, 5, 15, 15]])
    ops.box_iou(b, b, "giou")
    assert calls == [IOU_KINDS["giou"]]  # the kind's code as the op takes it


def test_the_yolov10_preset_is_ultralytics_8_1_34_renamed():
    """THU-MIG/yolov10 forks ultralytics 8.1.34: no small-box floor; keywords go through."""
    from dataclasses import replace

    y = C.yolov10()
    assert y == replace(C.ultralytics("8.1.34"), name="THU-MIG/yolov10")
    assert (y.floor_below, y.floor_to, y.round_trip, y.name) == (0.0, 0.0, False, "THU-MIG/yolov10")
    assert C.yolov10(eps=1e-7).eps == 1e-7
    assert C.ultralytics("8.4.0.dev1") == C.ultralytics((8, 4, 0))  # a suffix after the numbers
    for bad in (None, "XX8.1.34XX", "latest"):
        with pytest.raises(ValueError, match="cannot read the release"):
            C.ultralytics(bad)


def test_yolov9_drop_in_keeps_its_background_index():
    from dualhead.integrations.yolov9 import TaskAlignedAssigner

    assert TaskAlignedAssigner(topk=10, num_classes=7).bg_idx == 7  # yolov9's attribute: the class count


def test_mmdet_plain_iou_of_aligned_boxes():
    """mmdet's bbox_overlaps (mode iou, eps 1e-6): no overlap is 0, the union floored at 1e-6."""
    from dualhead.integrations.mmdet import _iou_aligned

    a = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 1e-4, 1e-3]])
    b = torch.tensor([[20.0, 20, 30, 30], [5, 0, 15, 10], [0, 0, 1e-4, 1e-3]])
    got = _iou_aligned(a, b)
    assert got[0] == 0  # disjoint
    assert got[1] == pytest.approx(50 / 150)
    assert got[2] == pytest.approx(1e-7 / 1e-6, rel=1e-3)  # area 1e-7 < eps: the union is eps


def test_the_one_reduction_value_check_is_exact():
    """checks._values_ok is check_inputs' fast path: one device reduction (one sync on CUDA) that
    must say yes to every valid input -- a no sends the call down the slow path of one read per
    check -- and no to every invalid one, which the slow path then names."""
    from dualhead.checks import _values_ok

    C = 5
    labels = torch.tensor([[0.0, 4.0, 2.0, float("nan")]])  # the NaN one is padding
    mask = torch.tensor([[True, True, True, False]])
    boxes = torch.tensor([[[0, 0, 10, 10], [5, 5, 5, 9], [3, 3, 8, 3], [float("nan"), 0, -5, 0]]])
    anc = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert _values_ok(labels, mask, boxes, anc, C)  # label 0, zero width, zero height, bad padding
    assert _values_ok(labels.nan_to_num(0).long(), mask, boxes, anc, C)

    def bad(what, i, value):
        t = {"labels": labels, "boxes": boxes, "anc": anc}[what].clone()
        t.view(-1)[i] = value
        kw = {"labels": labels, "boxes": boxes, "anc": anc, what: t}
        return _values_ok(kw["labels"], mask, kw["boxes"], kw["anc"], C)

    for what, i, value in [
        ("labels", 1, float("nan")),
        ("labels", 1, 5.0),
        ("labels", 1, -1.0),
        ("boxes", 2, float("inf")),
        ("boxes", 2, -1.0),  # box 0 [0, 0, -1, 10]: x2 < x1
        ("boxes", 3, -1.0),  # box 0 [0, 0, 10, -1]: y2 < y1
        ("boxes", 4, 7.0),  # box 1 [7, 5, 5, 9]: x2 < x1, though y2 >= x1 and x2 >= y1
        ("boxes", 5, 12.0),  # box 1 [5, 12, 5, 9]: y2 < y1, though y2 >= x2
        ("boxes", 7, 4.0),  # box 1 [5, 5, 5, 4]: y2 < y1
        ("anc", 0, float("inf")),
    ]:
        assert not bad(what, i, value), (what, i, value)


def test_dual_assign_passes_every_rule_keyword():
    """ops.dual_assign's rule keywords (min_side / conflict / iou_type / eps) and o2o metric ones
    (r, o2o_alpha, o2o_beta) reach the op: each equals the reference given the same keyword, on a
    batch where it changes the targets."""
    bt = make_batch(B=2, C=6, seed=21, n_gt=(60, 120), kind="crowded")
    s2, b2 = bt.second_head(seed=3)
    args = (bt.pd_scores, bt.pd_bboxes, s2, b2) + bt.args()[2:]
    default = ops.dual_assign(*args)
    default, default_o2o = default.o2m.to_dense(6), default.o2o.to_dense(6)
    for kw in (
        dict(min_side=0.0),
        dict(min_side=40.0),
        dict(conflict="claimants"),
        dict(iou_type="giou"),
        dict(eps=1e-3),
        dict(o2o_alpha=2.0),
        dict(o2o_beta=1.0),
        dict(r=0.5),
    ):
        got, want = ops.dual_assign(*args, **kw), reference.dual_assign(*args, **kw)
        for g, w in ((got.o2m, want.o2m), (got.o2o, want.o2o)):
            assert_same_targets(w.to_dense(6), g.to_dense(6), what=str(kw))
        changed = not torch.equal(got.o2m.to_dense(6)[2], default[2])
        changed |= not torch.equal(got.o2o.to_dense(6)[2], default_o2o[2])
        assert changed, f"{kw} changed nothing here"


def test_dual_settings_build_each_head_from_its_options():
    """settings.dual_settings: the o2m head from o2m_topk / alpha / beta (named "o2m" in errors),
    the o2o head from o2o_topk / o2o_topk2 and r * (alpha, beta) unless o2o_alpha / o2o_beta are
    given; r = 0 is allowed, r < 0 is not."""
    from dualhead.settings import HeadSettings, dual_settings

    o2m, o2o = dual_settings()
    assert (o2o.alpha, o2o.beta) == (o2m.alpha, o2m.beta)  # r = 1: the consistent metric
    o2m, o2o = dual_settings(o2m_topk=5, o2o_topk=4, o2o_topk2=2, alpha=0.25, beta=3.0, r=2.0)
    assert o2m == HeadSettings(5, None, 0.25, 3.0) and o2o == HeadSettings(4, 2, 0.5, 6.0)
    _, o2o = dual_settings(alpha=0.25, beta=3.0, r=2.0, o2o_alpha=0.75, o2o_beta=1.5)
    assert (o2o.alpha, o2o.beta) == (0.75, 1.5)
    _, o2o = dual_settings(r=0)
    assert (o2o.alpha, o2o.beta) == (0.0, 0.0)
    with pytest.raises(ValueError, match="r must be a finite number >= 0, got -1"):
        dual_settings(r=-1)
    with pytest.raises(ValueError, match="o2m_topk must be"):
        dual_settings(o2m_topk=0)
    with pytest.raises(ValueError, match="o2o_topk2 must be"):
        dual_settings(o2o_topk=3, o2o_topk2=4)


@pytest.mark.parametrize("how", ["no kernel for the device", "DUALHEAD_REFERENCE=1"])
def test_without_the_kernel_the_ops_run_the_reference_with_every_option(monkeypatch, how):
    """With no kernel for the tensors' device, or DUALHEAD_REFERENCE=1, ops.assign / dual_assign
    run dualhead.reference (the compiled op is never called) with the call's heads and
    convention, not the defaults."""
    bt = make_batch(B=2, C=6, seed=8, n_gt=(30, 60), kind="crowded")
    s2, b2 = bt.second_head(seed=5)
    args = (bt.pd_scores, bt.pd_bboxes, s2, b2) + bt.args()[2:]
    kw = dict(o2m_topk=6, o2o_topk=3, alpha=1.0, beta=2.0, convention=C.yolov9())
    want = reference.dual_assign(*args, **kw)
    want1 = reference.assign(*bt.args(), topk=4, convention=C.tood())
    monkeypatch.setattr(dualhead._ext, "_warned", False)  # the once-per-process warning, restored after
    if how == "DUALHEAD_REFERENCE=1":
        monkeypatch.setenv("DUALHEAD_REFERENCE", "1")
        warned = contextlib.nullcontext()  # asked for: no warning
    else:
        monkeypatch.setattr(dualhead._ext, "has_kernel", lambda op, key: False)
        warned = pytest.warns(RuntimeWarning, match="the compiled extension has no assign kernel for CPU tensors")
    monkeypatch.setattr(ops, "_lib", None)  # any use of the compiled ops fails
    with warned:
        got = ops.dual_assign(*args, **kw)
    for g, w in ((got.o2m, want.o2m), (got.o2o, want.o2o)):
        assert torch.equal(g.fg_mask, w.fg_mask) and torch.equal(g.gt_idx, w.gt_idx)
        assert torch.equal(g.scores, w.scores)
    got1 = ops.assign(*bt.args(), topk=4, convention=C.tood())
    assert torch.equal(got1.fg_mask, want1.fg_mask) and torch.equal(got1.scores, want1.scores)
    assert not torch.equal(got.o2m.fg_mask, reference.dual_assign(*args).o2m.fg_mask)  # the options mattered


def test_an_extension_without_the_settings_op_is_named(monkeypatch):
    monkeypatch.setattr(ops, "_LAYOUT", None)
    with pytest.raises(RuntimeError) as e:
        ops._settings_layout()
    assert str(e.value) == "the dualhead extension has no assign_settings op: rebuild it (pip install -e .)"


def test_dual_inputs_name_their_head_and_share_a_dtype():
    """A bad o2m / o2o input is named with its head's prefix; a shape mismatch between the heads
    names both shapes; o2o scores of another float dtype are cast to the o2m one (the kernel takes
    one dtype), and the reference checks the ground-truth values of a dual call."""
    bt = make_batch(B=2, C=6, seed=9, n_gt=(3, 8))
    s, b, anc, lab, gt, mask = bt.args()
    for mod in (ops, reference):
        with pytest.raises(ValueError, match=r"^o2m_pd_bboxes must be \(B, N, 4\)"):
            mod.dual_assign(s, b[:, :, :3], s, b, anc, lab, gt, mask)
        with pytest.raises(ValueError, match=r"^o2o_pd_bboxes must be \(B, N, 4\)"):
            mod.dual_assign(s, b, s, b[:, :, :3], anc, lab, gt, mask)
        n = s.shape[1]
        with pytest.raises(ValueError) as e:
            mod.dual_assign(s, b, s[:, :, :5], b, anc, lab, gt, mask)
        assert str(e.value) == f"o2o_scores must match o2m_scores (2, {n}, 6), got (2, {n}, 5)"
        bad = lab.clone()
        bad[0, 0] = 6
        with pytest.raises(ValueError) as e:
            mod.dual_assign(s, b, s, b, anc, bad, gt, mask)
        where = " (image 0, slot 0)" if mod is ops else ""  # the kernel checks the values itself
        assert str(e.value) == f"gt_labels must be in [0, C=6) for real ground truths, got 6{where}"
    want = ops.dual_assign(s.half(), b, s.half(), b, anc, lab, gt, mask)
    got = ops.dual_assign(s.half(), b, s, b, anc, lab, gt, mask)
    assert torch.equal(got.o2o.fg_mask, want.o2o.fg_mask) and torch.equal(got.o2o.scores, want.o2o.scores)


def test_the_ops_shorthand_defaults_and_a_stale_extension():
    """Convention.from_options() with no keyword is the default Convention (ultralytics 8.4.128 on,
    min_side 16, rule 'all', CIoU, eps 1e-9); op_settings names an extension whose settings layout
    is not this Python layer's."""
    from dualhead.conventions import op_settings
    from dualhead.settings import HeadSettings

    assert C.from_options() == C() and C.from_options().iou_type == "ciou"
    assert (C().floor_below, C().conflict, C().eps) == (16.0, "all", 1e-9)
    head = HeadSettings()
    layout = ops._settings_layout()
    assert len(op_settings([head], C(), layout)) == len(layout)
    with pytest.raises(RuntimeError) as e:
        op_settings([head], C(), layout[:-1])
    names = sorted(set(layout))
    assert str(e.value) == (
        f"the compiled extension's assign settings {layout[:-1]} differ from this Python layer's {names}: "
        "the extension is stale, rebuild it (pip install -e . / make install)"
    )


@pytest.mark.parametrize("eps", [1e-7, 0.5])
@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
def test_iou_aligned_is_ultralytics_bbox_iou_bit_for_bit(kind, eps):
    """dualhead.iou.iou_aligned against ultralytics 8.4.190's bbox_iou(xywh=False), at its eps and
    at a large one (where every place eps enters shows), on boxes that overlap, nest, touch and
    miss; the default kind is CIoU."""
    metrics = pytest.importorskip("ultralytics.utils.metrics")
    from dualhead.iou import iou_aligned

    g = torch.Generator().manual_seed(12)
    xy = torch.rand(64, 2, generator=g) * 40
    b1 = torch.cat((xy, xy + 1 + torch.rand(64, 2, generator=g) * 30), 1)
    b2 = torch.cat((b1[:16] + 3.0, b1[16:32] * 0.5 + 10, b1[32:48].flip(0), b1[48:]), 0)
    flags = dict(GIoU=kind == "giou", DIoU=kind == "diou", CIoU=kind == "ciou")
    want = metrics.bbox_iou(b1, b2, xywh=False, eps=eps, **flags).squeeze(-1)
    assert torch.equal(iou_aligned(b1, b2, kind, eps=eps), want)
    if kind == "ciou" and eps == 1e-7:
        assert torch.equal(iou_aligned(b1, b2), want)


def test_assignment_needs_its_fields():
    """Assignment refuses to be built without scores, or without labels / bboxes and the ground
    truths to gather them from."""
    fg = torch.ones(1, 2, dtype=torch.bool)
    gi = torch.zeros(1, 2, dtype=torch.long)
    lab, box, sc = torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, 4), torch.zeros(1, 2)
    msg = "Assignment needs scores, and labels/bboxes or the gt_labels/gt_bboxes to gather them from"
    for kw in (dict(labels=lab, bboxes=box), dict(bboxes=box, scores=sc), dict(labels=lab, scores=sc)):
        with pytest.raises(ValueError) as e:
            dualhead.Assignment(fg, gi, **kw)
        assert str(e.value) == msg, kw
    a = dualhead.Assignment(fg, gi, scores=sc, gt_labels=torch.tensor([[3]]), gt_bboxes=torch.ones(1, 1, 4))
    assert a.labels.tolist() == [[3, 3]] and a.bboxes.shape == (1, 2, 4)


def test_convention_messages():
    with pytest.raises(ValueError) as e:
        C(round_trip=1)
    assert str(e.value) == "round_trip must be a bool, got 1"
    for kw in (dict(floor_below=8.0, floor_to=0.0), dict(floor_below=0.0, floor_to=8.0)):
        with pytest.raises(ValueError, match=r"^a small-box floor \(floor_below, floor_to\) needs round_trip=True"):
            C(round_trip=False, **kw)
    with pytest.raises(ValueError) as e:
        C(order="topk_first", conflict="all")
    assert str(e.value) == (
        "conflict='all' counts the overlaps of candidate pairs, which order='topk_first' does not enumerate: "
        "use conflict='claimants' (TOOD) or 'all_pairs'"
    )


@pytest.mark.parametrize("bad", [True, 2.5, "3", None])
def test_topk_must_be_an_int_not_a_bool_or_a_float(bad):
    from dualhead.settings import HeadSettings

    with pytest.raises(ValueError, match=rf"^topk must be an int >= 1, got {bad!r}$".replace("(", r"\(")):
        HeadSettings(topk=bad)
    assert HeadSettings(topk=3).topk == 3


def test_convention_and_shorthand_keywords_are_not_both_given():
    bt = make_batch(B=1, C=3, seed=2, n_gt=(1, 3))
    with pytest.raises(ValueError) as e:
        ops.assign(*bt.args(), convention="yolov9")
    assert str(e.value) == "convention must be a dualhead.Convention, got str"
    with pytest.raises(ValueError) as e:
        ops.assign(*bt.args(), convention=C.yolov9(), min_side=8.0, iou_type="giou")
    assert str(e.value) == "give either convention= or min_side, iou_type, not both"
