"""Image files: which suffixes are images, reading one as uint8 RGB, and why one cannot be used
(the datasets' checks call image_problem for every file before training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
# What opening a bad file raises: PIL's errors, and ImportError once ultralytics is imported (it
# replaces PIL's Image.open with one that tries to import pi_heif for any file PIL cannot identify).
IMAGE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, ImportError)


def read_image(path: Path) -> np.ndarray:
    """An image as uint8 RGB (H, W, 3); ValueError naming the file when it cannot be decoded."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except IMAGE_ERRORS as e:
        raise ValueError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None


def image_problem(path: Path, size: tuple[int, int] | None = None) -> str | None:
    """Why an image cannot be used (missing, not an image, truncated, or not `size` = (w, h)
    pixels as its annotation file says), or None. PIL's verify() reads the file through without
    decoding the pixels."""
    try:
        with Image.open(path) as im:
            found = im.size
            im.verify()
    except FileNotFoundError:
        return "no such file"
    except IMAGE_ERRORS as e:
        return f"not a readable image ({type(e).__name__}: {e})"
    if size is not None and found != tuple(size):
        return f"is {found[0]} x {found[1]} px, the JSON says {size[0]} x {size[1]}"
    return None
