"""How long the dataset check takes before the first training step, on a generated dataset of
20,000 images and 200,000 boxes (10 per image) in both on-disk forms: YOLO labels behind a
dataset YAML, and one COCO JSON. Each form is built three times: the first scan (no cache), the
second (the cache beside the labels / the JSON answers), and after one label file changed.

    python benchmarks/dataset_scan.py --root /tmp/scan20k [--images 20000] [--size 320x240]

Images are JPEGs of --size (PIL's verify() reads a JPEG's markers, a PNG's every chunk); the
folder is generated once and reused. Prints a table and writes <root>/scan.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image


def generate(root: Path, n: int, w: int, h: int, boxes: int = 10) -> None:
    if (root / "done").is_file():
        return
    rng = np.random.default_rng(0)
    img_dir, lab_dir = root / "images" / "train", root / "labels" / "train"
    img_dir.mkdir(parents=True, exist_ok=True)
    lab_dir.mkdir(parents=True, exist_ok=True)
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    images, anns = [], []
    for i in range(n):
        name = f"{i:06d}.jpg"
        Image.fromarray(np.roll(base, i, 1)).save(img_dir / name, quality=85)
        cxcy = rng.uniform(0.2, 0.8, (boxes, 2))
        wh = rng.uniform(0.05, 0.3, (boxes, 2))
        cls = rng.integers(0, 80, boxes)
        (lab_dir / f"{i:06d}.txt").write_text(
            "".join(f"{c} {x:.6f} {y:.6f} {bw:.6f} {bh:.6f}\n" for c, (x, y), (bw, bh) in zip(cls, cxcy, wh))
        )
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        for c, (x, y), (bw, bh) in zip(cls, cxcy, wh):
            x1, y1, ww, hh = (x - bw / 2) * w, (y - bh / 2) * h, bw * w, bh * h
            anns.append(
                dict(
                    id=len(anns) + 1,
                    image_id=i + 1,
                    category_id=int(c) + 1,
                    bbox=[x1, y1, ww, hh],
                    area=ww * hh,
                    iscrowd=0,
                )
            )
    (root / "annotations").mkdir(exist_ok=True)
    cats = [{"id": k + 1, "name": f"c{k}"} for k in range(80)]
    (root / "annotations" / "instances_train.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats})
    )
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/train\nnc: 80\n")
    (root / "done").write_text("")


def timed(fn):
    t0 = time.perf_counter()
    ds = fn()
    return time.perf_counter() - t0, ds


def main() -> None:
    from dualhead.detector.data import build_dataset

    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="/tmp/scan20k")
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--size", default="320x240")
    args = ap.parse_args()
    w, h = map(int, args.size.split("x"))
    root = Path(args.root)
    t0 = time.perf_counter()
    generate(root, args.images, w, h)
    print(f"dataset ready in {time.perf_counter() - t0:.0f} s: {root}")
    forms = {
        "YOLO labels (data.yaml)": (
            lambda: build_dataset(str(root / "data.yaml"), "train", 640),
            root / "labels" / "train.dualhead.cache",
        ),
        "COCO JSON": (
            lambda: build_dataset(
                str(root / "annotations" / "instances_train.json"), "train", 640, images=str(root / "images" / "train")
            ),
            root / "annotations" / "instances_train.json.dualhead.cache",
        ),
    }
    rows = {}
    for name, (build, cache_file) in forms.items():
        cache_file.unlink(missing_ok=True)
        first, ds = timed(build)
        second, _ = timed(build)
        lab = root / "labels" / "train" / "000000.txt"
        os.utime(lab)  # one label touched: the YOLO cache is stale (the COCO one keys on the JSON and images)
        third, _ = timed(build)
        boxes = sum(len(r) for r in ds.rows) if hasattr(ds, "rows") else sum(len(b) for b in ds.boxes)
        rows[name] = dict(images=len(ds), boxes=boxes, first_s=first, cached_s=second, after_touch_s=third)
    print("| form | images | boxes | first scan s | cached s | one label touched s |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['images']} | {r['boxes']} | {r['first_s']:.1f} | {r['cached_s']:.2f} | {r['after_touch_s']:.1f} |"
        )
    (root / "scan.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
