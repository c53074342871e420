"""The embedded data as a YOLO-format folder, for other detectors (the ultralytics anchor of the
ablation) to train on exactly the images and boxes dualhead trains on.

Layout: images/{train,val}/NNNNNN.png (lossless), labels/{train,val}/NNNNNN.txt
("class cx cy w h", normalised), classes.txt, and data.yaml for ultralytics. Reading it back with
`--data <folder>` gives the same boxes as the embedded data (to float rounding of the normalised
coordinates; a test checks it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dualhead.detector.data import build_dataset


def export_yolo(
    data: str, out, imgsz: int = 256, train_len: int | None = None, val_len: int | None = None, overwrite: bool = False
) -> Path:
    if data not in ("shapes", "shapes-easy"):
        raise ValueError(f"--data must be 'shapes' or 'shapes-easy' (the embedded data), got {data!r}")
    out = Path(out)
    if (out / "data.yaml").exists() and not overwrite:
        raise ValueError(
            f"--out {str(out)!r} already holds an exported dataset (data.yaml): give --overwrite or another folder"
        )
    for split, n in (("train", train_len), ("val", val_len)):
        ds = build_dataset(data, split, imgsz, n)
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(len(ds)):
            img, boxes, labels = ds[i]
            h, w = img.shape[:2]
            Image.fromarray(img).save(out / "images" / split / f"{i:06d}.png")
            cxcy = (boxes[:, :2] + boxes[:, 2:]) / 2 / [w, h]
            wh = (boxes[:, 2:] - boxes[:, :2]) / [w, h]
            lines = [
                f"{int(c)} {x:.7f} {y:.7f} {bw:.7f} {bh:.7f}"
                for c, (x, y), (bw, bh) in zip(labels, np.asarray(cxcy), np.asarray(wh))
            ]
            (out / "labels" / split / f"{i:06d}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    names = build_dataset(data, "val", imgsz, 1).names
    (out / "classes.txt").write_text("\n".join(names) + "\n")
    yaml = [f"path: {out.resolve()}", "train: images/train", "val: images/val", "names:"]
    yaml += [f"  {i}: {n}" for i, n in enumerate(names)]
    (out / "data.yaml").write_text("\n".join(yaml) + "\n")
    return out
