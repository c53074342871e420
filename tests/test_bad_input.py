"""contract §4: every bad input is a clear error naming the argument; diverging predictions never
produce non-finite targets."""

import pytest
import torch
from conftest import DEVICES

import dualhead
from dualhead.compare import assert_same_targets
from dualhead.synthetic import make_batch

C = 6


@pytest.fixture(autouse=True)
def _sync_checks(monkeypatch):
    """CUDA checks input values on the device and reports at the next call (no sync); here every
    error must surface within the call that caused it (tests/test_cuda.py covers the deferral)."""
    monkeypatch.setenv("DUALHEAD_SYNC_CHECKS", "1")


@pytest.fixture(params=DEVICES)
def args(request):
    return list(make_batch(B=2, C=C, seed=3, n_gt=(2, 5), device=request.param).args())


def _at(t, *idx):
    """index tuple for index_put on t's device"""
    return tuple(torch.tensor([i], device=t.device) for i in idx)


ASSIGNERS = {
    "reference": lambda a, **kw: dualhead.reference.assign(*a, **kw),
    "ops": lambda a, **kw: dualhead.ops.assign(*a, **kw),
    "module": lambda a, **kw: dualhead.TaskAlignedAssigner(
        num_classes=C, **{k: v for k, v in kw.items() if k in ("topk", "topk2")}
    )(*a),
}


def bad(args, i, value):
    a = list(args)
    a[i] = value(a[i]) if callable(value) else value
    return a


# Each message matched whole: a name or a number in it can not change unnoticed. The value checks
# of the kernel path are the compiled kernel's, which names where it found the bad value (<WHERE>)
# and reads a NaN label as the int64 it becomes; the reference's are Python's.
SHAPE = r"\(B, M\) or \(B, M, 1\) = \(2, 4\)"
WHERE = "<WHERE>$"
KERNEL_SAYS = {
    "<WHERE>": r" \(image 0, slot 0\)",
    "<ANCHOR>": r", got \(nan, nan\) at index 5",
    "<NAN LABEL>": r"in \[0, C=6\) for real ground truths, got -?\d+ \(image 0, slot 0\) "
    r"\(what a NaN, infinite or huge float label becomes as int64\)",
}
REFERENCE_SAYS = {"<WHERE>": "", "<ANCHOR>": "", "<NAN LABEL>": "finite for real ground truths"}
CASES = [
    ("pd_scores rank", lambda a: bad(a, 0, lambda t: t[0]), r"^pd_scores must be \(B, N, C\), got \(8400, 6\)$"),
    (
        "pd_scores dtype",
        lambda a: bad(a, 0, lambda t: (t > 0.5).long()),
        r"^pd_scores must be a float tensor \(fp32/fp16/bf16\), got torch\.int64$",
    ),
    (
        "pd_bboxes shape",
        lambda a: bad(a, 1, lambda t: t[..., :3]),
        r"^pd_bboxes must be \(B, N, 4\) = \(2, 8400, 4\), got \(2, 8400, 3\)$",
    ),
    (
        "anc_points shape",
        lambda a: bad(a, 2, lambda t: t[:-1]),
        r"^anc_points must be \(N, 2\) = \(8400, 2\), got \(8399, 2\)$",
    ),
    ("gt_labels shape", lambda a: bad(a, 3, lambda t: t[:, :-1]), rf"^gt_labels must be {SHAPE}, got \(2, 3, 1\)$"),
    (
        "gt_bboxes shape",
        lambda a: bad(a, 4, lambda t: t[..., :2]),
        r"^gt_bboxes must be \(B, M, 4\) with B=2, got \(2, 4, 2\)$",
    ),
    (
        "gt_bboxes batch",
        lambda a: bad(a, 4, lambda t: t[:1]),
        r"^gt_bboxes must be \(B, M, 4\) with B=2, got \(1, 4, 4\)$",
    ),
    (
        "gt_bboxes dtype",
        lambda a: bad(a, 4, lambda t: t.long()),
        r"^gt_bboxes must be a float tensor \(fp32/fp16/bf16\), got torch\.int64$",
    ),
    ("mask_gt shape", lambda a: bad(a, 5, lambda t: t[:1]), rf"^mask_gt must be {SHAPE}, got \(1, 4, 1\)$"),
    (
        "gt_labels bool",
        lambda a: bad(a, 3, lambda t: t > 0),
        r"^gt_labels must be an integer or float tensor, got torch\.bool$",
    ),
    (
        "gt_labels complex",
        lambda a: bad(a, 3, lambda t: t.to(torch.complex64)),
        r"^gt_labels must be an integer or float tensor, got torch\.complex64$",
    ),
    *[
        (
            f"{n} not a tensor",
            lambda a, i=i: bad(a, i, lambda t: t.tolist()),
            rf"^{n} must be a torch\.Tensor, got list$",
        )
        for i, n in enumerate(("pd_scores", "pd_bboxes", "anc_points", "gt_labels", "gt_bboxes", "mask_gt"))
    ],
    *[
        (
            f"{n} on another device",
            lambda a, i=i: bad(a, i, lambda t: torch.empty(t.shape, dtype=t.dtype, device="meta")),
            rf"^{n} is on meta but pd_scores is on (cpu|cuda:0): all inputs must share one device$",
        )
        for i, n in enumerate(("pd_scores", "pd_bboxes", "anc_points", "gt_labels", "gt_bboxes", "mask_gt"))
        if i > 0
    ],
    (
        "label negative",
        lambda a: bad(a, 3, lambda t: torch.where(t == t[0, 0], -1.0, t)),
        rf"^gt_labels must be in \[0, C={C}\) for real ground truths, got -1{WHERE}",
    ),
    (
        "label >= C",
        lambda a: bad(a, 3, lambda t: torch.where(t == t[0, 0], float(C), t)),
        rf"^gt_labels must be in \[0, C={C}\) for real ground truths, got {C}{WHERE}",
    ),
    (
        "gt box nan",
        lambda a: bad(a, 4, lambda t: t.index_put(_at(t, 0, 0, 2), torch.tensor(float("nan"), device=t.device))),
        r"^gt_bboxes must be finite for real ground truths, got \[[^]]*nan[^]]*\]" + WHERE,
    ),
    (
        "gt box inf",
        lambda a: bad(a, 4, lambda t: t.index_put(_at(t, 0, 0, 3), torch.tensor(float("inf"), device=t.device))),
        r"^gt_bboxes must be finite for real ground truths, got \[[^]]*inf\]" + WHERE,
    ),
    (
        "anchor nan",
        lambda a: bad(a, 2, lambda t: t.index_fill(0, _at(t, 5)[0], float("nan"))),
        r"^anc_points must be finite<ANCHOR>$",
    ),
    (
        "label nan",
        lambda a: bad(a, 3, lambda t: torch.where(t == t[0, 0], float("nan"), t)),
        r"^gt_labels must be <NAN LABEL>$",
    ),
    (
        "gt box inverted",
        lambda a: bad(a, 4, lambda t: t.index_put(_at(t, 0, 0, 0), t[0, 0, 2] + 5)),
        r"^gt_bboxes must be xyxy with x2 >= x1 and y2 >= y1, got \[[^]]+\]" + WHERE,
    ),
]


@pytest.mark.parametrize("which", list(ASSIGNERS))
@pytest.mark.parametrize("name,make,match", CASES, ids=[c[0] for c in CASES])
def test_bad_tensor_raises(args, which, name, make, match):
    for token, says in (REFERENCE_SAYS if which == "reference" else KERNEL_SAYS).items():
        match = match.replace(token, says)
    with pytest.raises(ValueError, match=match):
        ASSIGNERS[which](make(args))


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(topk=0), r"topk .*got 0"),
        (dict(topk=10**7), r"topk .*got 10000000"),
        (dict(topk=10, topk2=0), r"topk2 .*got 0"),
        (dict(min_side=-1.0), r"min_side.*-1.0"),
        (dict(min_side=float("nan")), r"min_side.*nan"),
        (dict(alpha=float("inf")), r"alpha.*inf"),
        (dict(conflict="nearest"), r"conflict.*nearest"),
        (dict(iou_type="siou"), r"iou_type.*siou"),
    ],
    ids=lambda x: str(x) if isinstance(x, str) else None,
)
def test_bad_parameter_raises(args, kw, match):
    with pytest.raises(ValueError, match=match):
        dualhead.ops.assign(*args, **kw)


def test_padding_rows_are_not_checked(args):
    """Garbage in padded slots (mask 0) is ignored, as ultralytics pads with zeros."""
    a = list(args)
    a[5] = a[5].clone()
    a[5][0, 0] = 0
    a[3] = a[3].clone()
    a[3][0, 0] = -7
    a[4] = a[4].clone()
    a[4][0, 0] = torch.tensor([5.0, 5.0, 1.0, float("nan")], device=a[4].device)
    clean = list(a)
    clean[3], clean[4] = a[3].clone(), a[4].clone()
    clean[3][0, 0], clean[4][0, 0] = 0, 0
    for assign in (dualhead.ops.assign, dualhead.reference.assign):
        got, want = assign(*a), assign(*clean)
        assert want.fg_mask.any()
        for f in ("fg_mask", "gt_idx", "scores"):
            assert torch.equal(getattr(got, f), getattr(want, f)), f
        fg = want.fg_mask  # background rows carry ground truth 0's class and box, as ultralytics
        assert torch.equal(got.labels[fg], want.labels[fg]) and torch.equal(got.bboxes[fg], want.bboxes[fg])


def test_integer_labels_are_read_as_the_float_ones(args):
    """gt_labels may be int64 (as ultralytics' .long() makes them) or float: the same targets,
    and an out-of-range integer label is the same error, from the kernel and the reference."""
    a = list(args)
    ints = list(a)
    ints[3] = a[3].long()
    for assign in (dualhead.ops.assign, dualhead.reference.assign):
        want, got = assign(*a), assign(*ints)
        for f in ("fg_mask", "gt_idx", "scores", "labels"):
            assert torch.equal(getattr(got, f), getattr(want, f)), (assign, f)
        bad = list(ints)
        bad[3] = ints[3].clone()
        bad[3][0, 0] = C
        with pytest.raises(ValueError, match=rf"gt_labels must be in \[0, C={C}\) for real ground truths, got {C}"):
            assign(*bad)


@pytest.mark.parametrize("poison", [float("nan"), float("inf"), -float("inf"), 1e30])
def test_non_finite_predictions_give_finite_targets(args, poison):
    a = list(args)
    s, b = a[0].clone(), a[1].clone()
    s[:, ::3] = poison
    b[:, 1::4, 0] = poison
    b[:, 2::5, 3] = poison
    a[0], a[1] = s, b
    out = dualhead.ops.assign(*a)
    assert torch.isfinite(out.scores).all() and torch.isfinite(out.bboxes).all()
    dense = out.to_dense(C)
    assert torch.isfinite(dense[2]).all()
    dual = dualhead.ops.dual_assign(s, b, s, b, *a[2:])
    assert torch.isfinite(dual.o2o.scores).all() and torch.isfinite(dual.stats.gap[dual.stats.valid]).all()
    # the oracle reads a non-finite metric as 0 too, and agrees with the kernel on it
    want = dualhead.reference.assign(*[t.cpu() for t in a])
    assert torch.isfinite(want.scores).all()
    assert_same_targets(want.to_dense(C), tuple(t.cpu() for t in dense))


def test_box_iou_bad_shapes():
    with pytest.raises((RuntimeError, ValueError), match="boxes1"):
        dualhead.ops.box_iou(torch.zeros(3, 5), torch.zeros(2, 4))
    with pytest.raises((RuntimeError, ValueError), match="boxes2"):
        dualhead.ops.box_iou(torch.zeros(3, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="kind"):
        dualhead.ops.box_iou(torch.zeros(3, 4), torch.zeros(2, 4), kind="wiou")
    for fn in (dualhead.ops.box_iou, dualhead.reference.box_iou):
        for a, b, name in (
            ([[0, 0, 1, 1.0]], torch.zeros(2, 4), "boxes1"),
            (torch.zeros(2, 4), (0, 0, 1, 1), "boxes2"),
        ):
            with pytest.raises(ValueError) as e:
                fn(a, b)
            assert str(e.value) == f"{name} must be a torch.Tensor, got {type(a if name == 'boxes1' else b).__name__}"


def test_a_flat_box_is_valid_where_another_value_is_not(args):
    """Zero-width and zero-height ground truths are valid (x2 >= x1, y2 >= y1): with a NaN anchor
    beside them, the error names the anchor, not the boxes."""
    a = list(args)
    a[4] = a[4].clone()
    a[4][0, 0, 2] = a[4][0, 0, 0]  # zero width
    a[4][0, 1, 3] = a[4][0, 1, 1]  # zero height
    a[2] = a[2].clone()
    a[2][5] = float("nan")
    for which in ASSIGNERS:
        with pytest.raises(ValueError, match=r"^anc_points must be finite"):
            ASSIGNERS[which](a)
