"""`--data` in every form a detection user keeps a dataset: our folder layout, ultralytics' dataset
YAML (folders, .txt lists, lists, names list/dict, relative path), COCO JSON (crowd regions,
non-contiguous category ids, background images); the check's one report; the scan cache; round
trips through export-data; the mAP of a COCO dataset computed on its own file."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dualhead.detector.data import CocoDataset, ShapesDataset, YoloDataset, build_dataset
from dualhead.detector.data import yolo as yolo_mod
from dualhead.detector.data.check import DatasetError, Problems
from dualhead.detector.data.export import export
from dualhead.detector.evaluate import coco_ground_truth, coco_map, evaluate


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "dualhead.detector.cli", *args], capture_output=True, text=True, cwd=cwd
    )


def _image(path, w=64, h=48, value=90):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


def _yolo_pair(root, split, name, rows, w=64, h=48):
    """root/images/<split>/<name>.png and root/labels/<split>/<name>.txt (rows: 'c cx cy w h' lines)."""
    _image(root / "images" / split / f"{name}.png", w, h)
    lab = root / "labels" / split / f"{name}.txt"
    lab.parent.mkdir(parents=True, exist_ok=True)
    lab.write_text("".join(r + "\n" for r in rows))


def _write_yaml(path, text):
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------------------------------- YAML


def test_yaml_folders_names_list_and_dict_relative_path(tmp_path):
    root = tmp_path / "ds"
    _yolo_pair(root, "train", "a", ["0 0.5 0.5 0.25 0.5"])
    _yolo_pair(root, "train", "b", ["1 0.25 0.25 0.5 0.5", "0 0.75 0.75 0.25 0.25"])
    _yolo_pair(root, "val", "c", ["1 0.5 0.5 0.5 0.5"])
    for names in ("names: [cat, dog]", "names:\n  0: cat\n  1: dog", "names: {1: dog, 0: cat}"):
        y = _write_yaml(tmp_path / "d.yaml", f"path: ds\ntrain: images/train\nval: images/val\n{names}\n")
        ds = build_dataset(y, "train", 64)
        assert len(ds) == 2 and ds.names == ("cat", "dog")
        img, boxes, labels = ds[1]  # b: 64 x 48 letterboxed to 64 x 64 (pad 8 rows above)
        np.testing.assert_allclose(boxes, [[0, 8, 32, 32], [40, 38, 56, 50]], atol=1e-4)
        assert labels.tolist() == [1, 0]
        assert len(build_dataset(y, "val", 64)) == 1
    # a names dict whose keys are strings of ints (a YAML written from JSON)
    y = _write_yaml(root / "s.yaml", "train: images/train\nval: images/val\nnames: {'1': b, '0': a}\n")
    assert build_dataset(y, "train", 64).names == ("a", "b")
    # nc alone: generic names; path unset: the YAML's folder is the root
    y = _write_yaml(root / "d.yaml", "train: images/train\nval: images/val\nnc: 2\n")
    assert build_dataset(y, "train", 64).names == ("class0", "class1")


def test_yaml_txt_lists_lists_and_nested_images_folders(tmp_path):
    root = tmp_path / "ds"
    _yolo_pair(root, "part1", "a", ["0 0.5 0.5 0.25 0.5"])
    _yolo_pair(root, "part2", "b", ["0 0.5 0.5 0.5 0.5"])
    _yolo_pair(root, "part2/sub", "c", ["0 0.5 0.5 0.5 0.5"])  # a folder is searched recursively
    (root / "train.txt").write_text("./images/part1/a.png\n" + str(root / "images/part2/b.png") + "\n")
    y = _write_yaml(
        tmp_path / "d.yaml",
        f"path: {root}\ntrain: train.txt\nval: [images/part1, images/part2]\nnames: [x]\n",
    )
    assert [f.name for f in build_dataset(y, "train", 64).files] == ["a.png", "b.png"]
    assert sorted(f.name for f in build_dataset(y, "val", 64).files) == ["a.png", "b.png", "c.png"]
    # ultralytics' rule: the last /images/ becomes /labels/ (a parent folder called images too)
    deep = tmp_path / "images" / "proj"
    _yolo_pair(deep, "train", "d", ["0 0.5 0.5 0.5 0.5"])
    assert yolo_mod.label_path(deep / "images/train/d.png") == deep / "labels/train/d.txt"
    y2 = _write_yaml(tmp_path / "e.yaml", f"path: {deep}\ntrain: images/train\nval: images/train\nnames: [x]\n")
    assert build_dataset(y2, "train", 64).rows[0].tolist() == [[0, 0.5, 0.5, 0.5, 0.5]]


@pytest.mark.parametrize(
    "text, match",
    [
        ("train: images\nval: images\nnames: {0: a, 2: b}\n", r"keys of a names dict must be 0..1"),
        ("train: images\nval: images\nnames: [a, b]\nnc: 3\n", r"nc is 3 but names lists 2"),
        ("train: images\nnames: [a]\n", r"no 'val:' split"),
        ("train: images\nval: images\n", r"needs 'names'"),
        ("train: images\nval: nowhere\nnames: [a]\n", r"val: .*neither a folder of images nor a .txt list"),
        ("path: nowhere\ntrain: images\nval: images\nnames: [a]\n", r"path: 'nowhere' is not a folder"),
        ("train: images\n  val: [\n", r"d.yaml:\d+: not valid YAML"),
        ("- just\n- a list\n", r"a dataset YAML is a mapping"),
        ("train: images\nval: {annotations: [a.json], images: x}\nnames: [a]\n", r"a COCO split is"),
    ],
)
def test_yaml_mistakes_are_named(tmp_path, text, match):
    _yolo_pair(tmp_path, "", "a", ["0 0.5 0.5 0.5 0.5"])
    y = _write_yaml(tmp_path / "d.yaml", text)
    with pytest.raises(ValueError, match=match):
        build_dataset(y, "val", 64)


# ------------------------------------------------------------------------------- label checks


def test_every_bad_label_kind_in_one_report(tmp_path, capsys):
    root = tmp_path / "ds"
    _yolo_pair(root, "", "a", ["0 0.5 0.5 0.2", "x 0.5 0.5 0.2 0.2", "0 0.5 0.5 0.2 nan"])  # malformed x3
    _yolo_pair(root, "", "b", ["7 0.5 0.5 0.2 0.2", "-1 0.5 0.5 0.2 0.2", "0.5 0.5 0.5 0.2 0.2"])  # class x3
    _yolo_pair(root, "", "c", ["0 32 24 10 10", "0 0.5 0.5 -0.1 0.2"])  # pixels, negative
    _yolo_pair(root, "", "d", ["0 0.5 0.5 0 0.2", "0 0.5 0.5 0.2 0.2", "0 0.5 0.5 0.2 0.2"])  # zero, duplicate
    _image(root / "images" / "e.png")  # no label: background
    (root / "images" / "f.png").write_bytes(b"not an image")
    (root / "labels" / "f.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    y = _write_yaml(tmp_path / "d.yaml", f"path: {root}\ntrain: images\nval: images\nnames: [a, b]\n")
    with pytest.raises(DatasetError) as e:
        build_dataset(y, "train", 64)
    report = str(e.value)
    for where in ("a.txt:1", "a.txt:2", "a.txt:3", "b.txt:1", "b.txt:2", "b.txt:3", "c.txt:1", "c.txt:2", "f.png"):
        assert where in report, (where, report)
    assert "9 error(s)" in report  # a: 3, b: 3, c: 2, f: 1
    for kind in ("zero-size boxes", "duplicate label rows", "images without labels", "label files without an image"):
        assert kind in report
    assert "d.txt:1" in report and "d.txt:3" in report and "orphan.txt" in report
    # the same through the CLI: the whole report, no traceback, exit 2
    r = cli("train", "--data", y, "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "a.txt:2" in r.stderr and "c.txt:1" in r.stderr and "f.png" in r.stderr


def test_warnings_are_counted_and_training_data_drops_them(tmp_path, capsys):
    root = tmp_path / "ds"
    _yolo_pair(root, "", "a", ["0 0.5 0.5 0 0.2", "0 0.5 0.5 0.5 0.5", "0 0.5 0.5 0.5 0.5"])
    _image(root / "images" / "b.png")
    ds = YoloDataset(root, imgsz=64)
    err = capsys.readouterr().err
    assert "1 zero-size boxes" in err and "1 duplicate label rows" in err and "1 images without labels" in err
    assert ds.rows[0].tolist() == [[0, 0.5, 0.5, 0.5, 0.5]] and len(ds.rows[1]) == 0


def test_scan_is_cached_and_a_changed_label_rescans(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    for i in range(3):
        _yolo_pair(root, "train", f"i{i}", ["0 0.5 0.5 0.5 0.5"])
    YoloDataset(root, "train", 64)
    assert (root / "labels" / "train.dualhead.cache").is_file()

    def no_scan(path):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(yolo_mod, "image_problem", no_scan)
    assert YoloDataset(root, "train", 64).rows[2].tolist() == [[0, 0.5, 0.5, 0.5, 0.5]]
    (root / "labels" / "train" / "i2.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    with pytest.raises(AssertionError, match="cache should have answered"):  # stale: scanned again
        YoloDataset(root, "train", 64)
    monkeypatch.undo()
    assert YoloDataset(root, "train", 64).rows[2].tolist() == [[0, 0.5, 0.5, 0.25, 0.25]]
    # a cached scan keeps its errors: still reported, not forgotten
    (root / "labels" / "train" / "i1.txt").write_text("3 0.5 0.5 0.25 0.25\n")
    y = _write_yaml(tmp_path / "d.yaml", f"path: {root}\ntrain: images/train\nval: images/train\nnames: [a]\n")
    for _ in range(2):
        with pytest.raises(DatasetError, match=r"i1.txt:1: class 3"):
            build_dataset(y, "train", 64)


# ----------------------------------------------------------------------------------------- COCO


def _coco(tmp_path, anns, images=None, cats=None, write_images=True):
    images = images or [
        {"id": 11, "file_name": "a.png", "width": 80, "height": 40},
        {"id": 12, "file_name": "b.png", "width": 40, "height": 40},
        {"id": 13, "file_name": "c.png", "width": 40, "height": 40},
    ]
    cats = cats or [{"id": 3, "name": "car"}, {"id": 90, "name": "toothbrush"}, {"id": 7, "name": "bus"}]
    d = tmp_path / "coco"
    (d / "annotations").mkdir(parents=True, exist_ok=True)
    if write_images:
        for im in images:
            _image(d / "val2017" / im["file_name"], im["width"], im["height"])
    ann = d / "annotations" / "instances_val2017.json"
    full = [{"iscrowd": 0, "area": 100.0, **a} for a in anns]
    ann.write_text(json.dumps({"images": images, "annotations": full, "categories": cats}))
    return ann


def test_coco_ids_crowd_and_background(tmp_path, capsys):
    ann = _coco(
        tmp_path,
        [
            {"id": 1, "image_id": 11, "category_id": 90, "bbox": [10, 5, 20, 10]},
            {"id": 2, "image_id": 11, "category_id": 7, "bbox": [40, 0, 40, 40], "area": None},
            {"id": 3, "image_id": 12, "category_id": 3, "bbox": [0, 0, 40, 40], "iscrowd": 1},
        ],
    )
    ds = build_dataset(str(ann), "train", 160)  # the image folder found by COCO's layout
    assert ds.names == ("car", "bus", "toothbrush")  # id order: 3, 7, 90
    img, boxes, labels = ds[0]  # 80 x 40 -> scale 2, pad 40 rows above
    np.testing.assert_allclose(boxes, [[20, 50, 60, 70], [80, 40, 160, 120]])
    assert labels.tolist() == [2, 1]
    assert len(ds[1][1]) == 0 and len(ds[2][1]) == 0  # crowd: no target; c: background
    err = capsys.readouterr().err
    assert (
        "1 crowd annotations" in err and "annotation id 3" in err and "2 images without labels" in err
    )  # b: crowd only
    assert coco_ground_truth(ds)["annotations"][2]["iscrowd"] == 1  # kept for COCOeval
    assert coco_ground_truth(ds)["annotations"][1]["area"] == 1600  # absent in the file: the box's
    # the network's own perfect boxes, mapped back by restore(), score COCO mAP 1 on the file's
    # ground truth (image ids 11..13, category ids 90 and 7); a detection on the crowd region is
    # ignored by COCOeval, not a false positive
    dets = {}
    for i in range(len(ds)):
        _, b, c = ds[i]
        d = torch.cat([torch.from_numpy(b), torch.ones(len(b), 1), torch.from_numpy(c)[:, None].float()], 1)
        if i == 1:
            d = torch.tensor([[0.0, 0, 160, 160, 0.9, 0]])
        key, d = ds.restore(i, d)
        dets[key] = d
    assert set(dets) == {11, 12, 13}
    np.testing.assert_allclose(dets[11][:, :4], [[10, 5, 30, 15], [40, 0, 80, 40]])
    assert coco_map(coco_ground_truth(ds), dets) == {"map": 1.0, "map50": 1.0}


def test_coco_every_problem_in_one_report(tmp_path):
    images = [
        {"id": 1, "file_name": "a.png", "width": 40, "height": 40},
        {"id": 2, "file_name": "missing.png", "width": 40, "height": 40},
        {"id": 3, "file_name": "wrong_size.png", "width": 50, "height": 40},
    ]
    ann = _coco(
        tmp_path,
        [
            {"id": 101, "image_id": 1, "category_id": 5, "bbox": [0, 0, 10, 10]},  # unknown category
            {"id": 102, "image_id": 9, "category_id": 3, "bbox": [0, 0, 10, 10]},  # unknown image
            {"id": 103, "image_id": 1, "category_id": 3, "bbox": [30, 30, 20, 20]},  # outside the image
            {"id": 104, "image_id": 1, "category_id": 3, "bbox": [5, 5, -2, 4]},  # negative
            {"id": 105, "image_id": 1, "category_id": 3, "bbox": [5, 5, "w", 4]},  # malformed
            {"id": 106, "image_id": 1, "category_id": 3, "bbox": [5, 5, 0, 4]},  # zero: warning
        ],
        images=images,
        write_images=False,
    )
    _image(tmp_path / "coco" / "val2017" / "a.png", 40, 40)
    _image(tmp_path / "coco" / "val2017" / "wrong_size.png", 40, 40)
    with pytest.raises(DatasetError) as e:
        CocoDataset(ann, tmp_path / "coco" / "val2017", 64)
    report = str(e.value)
    for frag in (
        "annotation id 101: category_id 5",
        "annotation id 102: image_id 9",
        "annotation id 103: bbox [30, 30, 20, 20] falls outside the 40 x 40 image",
        "annotation id 104",
        "annotation id 105",
        "missing.png: no such file",
        "wrong_size.png: is 40 x 40 px, the JSON says 50 x 40",
        "annotation id 106",
    ):
        assert frag in report, (frag, report)
    assert "7 error(s)" in report
    r = cli("train", "--data", str(ann), "--images", str(tmp_path / "coco" / "val2017"), "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "annotation id 102" in r.stderr
    r = cli("train", "--data", str(tmp_path / "coco" / "nope.json"), "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "no such COCO JSON file" in r.stderr


def test_coco_json_that_is_not_coco_is_named(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"images": []')
    with pytest.raises(ValueError, match=r"x.json:1: not valid JSON"):
        build_dataset(str(p), "train", 64, images=str(tmp_path))
    p.write_text('{"images": [], "annotations": []}')
    with pytest.raises(ValueError, match="'images', 'annotations' and 'categories' lists"):
        build_dataset(str(p), "train", 64, images=str(tmp_path))
    with pytest.raises(ValueError, match="give --images"):
        build_dataset(str(p), "train", 64)


def test_coco_category_ids_written_as_strings_are_read(tmp_path):
    """Some converters write "9" for 9: read as the int (so "10" sorts after "9"), in the categories
    and in the annotations alike, and handed to COCOeval as ints."""
    ann = _coco(
        tmp_path,
        [
            {"id": 1, "image_id": 11, "category_id": "10", "bbox": [10, 5, 20, 10]},
            {"id": 2, "image_id": 11, "category_id": 9, "bbox": [40, 0, 40, 40]},
        ],
        cats=[{"id": "10", "name": "ten"}, {"id": "9", "name": "nine"}],
    )
    ds = build_dataset(str(ann), "train", 160)
    assert ds.names == ("nine", "ten") and ds.cat_ids == [9, 10]
    assert ds[0][2].tolist() == [1, 0]
    gt = coco_ground_truth(ds)
    assert [a["category_id"] for a in gt["annotations"]] == [10, 9]
    assert [c["id"] for c in gt["categories"]] == [9, 10]


def test_coco_problems_are_named_by_their_cause(tmp_path):
    """A bad category or image entry is the problem named; the annotations that point at it are not
    reported again as pointing nowhere, and "no categories" / "no images" are said only when the
    file's lists are empty."""
    ann = _coco(
        tmp_path,
        [
            {"id": 1, "image_id": 11, "category_id": "person", "bbox": [10, 5, 20, 10]},
            {"id": 2, "image_id": "b", "category_id": "car", "bbox": [0, 0, 10, 10]},
        ],
        images=[
            {"id": 11, "file_name": "a.png", "width": 80, "height": 40},
            {"id": "b", "file_name": "b.png", "width": 40, "height": 40},
        ],
        cats=[{"id": "person", "name": "person"}, {"id": "car", "name": "car"}],
    )
    with pytest.raises(DatasetError) as e:
        build_dataset(str(ann), "train", 64)
    report = str(e.value)
    assert "3 error(s)" in report, report
    assert "category {'id': 'person', 'name': 'person'}: needs an int 'id'" in report
    assert "image {'id': 'b'" in report
    assert "is not in 'categories'" not in report and "is not in 'images'" not in report
    assert "no categories" not in report
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(ValueError, match="'categories' is empty"):
        build_dataset(str(empty), "train", 64, images=str(tmp_path))
    empty.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    with pytest.raises(ValueError, match="'images' is empty"):
        build_dataset(str(empty), "train", 64, images=str(tmp_path))


# ---------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", ["yolo", "coco"])
def test_export_reads_back_bitwise(tmp_path, fmt):
    out = export("shapes", tmp_path / fmt, imgsz=64, train_len=6, val_len=4, fmt=fmt)
    for split, n in (("train", 6), ("val", 4)):
        orig = ShapesDataset(split, n, 64)
        back = build_dataset(str(out / "data.yaml"), split, 64)
        assert len(back) == n and back.names == orig.names
        for i in range(n):
            for a, b in zip(orig[i], back[i]):
                np.testing.assert_array_equal(a, b)
    if fmt == "coco":  # the JSON alone too, its images found by COCO's layout
        back = build_dataset(str(out / "annotations" / "instances_val.json"), "val", 64)
        assert len(back) == 4 and np.array_equal(back[3][1], ShapesDataset("val", 4, 64)[3][1])
    r = cli("export-data", "--format", fmt, "--out", str(tmp_path / fmt), "--imgsz", "64")
    assert r.returncode == 2 and "already holds an exported dataset" in r.stderr


def test_predict_and_ablate_take_the_same_data_forms(tmp_path):
    from dualhead.detector.train import TrainConfig, train

    out = export("shapes-easy", tmp_path / "c", imgsz=64, train_len=16, val_len=4, fmt="coco")
    y = str(out / "data.yaml")
    train(TrainConfig(data=y, imgsz=64, epochs=1, batch=8, workers=0, out=str(tmp_path / "run")))
    r = cli("predict", "--weights", str(tmp_path / "run" / "last.pt"), "--data", y, "--out", str(tmp_path / "p"))
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "p").glob("*_pred.png"))) == 4
    r = cli("ablate", "--data", y, "--anchors", "yolov8n", "--configs", "", "--ablate-out", str(tmp_path / "a"))
    assert r.returncode == 2 and "embedded data only" in r.stderr


class _Oracle(torch.nn.Module):
    """A "model" whose NMS-free detections are each batch's ground truth (network-input pixels)
    moved by 0.5 px, at score 0.9, plus one wrong-class copy of each at 0.4: a known, imperfect
    mAP that only a correct mapping back to the COCO file's images and pixels reproduces."""

    def __init__(self, loader, nc):
        super().__init__()
        self.head = type("Head", (), {"branches": ("o2o",)})()
        self.batches, self.nc = iter(list(loader)), nc

    def forward(self, images, branches):
        b = next(self.batches)
        boxes = torch.cat((b["gt_bboxes"] + 0.5, b["gt_bboxes"]), 1)
        scores = torch.zeros(*boxes.shape[:2], self.nc)
        B, M = b["gt_labels"].shape
        i, j = torch.meshgrid(torch.arange(B), torch.arange(M), indexing="ij")
        scores[i, j, b["gt_labels"]] = 0.9 * b["mask_gt"]
        scores[i, M + j, (b["gt_labels"] + 1) % self.nc] = 0.4 * b["mask_gt"]
        return {"o2o": (boxes, scores)}


def test_evaluate_uses_the_coco_file(tmp_path):
    """The same detections evaluated on a COCO copy (its own image ids and original pixels) and on
    the YOLO copy of the same images: the same mAP, and the one the detections deserve."""
    from dualhead.detector.data import DetectionSet, collate

    maps = []
    for fmt in ("yolo", "coco"):
        out = export("shapes", tmp_path / fmt, imgsz=64, train_len=1, val_len=8, fmt=fmt)
        ds = build_dataset(str(out / "data.yaml"), "val", 96)  # 64 px images letterboxed to 96
        loader = torch.utils.data.DataLoader(DetectionSet(ds), 4, collate_fn=collate)
        maps.append(evaluate(_Oracle(loader, len(ds.names)), loader, coco_ground_truth(ds), "cpu", max_det=100))
    assert maps[0] == maps[1]
    assert 0.3 < maps[0]["o2o"]["map"] < 1 and maps[0]["o2o"]["map50"] == pytest.approx(1.0)


@pytest.mark.slow
def test_coco_copy_trains_and_evaluates_as_the_yolo_copy(tmp_path):
    """The same images and boxes as YOLO labels and as COCO JSON: every logged number of a short
    training run is equal (losses, consistency, mAP on each form's own ground truth), times aside."""
    import csv

    from dualhead.detector.train import TrainConfig, train

    rows = {}
    for fmt in ("yolo", "coco"):
        out = export("shapes-easy", tmp_path / fmt, imgsz=128, train_len=384, val_len=32, fmt=fmt)
        run = tmp_path / f"run_{fmt}"
        train(
            TrainConfig(data=str(out / "data.yaml"), imgsz=128, epochs=4, batch=16, lr=0.006, workers=0, out=str(run))
        )
        with open(tmp_path / f"run_{fmt}" / "results.csv", newline="") as f:
            rows[fmt] = [
                {k: v for k, v in r.items() if k not in ("time_s", "img_s", "data_wait")} for r in csv.DictReader(f)
            ]
    assert rows["yolo"] == rows["coco"]
    assert float(rows["coco"][-1]["map"]) > 0.05 and float(rows["coco"][-1]["map_o2m_nms"]) > 0.05


def test_yaml_images_and_labels_as_ultralytics_finds_them(tmp_path):
    """Our image list and label paths of a YAML equal ultralytics' own (check_det_dataset,
    get_img_files, img2label_paths): a folder searched recursively plus a .txt list."""
    ultralytics = pytest.importorskip("ultralytics")  # noqa: F841
    from types import SimpleNamespace

    from ultralytics.data.base import BaseDataset
    from ultralytics.data.utils import check_det_dataset, img2label_paths

    root = tmp_path / "ds"
    for split, name in (("a", "z1"), ("a/deep", "z0"), ("b", "m"), ("c", "k")):
        _yolo_pair(root, split, name, ["0 0.5 0.5 0.5 0.5"])
    (root / "list.txt").write_text("./images/c/k.png\n" + str(root / "images/b/m.png") + "\n./notes.md\n")
    y = _write_yaml(tmp_path / "d.yaml", f"path: {root}\ntrain: [images/a, list.txt]\nval: images/b\nnames: [x]\n")
    ours = build_dataset(y, "train", 64)
    data = check_det_dataset(y)
    theirs = BaseDataset.get_img_files(SimpleNamespace(prefix="", fraction=1.0), data["train"])
    assert [str(f) for f in ours.files] == theirs
    assert [str(f) for f in ours.label_files] == img2label_paths(theirs)


def test_a_long_report_is_written_whole(tmp_path):
    root = tmp_path / "ds"
    for i in range(30):
        _yolo_pair(root, "", f"i{i:02d}", ["9 0.5 0.5 0.5 0.5"])
    (root / "classes.txt").write_text("only\n")
    with pytest.raises(DatasetError) as e:
        YoloDataset(root, imgsz=64)
    report = str(e.value)
    assert "30 error(s)" in report and "... and 10 more" in report and "i29.txt" not in report
    full = root / "labels.dualhead-report.txt"
    assert f"every problem: {full}" in report
    assert all(f"i{i:02d}.txt:1: class 9" in full.read_text() for i in range(30))


def test_coco_file_listed_twice_is_a_warning_not_an_error(tmp_path, capsys):
    """The second entry of a file is dropped with its annotations; they are not 'unknown image ids'."""
    images = [
        {"id": 1, "file_name": "a.png", "width": 40, "height": 40},
        {"id": 2, "file_name": "a.png", "width": 40, "height": 40},
    ]
    anns = [
        {"id": 7, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10]},
        {"id": 8, "image_id": 2, "category_id": 3, "bbox": [5, 5, 10, 10]},
    ]
    ds = CocoDataset(_coco(tmp_path, anns, images=images), tmp_path / "coco" / "val2017", 40)
    assert len(ds) == 1 and ds[0][1].tolist() == [[0, 0, 10, 10]]
    err = capsys.readouterr().err
    assert "1 duplicate images" in err and "image ids 1 and 2" in err and "not in 'images'" not in err


def test_problems_report_is_exact():
    """The report's exact text: its head (errors counted, or 'checked'), a line per kind with its
    count, each problem as added ('where: what', or 'where' alone), the first `shown` of a kind
    and a '... and N more' line only when some are left out; an unknown kind is named."""
    p = Problems()
    with pytest.raises(KeyError, match="nonsense"):
        p.add("nonsense", "a.txt")
    p.add("zero", "b.txt:3")
    p.add("zero", "b.txt:4", "w = 0")
    assert p.report("d", shown=2) == (
        "dataset d: checked\n  warning: 2 zero-size boxes (dropped)\n    b.txt:3\n    b.txt:4: w = 0"
    )
    p.add("class", "c.txt:1", "class 7")
    p.add("zero", "b.txt:5")
    assert p.report("d", shown=2) == (
        "dataset d: 1 error(s)\n"
        "  error: 1 class ids not in the dataset's names\n    c.txt:1: class 7\n"
        "  warning: 3 zero-size boxes (dropped)\n    b.txt:3\n    b.txt:4: w = 0\n    ... and 1 more"
    )
