"""dualhead.compare.assert_same_targets: the equality every kernel test and the benchmark's
baseline check rest on, so it is tested on unequal inputs here (everywhere else it only ever
sees equal ones). Contract §3: exact on every anchor scored on either side, scores within atol
everywhere, free on anchors unscored on both sides (loss-neutral zero-metric positives)."""

import pytest
import torch

from dualhead.compare import assert_same_targets

C = 3


def _targets():
    """One image, 4 anchors: 0 and 2 scored, 1 and 3 not. (labels, bboxes, scores, fg, gt_idx)."""
    labels = torch.tensor([[1, 0, 2, 0]])
    bboxes = torch.arange(16, dtype=torch.float32).view(1, 4, 4)
    scores = torch.zeros(1, 4, C)
    scores[0, 0, 1], scores[0, 2, 2] = 0.5, 0.75
    fg = torch.tensor([[True, False, True, False]])
    gt_idx = torch.tensor([[2, 0, 1, 0]])
    return [labels, bboxes, scores, fg, gt_idx]


def _changed(i, anchor, value):
    t = _targets()
    t[i] = t[i].clone()
    t[i][0, anchor] = value
    return tuple(t)


def test_equal_targets_pass():
    assert_same_targets(tuple(_targets()), tuple(_targets()))


@pytest.mark.parametrize(
    "field,value,message",
    [
        (3, False, "fg_mask differs on 1 scored anchors"),
        (4, 0, "target_gt_idx differs"),
        (0, 2, "labels differ"),
        (1, -1.0, "boxes differ"),
    ],
    ids=["fg", "gt_idx", "labels", "boxes"],
)
def test_a_difference_on_a_scored_anchor_fails(field, value, message):
    with pytest.raises(AssertionError, match=message):
        assert_same_targets(tuple(_targets()), _changed(field, 0, value), what="x")


@pytest.mark.parametrize("field,value", [(3, True), (4, 5), (0, 2), (1, -1.0)], ids=["fg", "gt_idx", "labels", "boxes"])
def test_a_difference_on_an_anchor_unscored_on_both_sides_passes(field, value):
    """Anchor 1 has no target score on either side: its fields may resolve differently."""
    assert_same_targets(tuple(_targets()), _changed(field, 1, value))
    assert_same_targets(_changed(field, 1, value), tuple(_targets()))


@pytest.mark.parametrize("side", ["ref", "got"])
def test_an_anchor_scored_on_one_side_only_is_compared(side):
    """Anchor 3 scored (0.5) on one side only, its fg differing: the fg check must see it even
    when the scores are let through (atol=1)."""
    scored = list(_targets())
    scored[2] = scored[2].clone()
    scored[2][0, 3, 0] = 0.5
    scored[3] = scored[3].clone()
    scored[3][0, 3] = True
    pair = (tuple(scored), tuple(_targets())) if side == "ref" else (tuple(_targets()), tuple(scored))
    with pytest.raises(AssertionError, match="fg_mask differs on 1 scored anchors"):
        assert_same_targets(*pair, atol=1.0)


def test_scores_are_compared_within_atol_inclusive():
    other = list(_targets())
    other[2] = other[2].clone()
    other[2][0, 0, 1] = 0.25  # differs by exactly 0.25 (exact in fp32)
    assert_same_targets(tuple(_targets()), tuple(other), atol=0.25)
    with pytest.raises(AssertionError, match=r"^: target scores differ by 0\.25$"):  # no `what`: nothing before
        assert_same_targets(tuple(_targets()), tuple(other), atol=0.125)
    # a score on an unscored class of a scored anchor counts too
    other[2][0, 0, 1], other[2][0, 0, 0] = 0.5, 1e-3
    with pytest.raises(AssertionError, match="target scores differ"):
        assert_same_targets(tuple(_targets()), tuple(other))


def test_shapes_must_match_and_empty_targets_pass():
    t = _targets()
    short = [x[:, :3] for x in t]
    with pytest.raises(AssertionError):
        assert_same_targets(tuple(t), tuple(short))
    empty = [x[:, :0] for x in t]
    assert_same_targets(tuple(empty), tuple(empty), atol=0.0)
