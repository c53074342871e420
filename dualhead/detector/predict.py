"""NMS-free inference: the o2o head, top-max_det selection, boxes drawn onto PNGs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from dualhead.detector.data import ShapesDataset
from dualhead.detector.data.images import IMAGE_SUFFIXES, read_image
from dualhead.detector.data.transforms import letterbox
from dualhead.detector.device import resolve_device
from dualhead.detector.nn.postprocess import branch_detections
from dualhead.detector.train.checkpoint import ensure_writable, load_model

PALETTE = [
    (255, 56, 56),
    (56, 56, 255),
    (56, 200, 56),
    (255, 157, 0),
    (200, 0, 200),
    (0, 190, 190),
    (130, 80, 0),
    (255, 110, 180),
]


@torch.no_grad()
def detect(
    model, images: torch.Tensor, conf: float = 0.25, max_det: int = 100, branch: str | None = None, iou: float = 0.7
):
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


def unletterbox(dets: torch.Tensor, frame, w: int, h: int) -> torch.Tensor:
    """Detections (K, 6) in the letterboxed network input -> the original w x h image, clipped."""
    s, px, py = frame
    d = dets.clone()
    d[:, [0, 2]] = ((d[:, [0, 2]] - px) / s).clamp(0, w)
    d[:, [1, 3]] = ((d[:, [1, 3]] - py) / s).clamp(0, h)
    return d


def load_images(source, imgsz: int, limit: int = 16):
    """Images from a file, a folder, a dataset on disk, or 'shapes' (the embedded validation images) -> (list of
    (name, source path or None, original uint8 image, letterboxed image, letterbox frame), list
    of skipped-file messages). An unreadable file is skipped (with a warning), not fatal."""
    if source == "shapes":
        ds = ShapesDataset("val", limit, imgsz)
        return [(f"shapes_val_{i:03d}", None, ds[i][0], ds[i][0], (1.0, 0, 0)) for i in range(len(ds))], []
    if hasattr(source, "files"):  # a dataset on disk (build_dataset): its images
        files = list(source.files)
    else:
        p = Path(source)
        files = (
            [p]
            if p.is_file()
            else sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if p.is_dir()
            else []
        )
    if not files:
        raise ValueError(
            f"--source must be an image, a folder of images ({', '.join(sorted(IMAGE_SUFFIXES))}) or "
            f"'shapes', got {source!r}"
        )
    out, skipped = [], []
    for f in files[:limit]:
        try:
            img = read_image(f)
        except ValueError as e:
            skipped.append(str(e))
            continue
        boxed, _, frame = letterbox(img, np.zeros((0, 4), np.float32), imgsz)
        out.append((f.stem, f.resolve(), img, boxed, frame))
    return out, skipped


CONTACT_SHEET = "contact_sheet.png"


def output_names(items, out: Path):
    """<name>_pred.png per image: unique (two sources may share a stem), never a source file and
    never the contact sheet's name."""
    sources = {src for _, src, *_ in items if src is not None}
    used, names = {CONTACT_SHEET}, []
    for name, *_ in items:
        cand, k = f"{name}_pred.png", 1
        while cand in used or (out / cand).resolve() in sources:
            k += 1
            cand = f"{name}_pred{k}.png"
        used.add(cand)
        names.append(cand)
    return names


def predict(
    weights,
    source="shapes",
    out="runs/predict",
    conf: float = 0.25,
    max_det: int = 100,
    limit: int = 16,
    device="cpu",
    grid: bool = True,
):
    """Run the model on the images and save <name>_pred.png: the original image at its own
    resolution with the boxes mapped back from the network input and clipped (plus
    contact_sheet.png, the first 16 side by side). Returns the list of written paths."""
    if not (isinstance(conf, (int, float)) and 0 <= conf <= 1):
        raise ValueError(f"--conf must be a number in [0, 1], got {conf!r}")
    if not (isinstance(max_det, int) and max_det >= 1):
        raise ValueError(f"--max-det must be an int >= 1, got {max_det!r}")
    if not (isinstance(limit, int) and limit >= 1):
        raise ValueError(f"--limit must be an int >= 1, got {limit!r}")
    device = resolve_device(device)
    out = Path(out)
    ensure_writable(out, "--out")
    model, names = load_model(weights, device)
    imgsz = model.config["imgsz"]
    items, skipped = load_images(source, imgsz, limit)
    for msg in skipped:
        print(f"dualhead predict: warning: skipped {msg}", file=sys.stderr)
    written, drawn = [], []
    for k in range(0, len(items), 16):
        chunk = items[k : k + 16]
        x = torch.stack([torch.from_numpy(b.copy()).permute(2, 0, 1).float() / 255 for _, _, _, b, _ in chunk]).to(
            device
        )
        for (_, _, img, _, frame), fname, d in zip(chunk, output_names(chunk, out), detect(model, x, conf, max_det)):
            pic = draw(img, unletterbox(d.cpu(), frame, img.shape[1], img.shape[0]), names)
            pic.save(out / fname)
            written.append(out / fname)
            drawn.append(pic)
    if grid and drawn:
        n = min(16, len(drawn))
        cols = min(4, n)
        rows = (n + cols - 1) // cols
        sheet = Image.new("RGB", (cols * imgsz, rows * imgsz), (255, 255, 255))
        for i, pic in enumerate(drawn[:n]):
            thumb = pic.copy()
            thumb.thumbnail((imgsz, imgsz))
            sheet.paste(thumb, ((i % cols) * imgsz, (i // cols) * imgsz))
        sources = {src for _, src, *_ in items if src is not None}
        name, k = CONTACT_SHEET, 1
        while (out / name).resolve() in sources:  # a source image of that name: never overwritten
            k += 1
            name = CONTACT_SHEET.replace(".png", f"_{k}.png")
        sheet.save(out / name)
        written.append(out / name)
    return written
