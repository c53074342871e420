"""YOLO-format labels ("class cx cy w h" per line, normalised to the image) as a dataset.

The files come from a folder laid out images/ + labels/ (folder_files) or from an ultralytics
dataset YAML (sources.py); here a list of images is matched with its label files by ultralytics'
rule (the last /images/ of the path becomes /labels/, the suffix .txt), every label line and
image is checked (check.py: one report, file:line), and the scan is cached beside the labels
(cache.py). Images are letterboxed to imgsz when read.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

import dualhead.detector.data.cache as cache
from dualhead.detector.data.check import Problems
from dualhead.detector.data.images import IMAGE_SUFFIXES, image_problem, read_image
from dualhead.detector.data.transforms import letterbox

# normalised coordinates may exceed [0, 1] by this much (float printing), no more
TOL = 1e-6


def folder_files(root: Path, split: str | None):
    """(image files, label folder, class names or None) of a folder laid out images/ + labels/."""
    if not root.is_dir():
        raise ValueError(
            f"--data must be 'shapes', 'shapes-easy', a YOLO-format folder, a dataset YAML or a COCO JSON, "
            f"got {str(root)!r} (not found)"
        )
    img_dir, lab_dir = root / "images", root / "labels"
    if split and (img_dir / split).is_dir():
        img_dir, lab_dir = img_dir / split, lab_dir / split
    elif split == "val" and (img_dir / "train").is_dir():
        raise ValueError(f"--data {str(root)!r}: images/train exists but images/val does not: add a validation split")
    elif split == "val":
        print(f"dualhead: {root} has no images/val split: validating on the training images", file=sys.stderr)
    if not img_dir.is_dir():
        hint = " (or give its data.yaml)" if (root / "data.yaml").is_file() else ""
        raise ValueError(
            f"--data {str(root)!r} must be a YOLO-format folder with images/ and labels/ (no {img_dir}){hint}"
        )
    if not lab_dir.is_dir():
        raise ValueError(
            f"--data {str(root)!r}: no labels folder {lab_dir} next to {img_dir} (training would see zero objects)"
        )
    files = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"--data {str(root)!r}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {img_dir}")
    names_file = root / "classes.txt"
    names = None
    if names_file.exists():
        names = [n.strip() for n in names_file.read_text().splitlines() if n.strip()]
        if not names:
            raise ValueError(f"{names_file}: no class names")
    return files, lab_dir, names


def label_path(image: Path) -> Path:
    """ultralytics' images -> labels rule: the last '/images/' of the path becomes '/labels/'."""
    s = str(image)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if sa in s:
        s = sb.join(s.rsplit(sa, 1))
    return Path(s).with_suffix(".txt")


def parse_labels(path: Path, nc: int | None, problems: Problems) -> np.ndarray:
    """(n, 5) float32 rows (class, cx, cy, w, h) of one label file; each bad line goes to
    `problems` (file:line) and is left out."""
    rows, seen = [], set()
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        problems.add("malformed", path, f"cannot read the label file ({e})")
        text = ""
    for ln, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        where = f"{path}:{ln}"
        if not parts:
            continue
        if len(parts) != 5:
            problems.add("malformed", where, f"expected 'class cx cy w h', got {line.strip()!r}")
            continue
        try:
            c, cx, cy, bw, bh = map(float, parts)
        except ValueError:
            problems.add("malformed", where, f"expected numbers 'class cx cy w h', got {line.strip()!r}")
            continue
        if not all(np.isfinite((c, cx, cy, bw, bh))):
            problems.add("malformed", where, f"non-finite value in {line.strip()!r}")
        elif not (c >= 0 and c == int(c)):
            problems.add("class", where, f"class {parts[0]} is not an int >= 0")
        elif nc is not None and c >= nc:
            problems.add("class", where, f"class {int(c)} is not one of the {nc} classes (0..{nc - 1})")
        elif bw < 0 or bh < 0:
            problems.add("negative", where, f"width {parts[3]}, height {parts[4]}")
        elif not (-TOL <= cx <= 1 + TOL and -TOL <= cy <= 1 + TOL and bw <= 1 + TOL and bh <= 1 + TOL):
            problems.add("coords", where, f"{line.strip()!r} is not normalised to [0, 1] (pixels?)")
        elif bw == 0 or bh == 0:
            problems.add("zero", where, f"width {parts[3]}, height {parts[4]}")
        elif (c, cx, cy, bw, bh) in seen:
            problems.add("dup_label", where, "the same row as an earlier line")
        else:
            seen.add((c, cx, cy, bw, bh))
            rows.append((c, cx, cy, bw, bh))
    return np.asarray(rows, np.float32).reshape(-1, 5)


def to_pixels(rows: np.ndarray, w: int, h: int):
    """(boxes (n, 4) xyxy px clipped to the image, labels (n,)) from normalised label rows."""
    xy = rows[:, 1:3] * [w, h]
    wh = rows[:, 3:5] * [w, h]
    boxes = np.concatenate((xy - wh / 2, xy + wh / 2), 1).clip(0, [w, h, w, h]).astype(np.float32)
    return boxes, rows[:, 0].astype(np.int64)


def scan(files: list[Path], labels: list[Path], nc: int | None, problems: Problems) -> list[np.ndarray]:
    """The label rows of every image, with every label and image problem added to `problems`;
    cached beside the first label folder."""
    key = cache.files_key([*files, *labels], extra=f"nc={nc}")
    where = labels[0].parent.with_name(labels[0].parent.name + ".dualhead.cache")
    hit = cache.load(where, key)
    if hit is not None:
        arrays, meta = hit
        bounds = np.cumsum(arrays["counts"])[:-1]
        problems.merge(Problems.from_json(meta["problems"]))
        return np.split(arrays["rows"], bounds)
    found = Problems()
    rows = []
    for f, lab in zip(files, labels):
        rows.append(parse_labels(lab, nc, found) if lab.is_file() else np.zeros((0, 5), np.float32))
        why = image_problem(f)
        if why:
            found.add("image", f, why)
    cache.save(
        where,
        key,
        dict(
            rows=np.concatenate(rows) if rows else np.zeros((0, 5), np.float32), counts=np.array([len(r) for r in rows])
        ),
        dict(problems=found.to_json()),
    )
    problems.merge(found)
    return rows


class YoloDataset:
    """Images and their YOLO label files. YoloDataset(root, split) reads a folder laid out
    root/images[/split]/ + root/labels[/split]/ (class names from root/classes.txt, else 0..max
    id); YoloDataset.from_files(images, names, ...) any list of images (ultralytics' dataset YAML,
    sources.py). Every problem is reported before training (check.py)."""

    def __init__(self, root, split: str | None = None, imgsz: int = 640):
        files, lab_dir, names = folder_files(Path(root), split)
        self._setup(files, names, imgsz, str(root), label_dirs=[lab_dir])

    @classmethod
    def from_files(cls, files, names, imgsz: int, source: str) -> YoloDataset:
        self = cls.__new__(cls)
        self._setup(list(files), names, imgsz, source, label_dirs=None)
        return self

    def _setup(self, files, names, imgsz, source, label_dirs):
        problems = Problems()
        unique = list(dict.fromkeys(files))
        seen = set()
        for f in files:
            if f in seen:
                problems.add("dup_image", f, "listed more than once")
            seen.add(f)
        self.files, self.imgsz, self.source = unique, imgsz, source
        self.label_files = [label_path(f) for f in unique]
        nc = len(names) if names is not None else None
        self.rows = scan(self.files, self.label_files, nc, problems) if unique else []
        have = {p.name for p in self.label_files}
        for d in label_dirs or sorted({p.parent for p in self.label_files}):
            if d.is_dir():
                for p in sorted(d.glob("*.txt")):
                    if p.name not in have and p.name != "classes.txt":
                        problems.add("orphan", p)
        if not unique:
            raise ValueError(f"--data {source}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        labelled = 0
        for f, lab, r in zip(self.files, self.label_files, self.rows):
            has_file = lab.is_file()
            labelled += has_file
            if len(r) == 0:
                problems.add("background", f, "no objects" if has_file else "no label file")
        if labelled == 0 and not problems.errors():
            raise ValueError(
                f"--data {source}: none of the {len(unique)} images has a label file "
                f"(e.g. {self.label_files[0]}): training would see zero objects"
            )
        lab_dir = self.label_files[0].parent
        problems.finish(source, lab_dir.with_name(lab_dir.name + ".dualhead-report.txt"))
        if names is None:
            top = max((int(r[:, 0].max()) for r in self.rows if len(r)), default=0)
            names = [str(i) for i in range(top + 1)]
        self.names, self.nc = tuple(names), len(names)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i: int):
        img = read_image(self.files[i])
        boxes, labels = to_pixels(self.rows[i], img.shape[1], img.shape[0])
        img, boxes, _ = letterbox(img, boxes, self.imgsz)
        return img, boxes, labels
