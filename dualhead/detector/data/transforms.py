"""Basic augmentation and resizing on (image uint8 (H, W, 3), boxes (n, 4) xyxy px, labels (n,))."""

from __future__ import annotations

import numpy as np
from PIL import Image


def letterbox(img: np.ndarray, boxes: np.ndarray, size: int, pad_value: int = 114):
    """Resize the long side to `size` keeping the aspect ratio, pad to size x size (centred).
    Returns (image, boxes in the new frame, (scale, pad_x, pad_y)) so predictions can be mapped back."""
    h, w = img.shape[:2]
    s, (nw, nh), (px, py) = _fit(w, h, size)
    if (nw, nh) != (w, h):
        img = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))
    out = np.full((size, size, 3), pad_value, np.uint8)
    out[py : py + nh, px : px + nw] = img
    boxes = boxes * s + np.array([px, py, px, py], np.float32)
    return out, boxes.astype(np.float32), (s, px, py)


def _fit(w: int, h: int, size: int):
    s = size / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    return s, (nw, nh), ((size - nw) // 2, (size - nh) // 2)


def letterbox_frame(w: int, h: int, size: int):
    """(scale, pad_x, pad_y) that letterbox() uses for a w x h image, without the image."""
    s, _, (px, py) = _fit(w, h, size)
    return s, px, py


class Augment:
    """Horizontal flip (p = 0.5), brightness/contrast jitter and a random scale-and-translate
    (zoom in 1 / (1 - zoom) at most; boxes clipped, those losing over 60 % of their area dropped)."""

    def __init__(self, flip: float = 0.5, color: float = 0.3, zoom: float = 0.25):
        self.flip, self.color, self.zoom = flip, color, zoom

    def __call__(self, img, boxes, labels, rng: np.random.Generator):
        H, W = img.shape[:2]
        if self.zoom > 0 and rng.random() < 0.5:
            f = rng.uniform(1 - self.zoom, 1.0)
            cw, ch = max(1, int(W * f)), max(1, int(H * f))
            x0, y0 = int(rng.integers(0, W - cw + 1)), int(rng.integers(0, H - ch + 1))
            img = np.asarray(Image.fromarray(img[y0 : y0 + ch, x0 : x0 + cw]).resize((W, H), Image.BILINEAR))
            area0 = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            boxes = boxes - np.array([x0, y0, x0, y0], np.float32)
            boxes = np.clip(boxes, 0, [cw, ch, cw, ch]) * np.array([W / cw, H / ch, W / cw, H / ch], np.float32)
            area1 = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) * (cw * ch) / (W * H)
            keep = area1 > 0.4 * np.maximum(area0, 1e-6)
            boxes, labels = boxes[keep].astype(np.float32), labels[keep]
        if rng.random() < self.flip:
            img = img[:, ::-1]
            boxes = np.stack((W - boxes[:, 2], boxes[:, 1], W - boxes[:, 0], boxes[:, 3]), 1).astype(np.float32)
        if self.color > 0:
            a = 1 + rng.uniform(-self.color, self.color)  # contrast
            b = 255 * rng.uniform(-self.color, self.color) / 2  # brightness
            img = np.clip(img.astype(np.float32) * a + b, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(img), boxes.reshape(-1, 4), labels
