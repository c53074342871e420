"""Other codebases' assignment rules (dualhead.Convention): the kernel against the reference of
each convention, the CPU twins bitwise, what each rule changes on hand-made cases, the argument
checks, and the drop-in classes of dualhead.integrations (yolov9, mmyolo, mmdet) by their
interfaces. The comparison with each codebase's own code is benchmarks/compare_codebases.py
(their code is not ours to ship): benchmarks/RESULTS.md."""

import pytest
import torch
from conftest import DEVICES, fresh_seed

import dualhead
from dualhead import _ext
from dualhead.compare import assert_same_targets
from dualhead.synthetic import make_batch

pytestmark = pytest.mark.skipif(not _ext.available(), reason=f"extension not built: {_ext.load_error()!r}")

C = dualhead.Convention
CONVENTIONS = [
    C(),
    C.ultralytics("8.4.0"),
    C.ultralytics("8.1.34"),
    C.yolov10(),
    C.yolov9(),
    C.mmyolo(),
    C.mmyolo(use_ciou=True),
    C.tood(),
    C(order="topk_first", conflict="all_pairs", floor_below=0.0, floor_to=0.0, round_trip=False),
]
KINDS = [dict(n_gt=(1, 30)), dict(n_gt=(5, 40), kind="tiny"), dict(n_gt=(50, 120), kind="crowded", imgsz=320)]


def _same(ref, got, what):
    assert torch.equal(ref.fg_mask, got.fg_mask), f"{what}: positives differ"
    assert torch.equal(ref.gt_idx[ref.fg_mask], got.gt_idx[got.fg_mask]), f"{what}: objects differ"
    assert_same_targets(ref.to_dense(7), got.to_dense(7), what=what)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("conv", CONVENTIONS, ids=[c.name or f"custom{i}" for i, c in enumerate(CONVENTIONS)])
@pytest.mark.parametrize("kind", KINDS, ids=["coco", "tiny", "crowded"])
def test_kernel_matches_reference(device, conv, kind):
    seed = fresh_seed()
    bt = make_batch(B=3, C=7, seed=seed, **kind)
    for kw in (dict(topk=10), dict(topk=13, alpha=1.0), dict(topk=7, topk2=1)):
        ref = dualhead.reference.assign(*bt.args(), convention=conv, **kw)
        got = dualhead.ops.assign(*[t.to(device) for t in bt.args()], convention=conv, **kw)
        got = dualhead.Assignment(*(t.cpu() for t in (got.fg_mask, got.gt_idx, got.labels, got.bboxes, got.scores)))
        _same(ref, got, f"seed {seed} {conv} {kw}")


@pytest.mark.parametrize("conv", CONVENTIONS[1:], ids=[c.name or "custom" for c in CONVENTIONS[1:]])
def test_dual_matches_reference_with_statistics(conv):
    seed = fresh_seed()
    bt = make_batch(B=2, C=7, seed=seed, n_gt=(3, 25))
    s2, b2 = bt.second_head(seed + 1)
    args = (bt.pd_scores, bt.pd_bboxes, s2, b2, *bt.args()[2:])
    ref = dualhead.reference.dual_assign(*args, o2o_topk=7, o2o_topk2=1, convention=conv)
    got = dualhead.ops.dual_assign(*args, o2o_topk=7, o2o_topk2=1, convention=conv)
    _same(ref.o2m, got.o2m, f"seed {seed} o2m")
    _same(ref.o2o, got.o2o, f"seed {seed} o2o")
    assert torch.equal(ref.stats.pick, got.stats.pick), f"seed {seed}"
    assert torch.equal(ref.stats.rank, got.stats.rank), f"seed {seed}"


@pytest.mark.parametrize("env", ["DUALHEAD_CPU_TILES", "DUALHEAD_CPU_SCRAMBLE"])
@pytest.mark.parametrize("conv", [C.yolov9(), C.tood()], ids=["all_pairs", "topk_first"])
def test_cpu_twins_bitwise(monkeypatch, env, conv):
    """CUDA's warp tiles (every top-k-first row a 16-warp big row) and any-order resolve phases,
    run on CPU, equal the sequential pass bit for bit."""
    seed = fresh_seed()
    bt = make_batch(B=2, C=7, seed=seed, n_gt=(5, 30), kind="tiny", imgsz=320)
    s2, b2 = bt.second_head(seed + 1)
    args = (bt.pd_scores, bt.pd_bboxes, s2, b2, *bt.args()[2:])
    base = dualhead.ops.dual_assign(*args, o2o_topk=7, o2o_topk2=1, convention=conv)
    monkeypatch.setenv(env, "1")
    twin = dualhead.ops.dual_assign(*args, o2o_topk=7, o2o_topk2=1, convention=conv)
    for x, y in ((base.o2m, twin.o2m), (base.o2o, twin.o2o)):
        assert torch.equal(x.fg_mask, y.fg_mask) and torch.equal(x.gt_idx, y.gt_idx), f"seed {seed}"
        assert torch.equal(x.scores, y.scores), f"seed {seed}"
    assert torch.equal(base.stats.rank, twin.stats.rank) and torch.equal(base.stats.gap, twin.stats.gap)


def _scene(gts, preds, anc, scores=None, labels=None):
    """One image: ground truths (M, 4), predicted boxes (N, 4), anchors (N, 2), class 0."""
    gt = torch.tensor(gts, dtype=torch.float32)[None]
    pb = torch.tensor(preds, dtype=torch.float32)[None]
    N, M = pb.shape[1], gt.shape[1]
    s = torch.full((1, N, 1), 0.5) if scores is None else torch.tensor(scores, dtype=torch.float32).view(1, N, 1)
    lab = torch.zeros(1, M, 1) if labels is None else torch.tensor(labels, dtype=torch.float32).view(1, M, 1)
    return s, pb, torch.tensor(anc, dtype=torch.float32), lab, gt, torch.ones(1, M, 1)


def test_all_pairs_lets_an_object_that_does_not_hold_the_anchor_win_it():
    """Anchors 0 and 1 lie in both A and B and are claimed by both; object C holds neither but
    overlaps anchor 0's prediction most: 'all_pairs' gives anchor 0 to C (YOLOv9, mmyolo),
    'all' (ultralytics) and 'claimants' to the better claimant."""
    gts = [[0, 0, 20, 20], [0, 0, 30, 30], [12, 0, 40, 10]]
    preds = [[12, 0, 40, 10], [0, 0, 20, 20], [0, 0, 30, 30]]
    anc = [[5, 15], [6, 16], [25, 25]]
    args = _scene(gts, preds, anc)
    for fn in (dualhead.ops.assign, dualhead.reference.assign):
        every = fn(*args, topk=3, convention=C.yolov9())
        cand = fn(*args, topk=3, convention=C.ultralytics("8.3.0"))
        assert every.fg_mask[0, 0] and int(every.gt_idx[0, 0]) == 2
        assert cand.fg_mask[0, 0] and int(cand.gt_idx[0, 0]) in (0, 1)
        assert float(every.scores[0, 0]) > 0  # the winner's metric counts, in its box or not


def test_topk_first_takes_the_best_over_all_anchors_then_the_box():
    """TOOD: the top-2 of all anchors by metric are anchor 2 (outside the box, best prediction)
    and anchor 0; only anchor 0 is inside: one positive. Ultralytics' order takes the top-2 of
    the anchors inside: anchors 0 and 1."""
    gts = [[0, 0, 20, 20]]
    preds = [[1, 1, 19, 19], [5, 5, 15, 15], [0, 0, 20, 20]]
    anc = [[5, 5], [15, 15], [30, 30]]
    args = _scene(gts, preds, anc)
    for fn in (dualhead.ops.assign, dualhead.reference.assign):
        tood = fn(*args, topk=2, alpha=1, beta=6, convention=C.tood())
        ul = fn(*args, topk=2, alpha=1, beta=6, convention=C.ultralytics("8.3.0"))
        assert tood.fg_mask[0].tolist() == [True, False, False]
        assert ul.fg_mask[0].tolist() == [True, True, False]


def test_topk_first_takes_no_zero_metric_anchor():
    """TOOD: anchors 1 and 2 lie in the box but predict boxes far from it (metric 0); with top-3
    over all anchors they fill the top-k behind anchor 0, yet only a positive metric is a positive."""
    args = _scene(
        [[0, 0, 20, 20]], [[1, 1, 19, 19], [100, 100, 110, 110], [120, 120, 130, 130]], [[5, 5], [10, 10], [15, 15]]
    )
    for fn in (dualhead.ops.assign, dualhead.reference.assign):
        assert fn(*args, topk=3, convention=C.tood()).fg_mask[0].tolist() == [True, False, False]


def test_all_pairs_without_any_overlap_takes_the_first_object():
    """Anchors 1 and 2 lie in both boxes (claimed by both) but predict boxes that meet neither:
    'all_pairs' gives them to object 0 (the first of all-zero overlaps, as YOLOv9's argmax), with
    a zero target."""
    gts = [[0, 0, 20, 20], [0, 0, 30, 30]]
    preds = [[2, 2, 18, 18], [100, 100, 110, 110], [120, 120, 130, 130]]
    args = _scene(gts, preds, [[5, 5], [10, 10], [15, 15]])
    for fn in (dualhead.ops.assign, dualhead.reference.assign):
        r = fn(*args, topk=3, convention=C.yolov9())
        assert r.fg_mask[0].tolist() == [True, True, True] and r.gt_idx[0].tolist() == [0, 0, 0]
        assert r.scores[0, 1:].tolist() == [0.0, 0.0]


def test_all_without_any_overlap_gives_slot_0():
    """Rule 'all' (ultralytics): anchors 1 and 2 lie in objects 1 and 2 (claimed by both) but
    predict boxes that meet no object: the argmax over all-zero overlaps is slot 0, an object far
    away that never claimed them; they are positives of object 0 with a zero target, exactly as
    ultralytics 8.4.190 gives them (its fg_mask and target_gt_idx, not only its scores; top-k of
    all four anchors, so that no tie order among zero metrics enters)."""
    gts = [[200, 200, 240, 240], [0, 0, 20, 20], [0, 0, 30, 30]]
    preds = [[2, 2, 18, 18], [100, 100, 110, 110], [120, 120, 130, 130], [200, 200, 240, 240]]
    args = _scene(gts, preds, [[5, 5], [10, 10], [15, 15], [220, 220]])
    for fn in (dualhead.ops.assign, dualhead.reference.assign):
        r = fn(*args, topk=4)
        assert r.fg_mask[0].tolist() == [True] * 4 and r.gt_idx[0].tolist() == [1, 0, 0, 0], fn
        assert r.scores[0, 1:3].tolist() == [0.0, 0.0] and r.scores[0, 3] > 0
    tal = pytest.importorskip("ultralytics.utils.tal")
    _, _, _, fg, gt = tal.TaskAlignedAssigner(topk=4, num_classes=1)(*args)
    assert fg[0].tolist() == [True] * 4 and gt[0].tolist() == [1, 0, 0, 0]


def test_topk2_keeps_the_first_zero_metric_positives():
    """topk2 < topk over positives whose metric is 0 (predictions meet no object): the ones kept
    are those of smallest anchor index, as torch.topk over a row of zeros in ultralytics' order."""
    gts = [[0, 0, 40, 40]]
    preds = [[100, 100, 110, 110]] * 4
    args = _scene(gts, preds, [[5, 20], [15, 20], [25, 20], [35, 20]])
    for fn in (dualhead.ops.assign, dualhead.reference.assign):
        r = fn(*args, topk=4, topk2=2)
        assert r.fg_mask[0].tolist() == [True, True, False, False], fn


def test_all_pairs_ignores_padding_boxes():
    """A padded slot whose (unused) box overlaps a contested anchor's prediction best changes
    nothing under 'all_pairs': padding counts 0."""
    gts = [[0, 0, 20, 20], [0, 0, 30, 30], [12, 0, 40, 10]]
    preds = [[12, 0, 40, 10], [1, 1, 21, 21], [0, 0, 30, 30]]
    anc = [[5, 15], [6, 16], [25, 25]]
    plain = _scene(gts, preds, anc)
    padded = list(_scene(gts + [[1, 1, 21, 21]], preds, anc))  # anchor 1's prediction exactly
    padded[5] = torch.tensor([[[1.0], [1.0], [1.0], [0.0]]])
    for fn in (dualhead.ops.assign, dualhead.reference.assign):
        want = fn(*plain, topk=3, convention=C.yolov9())
        got = fn(*padded, topk=3, convention=C.yolov9())
        for n in ("fg_mask", "gt_idx", "scores"):
            assert torch.equal(getattr(want, n), getattr(got, n)), (fn, n)


@pytest.mark.parametrize(
    "conv,fg",
    [(C.ultralytics("8.3.0"), [False, False]), (C.ultralytics("8.4.0"), [True, False]), (C(), [True, True])],
    ids=["no-floor", "8.4.0", "8.4.128"],
)
def test_small_box_floor_rules(conv, fg):
    """A 4 x 10 px box: no floor (8.3) holds no anchor; 8.4.0-8.4.127 widen sides < 8 to 16 (the
    width: the anchor 7 px right of the centre gets in, but not the one 7 px below, since the
    height 10 >= 8 stays); 8.4.128 widen sides < 16 to 16 (both get in)."""
    gts = [[98, 95, 102, 105]]
    preds = [[90, 90, 110, 110]] * 2
    anc = [[107, 100], [100, 107]]
    args = _scene(gts, preds, anc)
    for fn in (dualhead.ops.assign, dualhead.reference.assign):
        assert fn(*args, topk=2, convention=conv).fg_mask[0].tolist() == fg


def test_margin():
    gts = [[0, 0, 20, 20]]
    args = _scene(gts, [[0, 0, 20, 20]] * 2, [[0.005, 10], [0.5, 10]])
    for fn in (dualhead.ops.assign, dualhead.reference.assign):
        assert fn(*args, topk=2, convention=C.tood()).fg_mask[0].tolist() == [False, True]  # 0.01 px margin
        assert fn(*args, topk=2, convention=C.yolov9()).fg_mask[0].tolist() == [True, True]  # 1e-9


@pytest.mark.parametrize("conv", [C(), C.yolov9(), C.tood()], ids=["ultralytics", "yolov9", "tood"])
def test_an_anchor_exactly_margin_inside_is_out_on_every_side(conv):
    """'Strictly more than margin inside', on each of the four sides: an anchor whose distance to
    one side is exactly the margin (in fp32, as the comparison is made) is not a candidate, one
    twice as far in is. Box A has its left and top sides at 0, box B its right and bottom sides."""
    m = float(torch.tensor(conv.margin, dtype=torch.float32))
    gts = [[0, 0, 20, 20], [-20, -20, 0, 0]]
    anc = [[m, 10], [10, m], [-m, -10], [-10, -m], [2 * m, 10], [10, 2 * m], [-2 * m, -10], [-10, -2 * m]]
    preds = [[0, 0, 20, 20]] * 2 + [[-20, -20, 0, 0]] * 2 + [[0, 0, 20, 20]] * 2 + [[-20, -20, 0, 0]] * 2
    args = _scene(gts, preds, anc)
    for fn in (dualhead.ops.assign, dualhead.reference.assign):
        assert fn(*args, topk=8, convention=conv).fg_mask[0].tolist() == [False] * 4 + [True] * 4, fn


def test_a_side_equal_to_the_floor_threshold_is_not_widened():
    """ultralytics 8.4.0-8.4.127 widen sides < 8 (stride[0]) to 16: a side of exactly 8 stays 8
    (the anchor 5 px right of the centre is out), one of 7.5 becomes 16 (it is in)."""
    for width, fg in ((8.0, False), (7.5, True)):
        args = _scene([[100 - width / 2, 80, 100 + width / 2, 120]], [[90, 80, 110, 120]], [[105, 100]])
        for fn in (dualhead.ops.assign, dualhead.reference.assign):
            assert fn(*args, topk=1, convention=C.ultralytics("8.4.60")).fg_mask[0].tolist() == [fg], (fn, width)


@pytest.mark.parametrize(
    "kw,msg",
    [
        (dict(order="first"), "order must be one of"),
        (dict(conflict="nearest"), "conflict must be one of"),
        (dict(order="topk_first", conflict="all"), "conflict='all' counts the overlaps of candidate pairs"),
        (dict(floor_below=-1.0), "floor_below must be a finite number >= 0"),
        (dict(round_trip=False), "needs round_trip=True"),
        (dict(margin=float("nan")), "margin must be"),
        (dict(eps=1.0), r"eps must be a number in \[0, 1\)"),
        (dict(iou_type="siou"), "iou_type must be one of"),
    ],
)
def test_convention_checks(kw, msg):
    with pytest.raises(ValueError, match=msg):
        C(**kw)


def test_convention_or_shorthand_not_both():
    bt = make_batch(B=1, C=3, seed=0)
    with pytest.raises(ValueError, match="either convention= or min_side"):
        dualhead.ops.assign(*bt.args(), min_side=8.0, convention=C.yolov9())
    with pytest.raises(ValueError, match="convention must be a dualhead.Convention"):
        dualhead.ops.assign(*bt.args(), convention="yolov9")


def test_ultralytics_release_rules():
    assert C.ultralytics("8.0.100") == C.ultralytics("8.3.253") == C.yolov10() != C()
    assert C.ultralytics("8.4.0", stride=(8, 16, 32)).floor_below == 8.0
    assert C.ultralytics("8.4.127", stride=(4, 8)).floor_to == 8.0
    assert C.ultralytics("8.4.128", stride=(8, 16, 32)) == C()
    assert C.ultralytics("8.4.190", stride=(32,)).floor_below == 32.0  # one level: stride[0]


def test_yolov9_drop_in():
    from dualhead.integrations.yolov9 import TaskAlignedAssigner

    bt = make_batch(B=2, C=5, seed=fresh_seed(), n_gt=(1, 9))
    out = TaskAlignedAssigner(topk=10, num_classes=5, alpha=0.5, beta=6.0)(*bt.args())
    assert len(out) == 4 and out[2].shape == (2, 8400, 5) and out[3].dtype == torch.bool
    ref = dualhead.reference.assign(*bt.args(), topk=10, convention=C.yolov9()).to_dense(5)
    assert torch.equal(out[3], ref[3]) and torch.allclose(out[2], ref[2], atol=1e-5)


def test_mmyolo_drop_in_takes_its_argument_order():
    from dualhead.integrations.mmyolo import BatchTaskAlignedAssigner

    bt = make_batch(B=2, C=5, seed=fresh_seed(), n_gt=(1, 9))
    s, b, anc, lab, gt, mask = bt.args()
    priors = torch.cat((anc, torch.full_like(anc, 8.0)), 1)
    a = BatchTaskAlignedAssigner(num_classes=5, topk=10, alpha=0.5, beta=6.0, use_ciou=True)
    r = a(b, s, priors, lab, gt, mask)
    assert set(r) == {"assigned_labels", "assigned_bboxes", "assigned_scores", "fg_mask_pre_prior"}
    ref = dualhead.reference.assign(*bt.args(), topk=10, convention=C.mmyolo(use_ciou=True)).to_dense(5)
    assert torch.equal(r["fg_mask_pre_prior"], ref[3]) and torch.allclose(r["assigned_scores"], ref[2], atol=1e-5)
    with pytest.raises(ValueError, match="priors must be"):
        a(b, s, anc[:, 0], lab, gt, mask)


def test_mmdet_drop_in_per_image_equals_batched():
    from types import SimpleNamespace

    from dualhead.integrations.mmdet import TaskAlignedAssigner

    bt = make_batch(B=3, C=5, seed=fresh_seed(), n_gt=(1, 9))
    s, b, anc, lab, gt, mask = bt.args()
    priors = torch.cat((anc - 16, anc + 16), 1)
    a = TaskAlignedAssigner(topk=13)
    gi, mo, labels, met = a.assign_batch(priors, b, s, gt, lab[..., 0], mask[..., 0])
    for i in range(3):
        m = mask[i, :, 0].bool()
        r = a.assign(
            SimpleNamespace(priors=priors, bboxes=b[i], scores=s[i]),
            SimpleNamespace(bboxes=gt[i][m], labels=lab[i, :, 0][m].long()),
        )
        assert torch.equal(r.gt_inds, gi[i]) and torch.equal(r.labels, labels[i])
        # the returned overlaps and metrics are torch arithmetic on (1, N) vs (B, N) tensors: an
        # element may fall in a vectorised loop's scalar tail in one and not the other (1 ulp of
        # p**alpha, seen at anchor 8397 of 8400); the assignment itself is exact
        torch.testing.assert_close(r.max_overlaps, mo[i], rtol=1e-6, atol=0)
        torch.testing.assert_close(r.assign_metrics, met[i], rtol=1e-6, atol=0)
        pos = r.gt_inds > 0
        assert bool((r.max_overlaps[~pos] == -1e8).all()) and bool((r.labels[~pos] == -1).all())
    # an image may have none (a small box holding no prior centre 0.01 px inside): the batch has
    assert (gi > 0).any()
    empty = a.assign(
        SimpleNamespace(priors=priors, bboxes=b[0], scores=s[0]),
        SimpleNamespace(bboxes=gt[0][:0], labels=lab[0, :0, 0].long()),
    )
    assert not empty.gt_inds.any()
    # a batch without ground-truth slots: every prior background, as the per-image call says
    gi0, mo0, lab0, met0 = a.assign_batch(priors, b, s, gt[:, :0], lab[:, :0, 0], mask[:, :0, 0])
    assert not gi0.any() and bool((mo0 == -1e8).all()) and bool((lab0 == -1).all()) and not met0.any()
    assert gi0.shape == mo0.shape == lab0.shape == met0.shape == b.shape[:2]
    with pytest.raises(ValueError, match="iou_calculator must be BboxOverlaps2D"):
        TaskAlignedAssigner(13, iou_calculator=dict(type="BboxOverlaps3D"))


def _fields(c):
    return (c.order, c.conflict, c.floor_below, c.floor_to, c.round_trip, c.margin, c.iou_type, c.eps, c.name)


@pytest.mark.parametrize(
    "conv,want",
    [
        (lambda: C(), ("in_box_first", "all", 16.0, 16.0, True, 1e-9, "ciou", 1e-9, "")),
        (
            lambda: C.ultralytics("8.4.190"),
            ("in_box_first", "all", 16.0, 16.0, True, 1e-9, "ciou", 1e-9, "ultralytics 8.4.190"),
        ),
        (
            lambda: C.ultralytics("8.4.60"),
            ("in_box_first", "all", 8.0, 16.0, True, 1e-9, "ciou", 1e-9, "ultralytics 8.4.60"),
        ),
        (
            lambda: C.ultralytics("8.3.0"),
            ("in_box_first", "all", 0.0, 0.0, False, 1e-9, "ciou", 1e-9, "ultralytics 8.3.0"),
        ),
        (lambda: C.yolov10(), ("in_box_first", "all", 0.0, 0.0, False, 1e-9, "ciou", 1e-9, "THU-MIG/yolov10")),
        (lambda: C.yolov9(), ("in_box_first", "all_pairs", 0.0, 0.0, False, 1e-9, "ciou", 1e-9, "yolov9")),
        (lambda: C.mmyolo(), ("in_box_first", "all_pairs", 0.0, 0.0, False, 1e-9, "iou", 1e-7, "mmyolo")),
        (
            lambda: C.mmyolo(use_ciou=True, eps=1e-6),
            ("in_box_first", "all_pairs", 0.0, 0.0, False, 1e-9, "ciou", 1e-6, "mmyolo"),
        ),
        (lambda: C.tood(), ("topk_first", "claimants", 0.0, 0.0, False, 0.01, "iou", 1e-9, "mmdetection TOOD")),
        (
            lambda: C.from_options(min_side=8, conflict="claimants", iou_type="giou", eps=1e-7),
            ("in_box_first", "claimants", 8.0, 8.0, True, 1e-9, "giou", 1e-7, ""),
        ),
    ],
    ids=lambda x: x().name or "default" if callable(x) else None,
)
def test_each_preset_states_its_codebases_rules(conv, want):
    """Each preset's rules as that codebase has them (each measured equal to the codebase's own
    assigner: benchmarks/RESULTS.md), written out here rather than derived from the presets, so a
    changed preset fails here and not only where it is compared with itself. Built inside the
    test, not at collection (where make mutation's mutants are not yet switched on)."""
    assert _fields(conv()) == want


def test_presets_take_overrides():
    """A preset's keywords set the fields it leaves at their defaults."""
    assert C.yolov9(iou_type="giou").iou_type == "giou" and C.tood(eps=1e-7).eps == 1e-7
    assert C.mmyolo(margin=0.1).margin == 0.1 and C.yolov10(iou_type="iou").iou_type == "iou"
    assert C.ultralytics("8.4.190", margin=0.2).margin == 0.2


def _tood_dense(priors, bboxes, scores, gt_bboxes, gt_labels, topk, alpha, beta):
    """mmdetection's TOOD assignment of one image written densely from its definition: the
    metric s^alpha * IoU^beta of every (anchor, object), each object's top-k anchors by metric,
    kept if the prior centre is more than 0.01 px inside the box on all four sides and the metric
    is positive; an anchor kept by several objects goes to the one of largest IoU."""
    n, m = priors.shape[0], gt_bboxes.shape[0]
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    lt = torch.max(bboxes[:, None, :2], gt_bboxes[None, :, :2])
    rb = torch.min(bboxes[:, None, 2:], gt_bboxes[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    iou = inter / (area(bboxes)[:, None] + area(gt_bboxes)[None] - inter).clamp(min=1e-6)  # (n, m)
    metric = scores[:, gt_labels] ** alpha * iou**beta
    top = torch.zeros(n, m, dtype=torch.bool)
    top[metric.topk(min(topk, n), dim=0).indices, torch.arange(m)] = True
    cx, cy = (priors[:, 0] + priors[:, 2]) / 2, (priors[:, 1] + priors[:, 3]) / 2
    inside = (
        torch.stack(
            (
                cx[:, None] - gt_bboxes[:, 0],
                cy[:, None] - gt_bboxes[:, 1],
                gt_bboxes[:, 2] - cx[:, None],
                gt_bboxes[:, 3] - cy[:, None],
            ),
            -1,
        ).amin(-1)
        > 0.01
    )
    pos = top & inside & (metric > 0)
    best = torch.where(pos, iou, torch.full_like(iou, -1.0)).argmax(1)
    fg = pos.any(1)
    gt_inds = torch.where(fg, best + 1, torch.zeros_like(best))
    idx = torch.arange(n)
    return (
        gt_inds,
        torch.where(fg, iou[idx, best], torch.full((n,), -1e8)),
        torch.where(fg, gt_labels[best], -1),
        torch.where(fg, metric[idx, best], 0.0),
    )


@pytest.mark.parametrize("alpha,beta", [(1, 6), (0.5, 2.0)])
def test_mmdet_drop_in_equals_tood_written_densely(alpha, beta):
    """The drop-in's AssignResult fields against TOOD's assignment written densely from its
    definition (an oracle independent of dualhead's reference and conventions)."""
    from types import SimpleNamespace

    from dualhead.integrations.mmdet import TaskAlignedAssigner

    seed = fresh_seed()
    bt = make_batch(B=2, C=5, seed=seed, n_gt=(2, 12), imgsz=320)
    s, b, anc, lab, gt, mask = bt.args()
    priors = torch.cat((anc - 4, anc + 4), 1)
    positives = 0
    for i in range(2):
        m = mask[i, :, 0].bool()
        g, lb = gt[i][m], lab[i, :, 0][m].long()
        r = TaskAlignedAssigner(topk=9).assign(
            SimpleNamespace(priors=priors, bboxes=b[i], scores=s[i]),
            SimpleNamespace(bboxes=g, labels=lb),
            None,
            alpha,
            beta,
        )
        want = _tood_dense(priors, b[i], s[i], g, lb, 9, alpha, beta)
        assert r.num_gts == int(m.sum()), f"seed {seed}"
        positives += int((r.gt_inds > 0).sum())
        assert torch.equal(r.gt_inds, want[0]) and torch.equal(r.labels, want[2]), f"seed {seed}"
        torch.testing.assert_close(r.max_overlaps, want[1], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(r.assign_metrics, want[3], rtol=1e-5, atol=1e-6)
    assert positives > 0, f"seed {seed}"
    empty = TaskAlignedAssigner(topk=9).assign(
        SimpleNamespace(priors=priors[:0], bboxes=b[0][:0], scores=s[0][:0]),
        SimpleNamespace(bboxes=gt[0], labels=lab[0, :, 0].long()),
    )
    assert empty.num_gts == gt.shape[1] and empty.gt_inds.shape == (0,) and empty.labels.shape == (0,)
    assert empty.max_overlaps.shape == empty.assign_metrics.shape == (0,)
    no_gt = TaskAlignedAssigner(topk=9).assign(
        SimpleNamespace(priors=priors, bboxes=b[0], scores=s[0]),
        SimpleNamespace(bboxes=gt[0][:0], labels=lab[0, :0, 0].long()),
    )
    n = priors.shape[0]
    assert no_gt.num_gts == 0 and torch.equal(no_gt.gt_inds, torch.zeros(n, dtype=torch.long))
    assert torch.equal(no_gt.labels, torch.full((n,), -1)) and not no_gt.max_overlaps.any()
    assert no_gt.assign_metrics.shape == (n,) and not no_gt.assign_metrics.any()
    with pytest.raises(ValueError, match=r"topk must be an int >= 1, got 0"):
        TaskAlignedAssigner(0)
    assert TaskAlignedAssigner(1).topk == 1
    assert no_gt.gt_inds.dtype == no_gt.labels.dtype == torch.int64
    a = TaskAlignedAssigner(topk=9)
    with pytest.raises(ValueError, match=r"^priors must be \(num_priors, 4\), got \(2100, 3\)$"):
        a.assign_batch(priors[:, :3], b, s, gt, lab[..., 0], mask[..., 0])
    with pytest.raises(ValueError, match=r"^priors must be \(num_priors, 4\), got \(4,\)$"):
        a.assign_batch(priors[0], b, s, gt, lab[..., 0], mask[..., 0])
    with pytest.raises(ValueError, match=r"^priors must be \(num_priors, 4\), got list$"):
        a.assign_batch(priors.tolist(), b, s, gt, lab[..., 0], mask[..., 0])
    assert TaskAlignedAssigner(5, iou_calculator=dict(type="mmdet.BboxOverlaps2D")).topk == 5


@pytest.mark.parametrize(
    "module,registry,name",
    [
        ("dualhead.integrations.mmdet", "mmdet.registry", "DualheadTaskAlignedAssigner"),
        ("dualhead.integrations.mmyolo", "mmyolo.registry", "DualheadBatchTaskAlignedAssigner"),
    ],
)
def test_drop_ins_register_in_the_task_utils_registry(monkeypatch, module, registry, name):
    """With the OpenMMLab library importable (a stand-in registry here), register() adds the class
    under its name once; without it, it says it did not."""
    import importlib
    import sys
    import types

    mod = importlib.import_module(module)
    monkeypatch.setitem(sys.modules, registry, None)  # not importable
    assert mod.register() is False

    class Registry:
        def __init__(self):
            self.module_dict = {}

        def register_module(self, name, module):
            assert name not in self.module_dict
            self.module_dict[name] = module

    fake = types.ModuleType(registry)
    fake.TASK_UTILS = Registry()
    monkeypatch.setitem(sys.modules, registry, fake)
    assert mod.register() is True and mod.register() is True  # twice: registered once
    cls = mod.TaskAlignedAssigner if module.endswith("mmdet") else mod.BatchTaskAlignedAssigner
    assert fake.TASK_UTILS.module_dict == {name: cls}


def test_mmdet_drop_in_returns_mmdets_assign_result_when_mmdet_imports(monkeypatch):
    """With mmdet importable (a stand-in module here) the result is mmdet's own AssignResult,
    built with (num_gts, gt_inds, max_overlaps, labels=labels), plus assign_metrics."""
    import sys
    import types
    from types import SimpleNamespace

    from dualhead.integrations.mmdet import TaskAlignedAssigner

    class AssignResult:
        def __init__(self, num_gts, gt_inds, max_overlaps, labels=None):
            self.num_gts, self.gt_inds, self.max_overlaps, self.labels = num_gts, gt_inds, max_overlaps, labels

    fake = types.ModuleType("mmdet.models.task_modules.assigners")
    fake.AssignResult = AssignResult
    monkeypatch.setitem(sys.modules, "mmdet.models.task_modules.assigners", fake)
    bt = make_batch(B=1, C=5, seed=fresh_seed(), n_gt=(2, 6))
    s, b, anc, lab, gt, mask = bt.args()
    m = mask[0, :, 0].bool()
    pred = SimpleNamespace(priors=torch.cat((anc - 4, anc + 4), 1), bboxes=b[0], scores=s[0])
    r = TaskAlignedAssigner(topk=9).assign(pred, SimpleNamespace(bboxes=gt[0][m], labels=lab[0, :, 0][m].long()))
    monkeypatch.delitem(sys.modules, "mmdet.models.task_modules.assigners")
    plain = TaskAlignedAssigner(topk=9).assign(pred, SimpleNamespace(bboxes=gt[0][m], labels=lab[0, :, 0][m].long()))
    assert type(r) is AssignResult and r.num_gts == plain.num_gts == int(m.sum())
    for f in ("gt_inds", "max_overlaps", "labels", "assign_metrics"):
        assert torch.equal(getattr(r, f), getattr(plain, f)), f
