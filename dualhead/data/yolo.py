"""A YOLO-format directory as a dataset: images/ and labels/*.txt ("class cx cy w h", normalised).

Accepted layouts: root/images/*.{jpg,png,...} + root/labels/*.txt, or with split folders
root/images/<split>/ + root/labels/<split>/. Class names come from root/classes.txt (one per
line) when present, else from the largest class id seen. Images are letterboxed to imgsz.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dualhead.data.transforms import letterbox

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def read_labels(path: Path, w: int, h: int):
    """-> (boxes (n, 4) xyxy px, labels (n,)) from one YOLO label file (missing file: no objects)."""
    if not path.exists():
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)
    rows = []
    for ln, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise ValueError(f"{path}:{ln}: expected 'class cx cy w h', got {line!r}")
        c, cx, cy, bw, bh = float(parts[0]), *map(float, parts[1:])
        if not (c >= 0 and c == int(c)) or not all(np.isfinite((cx, cy, bw, bh))) or bw < 0 or bh < 0:
            raise ValueError(f"{path}:{ln}: bad label {line!r} (class must be an int >= 0, sizes >= 0)")
        rows.append((c, cx, cy, bw, bh))
    a = np.asarray(rows, np.float32).reshape(-1, 5)
    xy = a[:, 1:3] * [w, h]
    wh = a[:, 3:5] * [w, h]
    boxes = np.concatenate((xy - wh / 2, xy + wh / 2), 1).clip(0, [w, h, w, h]).astype(np.float32)
    return boxes, a[:, 0].astype(np.int64)


class YoloDataset:
    def __init__(self, root, split: str | None = None, imgsz: int = 640):
        root = Path(root)
        img_dir, lab_dir = root / "images", root / "labels"
        if split and (img_dir / split).is_dir():
            img_dir, lab_dir = img_dir / split, lab_dir / split
        if not img_dir.is_dir():
            raise ValueError(f"data must be a YOLO-format directory with images/ and labels/, got {str(root)!r}")
        self.files = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ValueError(f"no images found in {str(img_dir)!r}")
        self.lab_dir, self.imgsz = lab_dir, imgsz
        names_file = root / "classes.txt"
        if names_file.exists():
            self.names = tuple(n.strip() for n in names_file.read_text().splitlines() if n.strip())
        else:
            top = max((int(float(line.split()[0])) for f in lab_dir.glob("*.txt")
                       for line in f.read_text().splitlines() if line.split()), default=0)
            self.names = tuple(str(i) for i in range(top + 1))
        self.nc = len(self.names)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i: int):
        with Image.open(self.files[i]) as im:
            img = np.asarray(im.convert("RGB"))
        boxes, labels = read_labels(self.lab_dir / (self.files[i].stem + ".txt"), img.shape[1], img.shape[0])
        img, boxes, _ = letterbox(img, boxes, self.imgsz)
        return img, boxes, labels
