"""The network, postprocessing, data and checkpoint pieces of the detector."""

import math

import numpy as np
import pytest
import torch

from dualhead.detector.data import DetectionSet, ShapesDataset, YoloDataset, as_float, collate
from dualhead.detector.nn import Detector, decode_dist, nms_detections, topk_detections
from dualhead.detector.train.checkpoint import load_checkpoint, save_atomic


def test_o2o_branch_sees_detached_features():
    torch.manual_seed(0)
    m = Detector(3, 0.125, imgsz=64).train()
    out, _ = m(torch.rand(2, 3, 64, 64))
    out["o2o"][1].sum().backward()
    assert all(p.grad is None for p in m.backbone.parameters())  # o2o loss trains its branch only
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.head.heads["o2o"].parameters())
    assert all(p.grad is None for p in m.head.heads["o2m"].parameters())


def test_o2o_detach_off_lets_the_o2o_loss_train_the_backbone():
    m = Detector(3, 0.125, imgsz=64).train()
    m.head.detach_o2o = False
    out, _ = m(torch.rand(2, 3, 64, 64))
    out["o2o"][1].sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.backbone.parameters())


def test_lone_o2o_branch_trains_the_backbone():
    m = Detector(3, 0.125, branches=("o2o",), imgsz=64).train()
    out, _ = m(torch.rand(2, 3, 64, 64))
    out["o2o"][1].sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.backbone.parameters())


def test_branches_start_identical_but_are_separate():
    m = Detector(3, 0.125, imgsz=64)
    a, b = m.head.heads["o2m"], m.head.heads["o2o"]
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb) and pa.data_ptr() != pb.data_ptr()
    # ultralytics bias init: box 2.0, class log(5 / nc / (imgsz / s)^2)
    assert float(a.box[0][-1].bias[0].detach()) == 2.0
    assert float(a.cls[2][-1].bias[0].detach()) == pytest.approx(np.log(5 / 3 / (64 / 32) ** 2))


def test_eval_output_shapes_and_decode():
    m = Detector(4, 0.125, imgsz=96).eval()
    out = m(torch.rand(2, 3, 96, 96))
    boxes, scores = out["o2o"]
    N = 12 * 12 + 6 * 6 + 3 * 3
    assert boxes.shape == (2, N, 4) and scores.shape == (2, N, 4) and set(out) == {"o2o"}
    # DFL decode: all mass on bin 2 on every side -> a box of +-2 cells around the anchor
    d = torch.full((1, 1, 64), -30.0)
    d.view(1, 1, 4, 16)[..., 2] = 30
    b = decode_dist(d, torch.tensor([[5.5, 7.5]]))
    torch.testing.assert_close(b, torch.tensor([[[3.5, 5.5, 7.5, 9.5]]]))


def test_image_size_must_be_multiple_of_32():
    with pytest.raises(ValueError, match="multiples of 32"):
        Detector(2, 0.125).eval()(torch.rand(1, 3, 100, 96))


@pytest.mark.parametrize(
    "kw,match", [(dict(nc=0), "nc"), (dict(nc=2, width=0), "width"), (dict(nc=2, branches=("o2x",)), "branches")]
)
def test_detector_bad_args(kw, match):
    with pytest.raises(ValueError, match=match):
        Detector(**kw)


def test_topk_detections_two_stage():
    scores = torch.zeros(1, 5, 3)
    scores[0, 1] = torch.tensor([0.9, 0.8, 0.0])  # one anchor, two classes: both kept (no NMS)
    scores[0, 3, 2] = 0.7
    boxes = torch.arange(20.0).view(1, 5, 4)
    (d,) = topk_detections(boxes, scores, max_det=3)
    assert d[:, 4].tolist() == pytest.approx([0.9, 0.8, 0.7])
    assert d[:, 5].tolist() == [0, 1, 2]
    torch.testing.assert_close(d[0, :4], boxes[0, 1])
    torch.testing.assert_close(d[2, :4], boxes[0, 3])
    (d,) = topk_detections(boxes, scores, max_det=3, conf=0.75)
    assert len(d) == 2
    with pytest.raises(ValueError, match="max_det"):
        topk_detections(boxes, scores, max_det=0)
    # one class per anchor: anchor 1 keeps class 0 only; the third slot goes to the next anchor
    scores[0, 4, 1] = 0.1
    (d,) = topk_detections(boxes, scores, max_det=3, one_class=True)
    assert d[:, 4].tolist() == pytest.approx([0.9, 0.7, 0.1])
    assert d[:, 5].tolist() == [0, 2, 1]
    torch.testing.assert_close(d[:, :4], boxes[0, [1, 3, 4]])


def test_nms_detections_suppresses_duplicates():
    boxes = torch.tensor([[[0, 0, 10, 10], [0, 0, 10, 11], [20, 20, 30, 30]]], dtype=torch.float32)
    scores = torch.tensor([[[0.9], [0.8], [0.7]]])
    (d,) = nms_detections(boxes, scores, iou=0.5)
    assert d[:, 4].tolist() == pytest.approx([0.9, 0.7])


def test_shapes_dataset_is_deterministic_and_labelled():
    a, b = ShapesDataset("val", 10, 128), ShapesDataset("val", 10, 128)
    for i in range(10):
        ia, ba, la = a[i]
        ib, bb, lb = b[i]
        assert np.array_equal(ia, ib) and np.array_equal(ba, bb) and np.array_equal(la, lb)
        assert ia.shape == (128, 128, 3) and ba.shape[1] == 4 and len(ba) == len(la)
        assert (ba[:, 2] > ba[:, 0]).all() and (ba[:, 3] > ba[:, 1]).all() and (la < a.nc).all()
    assert not np.array_equal(ShapesDataset("train", 1, 128)[0][0], a[0][0])
    with pytest.raises(ValueError, match="split"):
        ShapesDataset("holdout")
    with pytest.raises(IndexError):
        a[10]


def test_collate_pads_and_masks():
    ds = DetectionSet(ShapesDataset("val", 4, 64))
    batch = collate([ds[i] for i in range(4)])
    counts = [len(ds[i][1]) for i in range(4)]
    assert batch["gt_bboxes"].shape == (4, max(counts), 4)
    assert batch["mask_gt"].sum(1).tolist() == counts
    assert batch["images"].dtype == torch.uint8 and batch["images"].shape == (4, 3, 64, 64)  # a quarter of the bytes
    x = as_float(batch["images"])
    assert x.dtype == torch.float32 and torch.equal(x * 255, batch["images"].float())


def test_rendered_images_are_cached_read_only():
    ds = ShapesDataset("train", 3, 64)
    a, b = ds[1], ds[1]
    assert a[0] is b[0] and not a[0].flags.writeable  # drawn once; nobody may draw on the shared copy
    fresh = ShapesDataset("train", 3, 64, cache_mb=0)[1]
    assert all(np.array_equal(x, y) for x, y in zip(a, fresh))


@pytest.mark.parametrize("processes", [1, 2])
def test_prerender_fills_the_cache_with_the_lazy_renders(processes):
    ds = ShapesDataset("train", 60, 64)
    ds[3]  # already cached: not drawn again
    assert not ds.in_memory and ds.prerender(processes) == 59 and ds.prerender(processes) == 0 and ds.in_memory
    fresh = ShapesDataset("train", 60, 64, cache_mb=0)
    for i in (0, 3, 31, 59):
        assert all(np.array_equal(x, y) for x, y in zip(ds[i], fresh[i])), i
        assert ds[i][0] is ds[i][0] and not ds[i][0].flags.writeable
    small = ShapesDataset("train", 60, 64, cache_mb=10 * 64 * 64 * 3 / 2**20)  # room for 10 images
    assert small.prerender(processes) == 10 and len(small._cache) == 10 and not small.in_memory
    assert np.array_equal(small[50][0], fresh[50][0])  # the rest still drawn on demand


def test_ema_update_equals_the_per_tensor_formula():
    from dualhead.detector.nn import Detector
    from dualhead.detector.train.ema import ModelEMA

    torch.manual_seed(0)
    model = Detector(3, 0.0625, ("o2m", "o2o"), 64)
    ema = ModelEMA(model, tau=10)
    want = {k: v.clone() for k, v in ema.module.state_dict().items()}
    for n in (1, 2):  # the second update must see the model's in-place changes (cached tensor pairs)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(model)
        d = ema.decay * (1 - math.exp(-n / 10))
        for k, v in model.state_dict().items():
            ref = want[k].mul_(d).add_(v, alpha=1 - d) if v.dtype.is_floating_point else v
            assert torch.equal(ema.module.state_dict()[k], ref), k


def _write_yolo(root, n=6, imgsz=96, seed=0):
    from PIL import Image

    src = ShapesDataset("train", n, imgsz, seed=seed, max_objects=3, sizes=(16, 40))
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        img, boxes, labels = src[i]
        Image.fromarray(img).save(root / "images" / f"im{i}.png")
        rows = [
            f"{c} {(b[0] + b[2]) / 2 / imgsz} {(b[1] + b[3]) / 2 / imgsz} {(b[2] - b[0]) / imgsz} "
            f"{(b[3] - b[1]) / imgsz}"
            for b, c in zip(boxes, labels)
        ]
        (root / "labels" / f"im{i}.txt").write_text("\n".join(rows))
    return src


def test_yolo_directory_round_trip(tmp_path):
    src = _write_yolo(tmp_path)
    ds = YoloDataset(tmp_path, imgsz=96)
    assert len(ds) == 6
    for i in range(6):
        img, boxes, labels = ds[i]
        np.testing.assert_allclose(boxes, src[i][1], atol=1e-3)
        assert np.array_equal(labels, src[i][2])


def test_yolo_bad_label_line_names_file(tmp_path):
    _write_yolo(tmp_path, n=1)
    (tmp_path / "labels" / "im0.txt").write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(ValueError, match=r"im0.txt:1"):  # found when the dataset is built, before training
        YoloDataset(tmp_path, imgsz=96)
    with pytest.raises(ValueError, match="YOLO-format"):
        YoloDataset(tmp_path / "nope")


def test_failed_checkpoint_write_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomic({"model_config": {}, "model": {}, "epoch": 1}, path)

    def broken_save(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_atomic({"model_config": {}, "model": {}, "epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left behind


def test_load_checkpoint_bad_input(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"foo": 1}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a dualhead checkpoint"):
        load_checkpoint(tmp_path / "x.pt")


def test_o2o_lr_puts_the_o2o_branch_in_groups_of_its_own():
    from dualhead.detector.train.step import param_groups

    m = Detector(3, 0.125, imgsz=64)
    plain = param_groups(m, 0.05, 1e-3)
    assert len(plain) == 2 and all(g["lr"] == 1e-3 for g in plain)  # o2o_lr 1: the groups as always
    groups = param_groups(m, 0.05, 1e-3, o2o_lr=3.0)
    o2o = {id(p) for p in m.head.heads["o2o"].parameters()}
    assert [g["lr"] for g in groups] == [1e-3, 1e-3, pytest.approx(3e-3), pytest.approx(3e-3)]
    assert all(id(p) in o2o for g in groups[2:] for p in g["params"])
    assert not any(id(p) in o2o for g in groups[:2] for p in g["params"])
    assert sum(len(g["params"]) for g in groups) == len(list(m.parameters()))
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0, 0.05, 0.0]
