"""A COCO detection JSON (images, annotations with bbox [x, y, w, h] in pixels, categories) and
its image folder as a dataset.

- Category ids (any set, e.g. COCO's 1..90 with gaps) map to contiguous classes in id order;
  their names are kept.
- iscrowd annotations are not training targets and stay in the ground truth, where COCOeval
  ignores the detections that fall on them (its own rule, so the mAP is COCO's).
- Images without annotations are background images.
- The mAP is computed against the file's own annotations (ground_truth()), with each prediction
  mapped back from the network input to its image's pixels, image id and category id (restore()).

Every problem (check.py) is named by annotation id or file before training; the image checks are
cached beside the JSON.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

import dualhead.detector.data.cache as cache
from dualhead.detector.data.check import Problems
from dualhead.detector.data.images import image_problem, read_image
from dualhead.detector.data.transforms import letterbox, letterbox_frame

# a box may cross the image border by this many pixels (rounding in annotation tools), no more
BORDER_PX = 1.0


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def category_id(v) -> int | None:
    """A category id as an int: an int, or a string of one as some converters write them ("3");
    None for anything else."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
    return None


def load_json(path: Path) -> dict:
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"--data {path}: cannot read ({e})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(d, dict) or not all(isinstance(d.get(k), list) for k in ("images", "annotations", "categories")):
        raise ValueError(f"--data {path}: a COCO detection file has 'images', 'annotations' and 'categories' lists")
    return d


class CocoDataset:
    def __init__(self, ann_file, images_dir, imgsz: int = 640):
        ann_file, images_dir = Path(ann_file), Path(images_dir)
        if not images_dir.is_dir():
            raise ValueError(f"--images {str(images_dir)!r}: not a folder (the images of {ann_file})")
        d = load_json(ann_file)
        self.source, self.imgsz = str(ann_file), imgsz
        problems = Problems()
        if not d["categories"]:
            raise ValueError(f"--data {ann_file}: 'categories' is empty: the file names no class to train")
        cats, bad_cats = {}, set()  # bad_cats: the ids of category entries that are themselves a problem
        for c in d["categories"]:
            cid = category_id(c.get("id")) if isinstance(c, dict) else None
            if cid is None or cid in cats:
                why = "needs an int 'id' (or a string of one)" if cid is None else f"id {cid} listed twice"
                problems.add("malformed", ann_file, f"category {c!r}: {why}")
                if isinstance(c, dict) and isinstance(c.get("id"), (str, int)):
                    bad_cats.add(c["id"])
            else:
                cats[cid] = str(c.get("name", cid))
        self.cat_ids = sorted(cats)
        self.names, self.nc = tuple(cats[k] for k in self.cat_ids), len(cats)
        cls_of = {k: i for i, k in enumerate(self.cat_ids)}
        images, by_file, dropped = {}, {}, set()  # dropped: ids of a file listed twice (its second entry)
        for im in d["images"]:
            ok = isinstance(im, dict) and isinstance(im.get("id"), int) and isinstance(im.get("file_name"), str)
            ok = ok and all(isinstance(im.get(k), int) and im[k] > 0 for k in ("width", "height"))
            if not ok:
                problems.add(
                    "malformed", ann_file, f"image {im!r}: needs int 'id', 'file_name', int 'width' and 'height'"
                )
                if isinstance(im, dict) and isinstance(im.get("id"), (str, int)):
                    dropped.add(im["id"])  # its annotations are not reported again: the entry is the problem
            elif im["id"] in images:
                problems.add("malformed", ann_file, f"image id {im['id']} listed twice")
            elif im["file_name"] in by_file:
                problems.add("dup_image", im["file_name"], f"image ids {by_file[im['file_name']]} and {im['id']}")
                dropped.add(im["id"])
            else:
                images[im["id"]] = im
                by_file[im["file_name"]] = im["id"]
        self.images = list(images.values())
        index = {im["id"]: i for i, im in enumerate(self.images)}
        boxes = [[] for _ in self.images]
        labels = [[] for _ in self.images]
        anns = []
        for a in d["annotations"]:
            aid = a.get("id") if isinstance(a, dict) else None
            where = f"{ann_file}: annotation id {aid}"
            if not isinstance(a, dict):
                problems.add("malformed", ann_file, f"annotation {a!r} is not an object")
                continue
            b = a.get("bbox")
            if not (isinstance(b, list) and len(b) == 4 and all(map(_num, b))):
                problems.add("malformed", where, f"bbox {b!r} is not [x, y, w, h] numbers")
                continue
            if a.get("image_id") not in index:
                if a.get("image_id") not in dropped:
                    problems.add("image_id", where, f"image_id {a.get('image_id')!r} is not in 'images'")
                continue
            cid = category_id(a.get("category_id"))
            if cid not in cls_of:
                if a.get("category_id") not in bad_cats and cid not in bad_cats:
                    problems.add("class", where, f"category_id {a.get('category_id')!r} is not in 'categories'")
                continue
            im = images[a["image_id"]]
            x, y, w, h = map(float, b)
            # COCOeval's area ranges read 'area'; a converter's file may leave it out: the box's
            anns.append(
                {**a, "category_id": cid, "area": a["area"] if _num(a.get("area")) else max(w, 0.0) * max(h, 0.0)}
            )
            W, H = im["width"], im["height"]
            if a.get("iscrowd"):
                problems.add("crowd", where)
            elif w < 0 or h < 0:
                problems.add("negative", where, f"bbox {b}")
            elif x < -BORDER_PX or y < -BORDER_PX or x + w > W + BORDER_PX or y + h > H + BORDER_PX:
                problems.add("coords", where, f"bbox {b} falls outside the {W} x {H} image")
            elif w == 0 or h == 0:
                problems.add("zero", where, f"bbox {b}")
            else:
                i = index[a["image_id"]]
                boxes[i].append((max(x, 0.0), max(y, 0.0), min(x + w, W), min(y + h, H)))
                labels[i].append(cls_of[cid])
        self.files = [images_dir / im["file_name"] for im in self.images]
        self._check_images(ann_file, images_dir, problems)
        for f, bx in zip(self.files, boxes):
            if not bx:
                problems.add("background", f, "no annotations")
        problems.finish(str(ann_file), ann_file.with_name(ann_file.name + ".dualhead-report.txt"))
        if not self.images:
            raise ValueError(f"--data {ann_file}: 'images' is empty: the file lists no image")
        self.boxes = [np.asarray(b, np.float32).reshape(-1, 4) for b in boxes]
        self.labels = [np.asarray(lab, np.int64) for lab in labels]
        self.gt = {
            "images": self.images,
            "annotations": anns,
            "categories": [{"id": k, "name": cats[k]} for k in self.cat_ids],
        }

    def _check_images(self, ann_file: Path, images_dir: Path, problems: Problems) -> None:
        """Every image there, readable, of the size the JSON says; the result cached beside the JSON."""
        key = cache.files_key([ann_file, *self.files], extra=str(images_dir.resolve()))
        where = ann_file.with_name(ann_file.name + ".dualhead.cache")
        hit = cache.load(where, key)
        if hit is not None:
            problems.merge(Problems.from_json(hit[1]["problems"]))
            return
        found = Problems()
        for f, im in zip(self.files, self.images):
            why = image_problem(f, (im["width"], im["height"]))
            if why:
                found.add("image", f, why)
        cache.save(where, key, {}, dict(problems=found.to_json()))
        problems.merge(found)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i: int):
        img = read_image(self.files[i])
        img, boxes, _ = letterbox(img, self.boxes[i], self.imgsz)
        return img, boxes, self.labels[i]

    def ground_truth(self) -> dict:
        """The file's own images, annotations (crowd ones included) and categories."""
        return self.gt

    def frame(self, i: int):
        """The letterbox frame (scale, pad x, pad y) of image i, from its size alone."""
        return letterbox_frame(self.images[i]["width"], self.images[i]["height"], self.imgsz)

    def restore(self, i: int, dets: torch.Tensor):
        """(image id, detections (K, 6) in the image's own pixels) of index i's network-input
        detections; the class column stays the contiguous class (coco_eval maps it to the category).
        Not clipped to the image: evaluated as the other --data forms are (and COCOeval needs no
        clipping), so a COCO copy of a dataset scores what its YOLO copy does."""
        s, px, py = self.frame(i)
        d = dets.clone()
        d[:, [0, 2]] = (d[:, [0, 2]] - px) / s
        d[:, [1, 3]] = (d[:, [1, 3]] - py) / s
        return self.images[i]["id"], d
