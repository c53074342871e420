"""NMS-free inference: the o2o head, top-max_det selection, boxes drawn onto the images.

Sources: an image, a folder of images, a dataset (--data), 'shapes' (the embedded validation
images), a video file, or a webcam (its number, '0' for /dev/video0). Images are written as
<name>_pred.png (+ a contact sheet); a video as <name>_pred.mp4 with <name>_pred.jsonl, one line
of detections per frame (video.py reads and writes them). save_json: every detection in COCO's
results format (predictions.json), for scoring with one's own tools.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from dualhead.detector.data import ShapesDataset, stack_images
from dualhead.detector.data.images import IMAGE_SUFFIXES, read_image
from dualhead.detector.data.transforms import letterbox
from dualhead.detector.device import resolve_device
from dualhead.detector.nn.postprocess import branch_detections
from dualhead.detector.train.checkpoint import ensure_writable, load_model
from dualhead.detector.video import VIDEO_SUFFIXES, VideoWriter, batches, frames, is_stream, open_stream

ACCEPTED = (
    f"an image ({', '.join(sorted(IMAGE_SUFFIXES))}), a folder of images, a video "
    f"({', '.join(sorted(VIDEO_SUFFIXES))}), a webcam number (0 for /dev/video0), 'shapes', or --data"
)
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
        hint = ""
        if Path(source).is_dir() and any(f.suffix.lower() in VIDEO_SUFFIXES for f in Path(source).iterdir()):
            hint = " (the folder holds videos: give one of them as --source)"
        raise ValueError(f"--source must be {ACCEPTED}, got {str(source)!r}{hint}")
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


def check_options(conf, max_det, limit) -> None:
    if not (isinstance(conf, (int, float)) and 0 <= conf <= 1):
        raise ValueError(f"--conf must be a number in [0, 1], got {conf!r}")
    if not (isinstance(max_det, int) and max_det >= 1):
        raise ValueError(f"--max-det must be an int >= 1, got {max_det!r}")
    if not (limit is None or (isinstance(limit, int) and limit >= 1)):
        raise ValueError(f"--limit must be an int >= 1, got {limit!r}")


def predict(
    weights,
    source="shapes",
    out="runs/predict",
    conf: float = 0.25,
    max_det: int = 100,
    limit: int | None = 16,
    device="cpu",
    grid: bool = True,
    save_json: bool = False,
):
    """Run the model on a source (module docstring) and write what it found; returns the list of
    written paths. Images: <name>_pred.png, the original image at its own resolution with the
    boxes mapped back from the network input and clipped, plus contact_sheet.png (the first 16
    side by side); limit: images at most. A video or webcam: <name>_pred.mp4 and
    <name>_pred.jsonl; limit: frames at most (None: all, or until Ctrl-C for a webcam).
    save_json: predictions.json in COCO's results format."""
    check_options(conf, max_det, limit)
    device = resolve_device(device)
    out = Path(out)
    ensure_writable(out, "--out")
    model, names = load_model(weights, device)
    if is_stream(source):
        return predict_stream(model, names, source, out, conf, max_det, limit, device, save_json)
    imgsz = model.config["imgsz"]
    items, skipped = load_images(source, imgsz, limit or 16)
    for msg in skipped:
        print(f"dualhead predict: warning: skipped {msg}", file=sys.stderr)
    if not items:
        raise ValueError(f"--source {source!r}: no image could be read (every file skipped); it must be {ACCEPTED}")
    written, drawn, results = [], [], []
    ids, cats = coco_ids(source)
    for k in range(0, len(items), 16):
        chunk = items[k : k + 16]
        x = stack_images([b for _, _, _, b, _ in chunk], device)
        for (name, _, img, _, frame), fname, d in zip(chunk, output_names(chunk, out), detect(model, x, conf, max_det)):
            dets = unletterbox(d.cpu(), frame, img.shape[1], img.shape[0])
            pic = draw(img, dets, names)
            pic.save(out / fname)
            written.append(out / fname)
            drawn.append(pic)
            results += coco_results(ids.get(name, int(name) if name.isdigit() else name), dets, cats)
    if grid and drawn:
        written.append(contact_sheet(drawn, items, imgsz, out))
    if save_json:
        written.append(write_json(results, out / "predictions.json"))
    return written


def contact_sheet(drawn, items, imgsz: int, out: Path) -> Path:
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
    return out / name


# ------------------------------------------------------------------------------ COCO results


def coco_ids(source) -> tuple[dict, list | None]:
    """COCO ids for the predictions: ({file stem: image id}, [category id of each class]) of a
    COCO dataset; otherwise ({}, None): an image's id is its file name's number when it is one
    (COCO's 000000397133.jpg -> 397133, as ultralytics writes it), else the name, and a
    category's id is the class index."""
    if hasattr(source, "images") and hasattr(source, "cat_ids"):
        return {Path(im["file_name"]).stem: im["id"] for im in source.images}, list(source.cat_ids)
    return {}, None


def coco_results(img_id, dets: torch.Tensor, cat_ids) -> list[dict]:
    """Detections (K, 6) in image pixels as COCO results: bbox [x, y, w, h], score, category_id."""
    out = []
    for x1, y1, x2, y2, s, c in dets.tolist():
        cat = cat_ids[int(c)] if cat_ids else int(c)
        box = [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)]
        out.append({"image_id": img_id, "category_id": cat, "bbox": box, "score": round(s, 5)})
    return out


def write_json(results: list, path: Path) -> Path:
    path.write_text(json.dumps(results))
    return path


# ------------------------------------------------------------------------------ video, webcam


def predict_stream(model, names, source, out: Path, conf, max_det, limit, device, save_json) -> list[Path]:
    """Every frame (up to limit) of a video or webcam: the annotated video (H.264, the source's
    frame rate) and one JSON line of detections per frame, frames in batches of 8."""
    container, stream, name = open_stream(source)
    imgsz = model.config["imgsz"]
    video, lines = out / f"{name}_pred.mp4", out / f"{name}_pred.jsonl"
    fps = stream.average_rate or 30
    total = stream.frames or None
    total = min(total, limit) if total and limit else (limit or total)
    writer, results, n = None, [], 0
    bar = tqdm(total=total, desc=f"predict {name}", unit="frame", disable=None)
    try:
        with open(lines, "w") as jl:
            for batch in batches(frames(container, stream, limit), 8):
                if writer is None:
                    writer = VideoWriter(video, batch[0].shape[1], batch[0].shape[0], fps)
                for img, dets in zip(batch, _detect_frames(model, batch, imgsz, conf, max_det, device)):
                    writer.write(np.asarray(draw(img, dets, names)))
                    row = [[round(v, 3) for v in d[:4]] + [round(d[4], 5), int(d[5])] for d in dets.tolist()]
                    jl.write(json.dumps({"frame": n, "time_s": round(n / float(fps), 4), "detections": row}) + "\n")
                    if save_json:
                        results += coco_results(n, dets, None)
                    n += 1
                    bar.update(1)
    except KeyboardInterrupt:  # a webcam runs until Ctrl-C: keep what was written
        print(f"\ndualhead predict: stopped after {n} frames", file=sys.stderr)
    finally:
        bar.close()
        container.close()
        if writer is not None:
            writer.close()
    if n == 0:
        raise ValueError(f"--source {str(source)!r}: no frame could be decoded")
    written = [video, lines]
    if save_json:
        written.append(write_json(results, out / "predictions.json"))
    return written


def _detect_frames(model, images, imgsz, conf, max_det, device):
    """Each frame's detections in its own pixels (letterboxed for the network, mapped back, clipped)."""
    boxed = [letterbox(f, np.zeros((0, 4), np.float32), imgsz) for f in images]
    x = stack_images([b for b, _, _ in boxed], device)
    for (_, _, frame), f, d in zip(boxed, images, detect(model, x, conf, max_det)):
        yield unletterbox(d.cpu(), frame, f.shape[1], f.shape[0])
