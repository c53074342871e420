"""The false-positive breakdown (dualhead.detector.diagnose) on hand-built cases, one per kind."""

import torch

from dualhead.detector.diagnose import KINDS, breakdown_metrics, error_counts, image_errors
from dualhead.detector.evaluate import with_nms

GT = torch.tensor([[10.0, 10, 50, 50], [100, 100, 140, 160]])
LAB = torch.tensor([0, 1])


def det(*rows):
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)


def test_each_kind():
    d = det(
        [10, 10, 50, 50, 0.9, 0],  # TP on gt 0
        [12, 11, 51, 50, 0.8, 0],  # duplicate of the first (IoU > 0.5, same class, worse score)
        [100, 100, 140, 160, 0.7, 0],  # right place, wrong class (gt 1 is class 1)
        [100, 100, 140, 125, 0.6, 1],  # gt 1's class, IoU 25/60 = 0.42: localisation
        [200, 200, 230, 230, 0.5, 1],  # nothing there: background
        [30, 30, 70, 70, 0.1, 0],
    )  # below the operating point: ignored
    c = image_errors(d, GT, LAB, conf=0.25)
    assert c == dict(det=5, tp=1, fn=1, dup=1, cls=1, loc=1, bkg=1)
    m = breakdown_metrics(c)
    assert [m[f"fp_{k}"] for k in KINDS] == [0.25] * 4
    assert m["prec"] == 0.2 and m["rec"] == 0.5


def test_duplicate_needs_a_better_scored_true_positive():
    # the worse box comes first in score: it is the TP, the better-fitting one would be a dup...
    d = det([12, 11, 51, 50, 0.9, 0], [10, 10, 50, 50, 0.8, 0])
    assert image_errors(d, GT, LAB)["dup"] == 1
    # ...and a second box on an object whose first box is a FP (wrong class) is not a duplicate
    d = det([10, 10, 50, 50, 0.9, 1], [12, 11, 51, 50, 0.8, 1])
    c = image_errors(d, GT, LAB)
    assert c["dup"] == 0 and c["cls"] == 2


def test_two_objects_side_by_side_are_two_true_positives():
    gt = torch.tensor([[0.0, 0, 20, 20], [12, 0, 32, 20]])  # IoU 8*20 / (800 - 160) = 0.25
    d = det([0, 0, 20, 20, 0.9, 0], [12, 0, 32, 20, 0.8, 0])
    assert image_errors(d, gt, torch.tensor([0, 0])) == dict(det=2, tp=2, fn=0, dup=0, cls=0, loc=0, bkg=0)


def test_empty_image_and_no_detections():
    assert image_errors(det(), GT, LAB) == dict(det=0, tp=0, fn=2, dup=0, cls=0, loc=0, bkg=0)
    c = image_errors(det([0, 0, 5, 5, 0.9, 0]), torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert c["bkg"] == 1 and c["fn"] == 0
    m = breakdown_metrics(dict(det=0, tp=0, fn=0, dup=0, cls=0, loc=0, bkg=0))
    assert all(v == 0.0 for v in m.values())


def test_error_counts_reads_coco_ground_truth():
    gt = {
        "images": [{"id": 0}, {"id": 1}],
        "annotations": [
            {"image_id": 0, "category_id": 1, "bbox": [10, 10, 40, 40]},
            {"image_id": 1, "category_id": 2, "bbox": [100, 100, 40, 60]},
            {"image_id": 1, "category_id": 2, "bbox": [0, 0, 90, 90], "iscrowd": 1},  # no object to find
        ],
        "categories": [{"id": 1}, {"id": 2}],
    }
    dets = {0: det([10, 10, 50, 50, 0.9, 0], [11, 10, 50, 51, 0.8, 0])}  # image 1: no detections
    assert error_counts(gt, dets) == dict(det=2, tp=1, fn=1, dup=1, cls=0, loc=0, bkg=0)
    gt["categories"] = [{"id": 9}, {"id": 3}]  # class k: the k-th id in order (3, 9): class 0 is id 3
    for a, c in zip(gt["annotations"], (3, 9, 9)):
        a["category_id"] = c
    assert error_counts(gt, dets) == dict(det=2, tp=1, fn=1, dup=1, cls=0, loc=0, bkg=0)


def test_nms_removes_the_duplicate_only():
    d = det([10, 10, 50, 50, 0.9, 0], [12, 11, 51, 50, 0.8, 0], [12, 11, 51, 50, 0.7, 1])
    kept = with_nms({0: d})[0]
    assert kept[:, 4].tolist() == [0.8999999761581421, 0.699999988079071]
