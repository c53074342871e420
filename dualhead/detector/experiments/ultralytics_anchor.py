"""The ablation's outside anchor: ultralytics' own YOLOv10n (NMS-free end-to-end head) or YOLOv8n
(NMS) trained from scratch with ultralytics' own recipe (its augmentation, optimiser choice and
loss) on exactly the embedded data exported as a YOLO folder (dualhead.detector.data.export), for the same
epochs, image size and batch as the dualhead runs; then evaluated by dualhead's own code
(pycocotools mAP and the false-positive breakdown) on the same validation images.

If ultralytics' NMS-free model trails its NMS model by as much as dualhead's dual head trails its
o2m head at the same schedule, the gap belongs to the schedule; if not, to dualhead.

    python -m dualhead.detector.experiments.ultralytics_anchor run.json   (what `dualhead ablate --anchors` runs)

Writes <out>/results.csv (one row: the last epoch's weights, with time_s) beside ultralytics' own
run folder <out>/ultralytics/.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

from dualhead.detector.data import build_dataset
from dualhead.detector.data.export import export_yolo
from dualhead.detector.device import resolve_device
from dualhead.detector.evaluate import coco_ground_truth, detection_metrics
from dualhead.detector.train import TrainConfig
from dualhead.detector.train.plots import write_csv

MODELS = {"yolov10n": "yolov10n.yaml", "yolov8n": "yolov8n.yaml"}


def require_ultralytics():
    try:
        import ultralytics  # noqa: F401  (optional: the test extra)
    except ImportError:
        raise ValueError(
            "--anchors needs ultralytics: pip install 'dualhead[test]' (or ultralytics==8.4.190)"
        ) from None


def ensure_export(data: str, export_dir, imgsz: int, train_len, val_len) -> Path:
    """The embedded data as a YOLO folder, exported once and shared by the anchor runs (a lock
    file keeps two processes from writing it at the same time)."""
    d = Path(export_dir)
    marker = d / "export.json"
    want = dict(data=data, imgsz=imgsz, train_len=train_len, val_len=val_len)
    lock = d.with_name(d.name + ".lock")
    d.parent.mkdir(parents=True, exist_ok=True)
    while True:
        if marker.is_file() and json.loads(marker.read_text()) == want:
            return d
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL)
        except FileExistsError:  # another anchor run is exporting
            time.sleep(2)
            continue
        try:
            if not (marker.is_file() and json.loads(marker.read_text()) == want):
                export_yolo(data, d, imgsz, train_len, val_len, overwrite=True)
                marker.write_text(json.dumps(want))
            return d
        finally:
            os.close(fd)
            lock.unlink()


def detections(weights, images, imgsz: int, max_det: int, device: str) -> dict:
    """{index: (K, 6) x1 y1 x2 y2 score class} of ultralytics' own predictor (its NMS for v8, its
    NMS-free top-k for v10), at the validation settings conf 0.001, IoU 0.7."""
    from ultralytics import YOLO  # optional: require_ultralytics() names the install

    model = YOLO(str(weights))
    out = {}
    for i, r in enumerate(
        model.predict(
            [str(p) for p in images],
            imgsz=imgsz,
            conf=0.001,
            iou=0.7,
            max_det=max_det,
            device=device,
            verbose=False,
            stream=True,
            batch=16,
        )
    ):
        b = r.boxes
        out[i] = torch.cat((b.xyxy.float().cpu(), b.conf.float().cpu()[:, None], b.cls.float().cpu()[:, None]), 1)
    return out


def anchor_workers(workers, device) -> int:
    """--workers, or what `dualhead train` gives a dataset on disk on that device (1 on CPU):
    ultralytics refuses None."""
    return TrainConfig(workers=workers).loader_workers(device)


def run(spec: dict) -> dict:
    from ultralytics import YOLO  # optional: require_ultralytics() names the install

    out = Path(spec["out"])
    data_dir = ensure_export(spec["data"], spec["export_dir"], spec["imgsz"], spec["train_len"], spec["val_len"])
    dev = resolve_device(spec["device"])
    device = "cpu" if dev.type == "cpu" else str(dev.index or 0)  # ultralytics' spelling of the device
    t0 = time.time()
    YOLO(MODELS[spec["model"]]).train(
        data=str(data_dir / "data.yaml"),
        epochs=spec["epochs"],
        imgsz=spec["imgsz"],
        batch=spec["batch"],
        workers=anchor_workers(spec["workers"], dev),
        device=device,
        seed=spec["seed"],
        deterministic=True,
        pretrained=False,
        amp=device != "cpu",
        plots=False,
        val=False,
        project=str(out),
        name="ultralytics",
        exist_ok=True,
        verbose=False,
    )
    train_s = time.time() - t0
    val = build_dataset(spec["data"], "val", spec["imgsz"], spec["val_len"])
    gt = coco_ground_truth(val)
    images = sorted((data_dir / "images" / "val").glob("*.png"))
    dets = detections(out / "ultralytics" / "weights" / "last.pt", images, spec["imgsz"], spec["eval_max_det"], device)
    m = detection_metrics(gt, dets, nms_free=spec["model"] == "yolov10n")
    if "map_nms" in m:  # the column name of dualhead's o2o head with NMS added
        m["map_o2o_nms"] = m.pop("map_nms")
    row = {"epoch": spec["epochs"], "time_s": round(train_s, 1), **m}
    write_csv(out / "results.csv", row, append=False)
    print(json.dumps(row))
    return row


if __name__ == "__main__":
    run(json.loads(Path(sys.argv[1]).read_text()))
