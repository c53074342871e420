"""The embedded data written as a dataset on disk, for other detectors (the ultralytics anchor of
the ablation) and as a template of the formats `--data` reads:

- yolo: images/{train,val}/NNNNNN.png (lossless), labels/{train,val}/NNNNNN.txt ("class cx cy w
  h", normalised, printed with float32's 9 significant digits), classes.txt, and data.yaml (the
  ultralytics dataset file);
- coco: {train,val}/NNNNNN.png and annotations/instances_{train,val}.json (COCO's layout: image
  ids from 1, category id = class + 1, bbox [x, y, w, h] in pixels), and a data.yaml naming both.

Either reads back with `--data <out>/data.yaml` as exactly the boxes of the embedded data (the
boxes are whole pixels and the image side a power of two, so the normalised values print exactly;
a test checks it bitwise).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from dualhead.detector.data.sources import EMBEDDED, build_dataset

FORMATS = ("yolo", "coco")


def export(
    data: str,
    out,
    imgsz: int = 256,
    train_len: int | None = None,
    val_len: int | None = None,
    overwrite: bool = False,
    fmt: str = "yolo",
) -> Path:
    if data not in EMBEDDED:
        raise ValueError(f"--data must be 'shapes' or 'shapes-easy' (the embedded data), got {data!r}")
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    if (out / "data.yaml").exists() and not overwrite:
        raise ValueError(
            f"--out {str(out)!r} already holds an exported dataset (data.yaml): give --overwrite or another folder"
        )
    names = build_dataset(data, "val", imgsz, 1).names
    for split, n in (("train", train_len), ("val", val_len)):
        ds = build_dataset(data, split, imgsz, n)
        (_write_yolo if fmt == "yolo" else _write_coco)(ds, out, split, names)
    if fmt == "yolo":
        (out / "classes.txt").write_text("\n".join(names) + "\n")
        splits = ["train: images/train", "val: images/val"]
    else:
        splits = [f"{s}:\n  annotations: annotations/instances_{s}.json\n  images: {s}" for s in ("train", "val")]
    yaml = [f"path: {out.resolve()}", *splits, "names:"] + [f"  {i}: {n}" for i, n in enumerate(names)]
    (out / "data.yaml").write_text("\n".join(yaml) + "\n")
    return out


def export_yolo(data: str, out, imgsz: int = 256, train_len=None, val_len=None, overwrite: bool = False) -> Path:
    return export(data, out, imgsz, train_len, val_len, overwrite, "yolo")


def _write_yolo(ds, out: Path, split: str, names) -> None:
    (out / "images" / split).mkdir(parents=True, exist_ok=True)
    (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i in range(len(ds)):
        img, boxes, labels = ds[i]
        h, w = img.shape[:2]
        Image.fromarray(img).save(out / "images" / split / f"{i:06d}.png")
        cxcy = (boxes[:, :2] + boxes[:, 2:]) / 2 / [w, h]
        wh = (boxes[:, 2:] - boxes[:, :2]) / [w, h]
        lines = [
            f"{int(c)} {x:.9g} {y:.9g} {bw:.9g} {bh:.9g}"
            for c, (x, y), (bw, bh) in zip(labels, np.asarray(cxcy), np.asarray(wh))
        ]
        (out / "labels" / split / f"{i:06d}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))


def _write_coco(ds, out: Path, split: str, names) -> None:
    (out / split).mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(len(ds)):
        img, boxes, labels = ds[i]
        h, w = img.shape[:2]
        name = f"{i:06d}.png"
        Image.fromarray(img).save(out / split / name)
        images.append({"id": i + 1, "file_name": name, "width": int(w), "height": int(h)})
        for b, c in zip(boxes.tolist(), labels.tolist()):
            bw, bh = b[2] - b[0], b[3] - b[1]
            anns.append(
                dict(
                    id=len(anns) + 1,
                    image_id=i + 1,
                    category_id=int(c) + 1,
                    bbox=[b[0], b[1], bw, bh],
                    area=bw * bh,
                    iscrowd=0,
                )
            )
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(names)]
    (out / "annotations" / f"instances_{split}.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats})
    )
