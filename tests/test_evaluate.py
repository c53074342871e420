"""COCO mAP: the fast COCOeval engine the trainer uses gives pycocotools' statistics (to the last
bits of a mean: the two sum the precisions in another order)."""

import numpy as np
import pytest
import torch

from dualhead.detector.data import ShapesDataset
from dualhead.detector.evaluate import coco_eval, coco_ground_truth, coco_map


def _detections(ds, seed):
    """Detections of varied quality: jittered ground truths (some with the wrong class, some
    duplicated), boxes on background, many low scores: every branch of COCOeval's matching."""
    g = torch.Generator().manual_seed(seed)
    dets = {}
    for i in range(len(ds)):
        _, boxes, labels = ds[i]
        b = torch.tensor(boxes).repeat(2, 1)
        lab = torch.tensor(labels).repeat(2).float()
        b = b + torch.randn(b.shape, generator=g) * 4
        lab = torch.where(torch.rand(lab.shape, generator=g) < 0.15, (lab + 1) % ds.nc, lab)
        bg = torch.rand(5, 2, generator=g) * 200
        b = torch.cat((b, torch.cat((bg, bg + 10 + torch.rand(5, 2, generator=g) * 40), 1)))
        lab = torch.cat((lab, torch.randint(0, ds.nc, (5,), generator=g).float()))
        s = torch.rand(len(b), generator=g)
        dets[i] = torch.cat((b, s[:, None], lab[:, None]), 1)
    return dets


@pytest.mark.parametrize("seed", [0, 1])
def test_faster_engine_equals_pycocotools(seed):
    pytest.importorskip("faster_coco_eval")
    ds = ShapesDataset("val", 24, 256)
    gt, dets = coco_ground_truth(ds), _detections(ds, seed)
    ref, fast = coco_eval(gt, dets, "pycocotools"), coco_eval(gt, dets, "faster")
    assert 0.05 < ref.stats[0] < 0.95  # a score with something to get wrong
    np.testing.assert_allclose(np.asarray(fast.stats), np.asarray(ref.stats), rtol=0, atol=1e-12)
    got, want = coco_map(gt, dets), coco_map(gt, dets, "pycocotools")
    assert got == pytest.approx(want, rel=0, abs=1e-12)


def test_no_detections_score_zero():
    ds = ShapesDataset("val", 2, 64)
    assert coco_map(coco_ground_truth(ds), {}) == {"map": 0.0, "map50": 0.0}
    with pytest.raises(ValueError, match="engine"):
        coco_eval(coco_ground_truth(ds), _detections(ds, 0), "cocoapi")


def test_result_annotations_equal_the_per_row_form():
    """The column-wise COCO result dicts are the per-detection ones exactly (same doubles, ints,
    order), empty images skipped."""
    from dualhead.detector.evaluate import _result_annotations

    ds = ShapesDataset("val", 12, 256)
    dets = _detections(ds, 3)
    dets[4] = torch.zeros(0, 6)
    want = [
        {"image_id": int(i), "category_id": int(c) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s}
        for i, d in dets.items()
        for x1, y1, x2, y2, s, c in d.tolist()
    ]
    got = _result_annotations(dets, list(range(1, ds.nc + 1)))
    assert got == want and len(got) > 100
    assert all(type(a["image_id"]) is int and type(a["category_id"]) is int for a in got)
    assert _result_annotations({0: torch.zeros(0, 6)}, [1]) == []
    gaps = [3, 7, 8, 20, 90][: ds.nc]  # a category id set with gaps: class k is the k-th id
    assert [a["category_id"] for a in _result_annotations(dets, gaps)] == [gaps[a["category_id"] - 1] for a in want]
