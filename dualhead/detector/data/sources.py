"""What `--data` accepts, resolved to a dataset of one split:

- 'shapes' / 'shapes-easy': the embedded procedural data;
- a folder laid out images/[split/] + labels/[split/] (+ classes.txt), as `export-data` writes it;
- an ultralytics dataset YAML (data.yaml), read the way ultralytics reads it: `path` (absolute,
  or relative to the YAML's folder, else to the working directory; unset: the YAML's folder),
  `train` / `val` / `test` each a folder of images (searched recursively), a .txt list of image
  paths ('./x' relative to the list's folder) or a list of these, labels found by the
  /images/ -> /labels/ rule; `names` a list or a {0: name, ...} dict, `nc`. A split may instead
  be a COCO entry, {annotations: file.json, images: folder};
- a COCO detection JSON, with its image folder from `--images` (unset: <json folder>/../<name>
  for instances_<name>.json, as COCO is laid out, or <json folder>/images).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from dualhead.detector.data.coco import CocoDataset
from dualhead.detector.data.images import IMAGE_SUFFIXES
from dualhead.detector.data.shapes import ShapesDataset
from dualhead.detector.data.yolo import YoloDataset

EMBEDDED = ("shapes", "shapes-easy")


def read_yaml(path: Path) -> dict:
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"--data {path}: cannot read ({e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ValueError(f"{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(cfg, dict):
        raise ValueError(
            f"--data {path}: a dataset YAML is a mapping (path, train, val, names), got {type(cfg).__name__}"
        )
    return cfg


def yaml_root(cfg: dict, path: Path) -> Path:
    """The dataset root of a YAML: its `path`, absolute or relative to the YAML's folder (else to
    the working directory, as ultralytics does); unset, the YAML's folder."""
    p = cfg.get("path")
    if p in (None, ""):
        return path.parent.resolve()
    if not isinstance(p, str):
        raise ValueError(f"{path}: path: must be a folder name, got {p!r}")
    p = Path(p).expanduser()
    for cand in (p,) if p.is_absolute() else (path.parent / p, p):
        if cand.is_dir():
            return cand.resolve()
    raise ValueError(f"{path}: path: {str(p)!r} is not a folder (relative to {path.parent} or the working directory)")


def yaml_names(cfg: dict, path: Path) -> list[str]:
    names, nc = cfg.get("names"), cfg.get("nc")
    if nc is not None and not (isinstance(nc, int) and nc >= 1):
        raise ValueError(f"{path}: nc: must be an int >= 1, got {nc!r}")
    if names is None:
        if nc is None:
            raise ValueError(f"{path}: needs 'names' (a list, or a dict 0: name, ...) or 'nc'")
        return [f"class{i}" for i in range(nc)]
    if isinstance(names, dict):
        # keys as ints, or strings of ints as a YAML written from JSON has them ('0': person)
        names = {int(k) if isinstance(k, str) and k.strip().isdigit() else k: v for k, v in names.items()}
        if not all(isinstance(k, int) for k in names) or sorted(names) != list(range(len(names))):
            raise ValueError(
                f"{path}: names: the keys of a names dict must be 0..{len(names) - 1}, got {sorted(names, key=str)}"
            )
        names = [names[k] for k in range(len(names))]
    if not isinstance(names, list) or not names:
        raise ValueError(f"{path}: names: must be a non-empty list or dict, got {names!r}")
    if nc is not None and nc != len(names):
        raise ValueError(f"{path}: nc is {nc} but names lists {len(names)} classes")
    return [str(n) for n in names]


def image_list(entry, root: Path, where: str) -> list[Path]:
    """The images of one YAML split entry (a folder searched recursively, a .txt list, or a list of
    these), sorted as ultralytics sorts them: the whole list by path."""
    return sorted(_images_of(entry, root, where), key=str)


def _images_of(entry, root: Path, where: str) -> list[Path]:
    if isinstance(entry, list):
        return [f for e in entry for f in _images_of(e, root, where)]
    if not isinstance(entry, str):
        raise ValueError(f"{where}: expected a folder, a .txt list of images or a list of these, got {entry!r}")
    p = Path(entry).expanduser()
    p = p if p.is_absolute() else root / p
    if p.is_dir():
        return [f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")]
    if p.is_file() and p.suffix == ".txt":
        lines = [ln.strip() for ln in p.read_text(encoding="utf-8-sig").splitlines()]
        files = [p.parent / ln[2:] if ln.startswith("./") else Path(ln) for ln in lines if ln]
        return [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
    raise ValueError(f"{where}: {str(p)!r} is neither a folder of images nor a .txt list of images")


def coco_images_dir(ann: Path) -> Path:
    """COCO's layout: annotations/instances_val2017.json beside val2017/; else <json folder>/images."""
    stem = ann.stem.split("_", 1)[1] if ann.stem.startswith("instances_") else None
    for cand in ([ann.parent.parent / stem] if stem else []) + [ann.parent / "images"]:
        if cand.is_dir():
            return cand
    raise ValueError(f"--data {ann}: give --images, the folder of its images (none found beside it)")


def build_dataset(data: str, split: str, imgsz: int, length: int | None = None, images: str | None = None):
    """The dataset of one split ('train', 'val', 'test') of any --data form (module docstring)."""
    if data in EMBEDDED:
        if images:
            raise ValueError("--images applies to a COCO JSON --data only")
        n = length or (2000 if split == "train" else 200)
        return ShapesDataset(split, n, imgsz) if data == "shapes" else ShapesDataset.easy(split, n, imgsz)
    if length is not None:
        raise ValueError(
            f"--{split}-len applies to the embedded data (shapes, shapes-easy) only; a dataset on disk "
            f"uses all its images ({data!r})"
        )
    path = Path(data).expanduser()
    if path.suffix.lower() == ".json":
        if not path.is_file():
            raise ValueError(f"--data {data!r}: no such COCO JSON file")
        if split != "train":
            print(f"dualhead: --data {path} is one COCO file: {split} uses the same images", file=sys.stderr)
        return CocoDataset(path, Path(images) if images else coco_images_dir(path), imgsz)
    if images:
        raise ValueError("--images applies to a COCO JSON --data only (a YAML names its image folders itself)")
    if path.suffix.lower() in (".yaml", ".yml"):
        if not path.is_file():
            raise ValueError(f"--data {data!r}: no such dataset YAML")
        cfg = read_yaml(path)
        root = yaml_root(cfg, path)
        entry = cfg.get(split)
        if entry in (None, "", []):
            raise ValueError(
                f"{path}: no '{split}:' split (the images to {'train on' if split == 'train' else 'evaluate'})"
            )
        where = f"{path}: {split}"
        if isinstance(entry, dict):
            if set(entry) != {"annotations", "images"} or not all(isinstance(v, str) for v in entry.values()):
                raise ValueError(f"{where}: a COCO split is {{annotations: file.json, images: folder}}, got {entry!r}")
            ann, img = (Path(entry[k]).expanduser() for k in ("annotations", "images"))
            ann, img = (p if p.is_absolute() else root / p for p in (ann, img))
            if not ann.is_file():
                raise ValueError(f"{where}: annotations: no such file {ann}")
            ds = CocoDataset(ann, img, imgsz)
            if ("names" in cfg or "nc" in cfg) and list(ds.names) != yaml_names(cfg, path):
                raise ValueError(
                    f"{where}: the JSON's categories {list(ds.names)} are not the YAML's names {yaml_names(cfg, path)}"
                )
            return ds
        names = yaml_names(cfg, path)
        return YoloDataset.from_files(image_list(entry, root, where), names, imgsz, f"{path} ({split})")
    if path.is_file():
        raise ValueError(
            f"--data {data!r}: a file must be a dataset YAML (.yaml) or a COCO JSON (.json); a folder the "
            "images/ + labels/ layout"
        )
    return YoloDataset(path, split, imgsz)
