"""A YOLO-format directory as a dataset: images/ and labels/*.txt ("class cx cy w h", normalised).

Accepted layouts: root/images/*.{jpg,png,...} + root/labels/*.txt, or with split folders
root/images/<split>/ + root/labels/<split>/. Class names come from root/classes.txt (one per
line) when present, else from the largest class id seen. Images are letterboxed to imgsz.

Everything is checked when the dataset is built, before any training: every label line
(file:line in the message), every class id against classes.txt, every image readable. A folder
with no labels at all is an error, not a silent run on zero objects.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dualhead.detector.data.transforms import letterbox

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
# What opening a bad file raises: PIL's errors, and ImportError once ultralytics is imported (it
# replaces PIL's Image.open with one that tries to import pi_heif for any file PIL cannot identify).
IMAGE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, ImportError)


def parse_labels(path: Path) -> np.ndarray:
    """(n, 5) float32 rows (class, cx, cy, w, h) of one YOLO label file; ValueError with file:line."""
    rows = []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the label file ({e})") from None
    for ln, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise ValueError(f"{path}:{ln}: expected 'class cx cy w h', got {line!r}")
        try:
            c, cx, cy, bw, bh = map(float, parts)
        except ValueError:
            raise ValueError(f"{path}:{ln}: expected numbers 'class cx cy w h', got {line!r}") from None
        if not (c >= 0 and c == int(c)) or not all(np.isfinite((cx, cy, bw, bh))) or bw < 0 or bh < 0:
            raise ValueError(f"{path}:{ln}: bad label {line!r} (class must be an int >= 0, sizes finite and >= 0)")
        rows.append((c, cx, cy, bw, bh))
    return np.asarray(rows, np.float32).reshape(-1, 5)


def to_pixels(rows: np.ndarray, w: int, h: int):
    """(boxes (n, 4) xyxy px clipped to the image, labels (n,)) from normalised label rows."""
    xy = rows[:, 1:3] * [w, h]
    wh = rows[:, 3:5] * [w, h]
    boxes = np.concatenate((xy - wh / 2, xy + wh / 2), 1).clip(0, [w, h, w, h]).astype(np.float32)
    return boxes, rows[:, 0].astype(np.int64)


def read_image(path: Path) -> np.ndarray:
    """An image as uint8 RGB (H, W, 3); ValueError naming the file when it cannot be decoded."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except IMAGE_ERRORS as e:
        raise ValueError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None


class YoloDataset:
    def __init__(self, root, split: str | None = None, imgsz: int = 640):
        root = Path(root)
        if not root.is_dir():
            raise ValueError(
                f"--data must be 'shapes', 'shapes-easy' or a YOLO-format directory, got {str(root)!r} (not found)"
            )
        img_dir, lab_dir = root / "images", root / "labels"
        if split and (img_dir / split).is_dir():
            img_dir, lab_dir = img_dir / split, lab_dir / split
        elif split == "val" and (img_dir / "train").is_dir():
            raise ValueError(
                f"--data {str(root)!r}: images/train exists but images/val does not: add a validation split"
            )
        elif split == "val":
            print(f"dualhead: {root} has no images/val split: validating on the training images", file=sys.stderr)
        if not img_dir.is_dir():
            raise ValueError(
                f"--data {str(root)!r} must be a YOLO-format directory with images/ and labels/ (no {img_dir})"
            )
        if not lab_dir.is_dir():
            raise ValueError(
                f"--data {str(root)!r}: no labels folder {lab_dir} next to {img_dir} (training would see zero objects)"
            )
        self.files = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ValueError(f"--data {str(root)!r}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {img_dir}")
        self.lab_dir, self.imgsz = lab_dir, imgsz
        self.rows = [
            parse_labels(self._label_path(f)) if self._label_path(f).exists() else np.zeros((0, 5), np.float32)
            for f in self.files
        ]
        n_labelled = sum(self._label_path(f).exists() for f in self.files)
        if n_labelled == 0:
            raise ValueError(
                f"--data {str(root)!r}: none of the {len(self.files)} images in {img_dir} has a label file "
                f"in {lab_dir} (<image name>.txt): training would see zero objects"
            )
        if n_labelled < len(self.files):
            print(
                f"dualhead: {len(self.files) - n_labelled} of {len(self.files)} images in {img_dir} have no label file "
                "(used as background images)",
                file=sys.stderr,
            )
        names_file = root / "classes.txt"
        if names_file.exists():
            self.names = tuple(n.strip() for n in names_file.read_text().splitlines() if n.strip())
            if not self.names:
                raise ValueError(f"{names_file}: no class names")
            for f, rows in zip(self.files, self.rows):
                bad = np.nonzero(rows[:, 0] >= len(self.names))[0]
                if len(bad):
                    line = self._line_of(self._label_path(f), int(bad[0]))
                    raise ValueError(
                        f"{self._label_path(f)}:{line}: class {int(rows[bad[0], 0])} is not in {names_file} "
                        f"({len(self.names)} classes: 0..{len(self.names) - 1})"
                    )
        else:
            top = max((int(r[:, 0].max()) for r in self.rows if len(r)), default=0)
            self.names = tuple(str(i) for i in range(top + 1))
        self.nc = len(self.names)
        for f in self.files:  # every image readable now, not in a data-loader worker mid-epoch
            try:
                with Image.open(f) as im:
                    im.verify()
            except IMAGE_ERRORS as e:
                raise ValueError(f"{f}: not a readable image ({type(e).__name__}: {e})") from None

    def _label_path(self, image: Path) -> Path:
        return self.lab_dir / (image.stem + ".txt")

    @staticmethod
    def _line_of(path: Path, row: int) -> int:
        """The 1-based line of the row-th non-empty line of a label file."""
        return [i for i, ln in enumerate(path.read_text().splitlines(), 1) if ln.split()][row]

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i: int):
        img = read_image(self.files[i])
        boxes, labels = to_pixels(self.rows[i], img.shape[1], img.shape[0])
        img, boxes, _ = letterbox(img, boxes, self.imgsz)
        return img, boxes, labels
