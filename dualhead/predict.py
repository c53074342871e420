"""NMS-free inference: the o2o head, top-max_det selection, boxes drawn onto PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from dualhead.data.transforms import letterbox
from dualhead.data.yolo import IMAGE_SUFFIXES
from dualhead.nn.postprocess import branch_detections

PALETTE = [(255, 56, 56), (56, 56, 255), (56, 200, 56), (255, 157, 0), (200, 0, 200), (0, 190, 190),
           (130, 80, 0), (255, 110, 180)]


@torch.no_grad()
def detect(model, images: torch.Tensor, conf: float = 0.25, max_det: int = 100, branch: str | None = None,
           iou: float = 0.7):
    """images (B, 3, H, W) in [0, 1] -> per image (K, 6): x1 y1 x2 y2 score class. The o2o branch
    decodes without NMS; an o2m-only model falls back to NMS."""
    model.eval()
    branch = branch or model.head.infer_branch
    return branch_detections(branch, *model(images, branches=(branch,))[branch], max_det, conf, iou)


def draw(img: np.ndarray, dets: torch.Tensor, names) -> Image.Image:
    im = Image.fromarray(img)
    dr = ImageDraw.Draw(im)
    for x1, y1, x2, y2, s, c in dets.tolist():
        col = PALETTE[int(c) % len(PALETTE)]
        dr.rectangle((x1, y1, x2, y2), outline=col, width=2)
        label = f"{names[int(c)] if names and int(c) < len(names) else int(c)} {s:.2f}"
        tw = dr.textlength(label)
        dr.rectangle((x1, max(0, y1 - 11), x1 + tw + 2, max(11, y1)), fill=col)
        dr.text((x1 + 1, max(0, y1 - 11)), label, fill=(255, 255, 255))
    return im


def load_images(source, imgsz: int, limit: int = 16):
    """Images from a file, a folder, or 'shapes' (the embedded validation images) -> list of
    (name, letterboxed uint8 image)."""
    if source == "shapes":
        from dualhead.data import ShapesDataset

        ds = ShapesDataset("val", limit, imgsz)
        return [(f"shapes_val_{i:03d}", ds[i][0]) for i in range(len(ds))]
    p = Path(source)
    files = [p] if p.is_file() else sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) if p.is_dir() else []
    if not files:
        raise ValueError(f"source must be an image, a folder of images or 'shapes', got {source!r}")
    out = []
    for f in files[:limit]:
        with Image.open(f) as im:
            img, _, _ = letterbox(np.asarray(im.convert("RGB")), np.zeros((0, 4), np.float32), imgsz)
        out.append((f.stem, img))
    return out


def predict(weights, source="shapes", out="runs/predict", conf: float = 0.25, max_det: int = 100, limit: int = 16,
            device="cpu", grid: bool = True):
    """Run the model on the images and save <name>.png with boxes drawn (plus grid.png, a
    contact sheet of the first 16). Returns the list of written paths."""
    from dualhead.train.checkpoint import load_model

    model, names = load_model(weights, device)
    imgsz = model.config["imgsz"]
    items = load_images(source, imgsz, limit)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written, drawn = [], []
    for k in range(0, len(items), 16):
        chunk = items[k:k + 16]
        x = torch.stack([torch.from_numpy(im).permute(2, 0, 1).float() / 255 for _, im in chunk]).to(device)
        for (name, im), d in zip(chunk, detect(model, x, conf, max_det)):
            pic = draw(im, d.cpu(), names)
            pic.save(out / f"{name}.png")
            written.append(out / f"{name}.png")
            drawn.append(pic)
    if grid and drawn:
        n = min(16, len(drawn))
        cols = min(4, n)
        rows = (n + cols - 1) // cols
        sheet = Image.new("RGB", (cols * imgsz, rows * imgsz), (255, 255, 255))
        for i, pic in enumerate(drawn[:n]):
            sheet.paste(pic, ((i % cols) * imgsz, (i // cols) * imgsz))
        sheet.save(out / "grid.png")
        written.append(out / "grid.png")
    return written
