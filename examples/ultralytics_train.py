"""Train an ultralytics YOLOv10n / YOLO11n for a few iterations with and without dualhead's
assigner underneath (one line: dh_ultralytics.patch()).

    python examples/ultralytics_train.py path/to/data.yaml [--model yolov10n.yaml] [--epochs 1]

data.yaml is an ultralytics dataset file (path, train, val, names). The models are built from
their YAML (random init), so nothing is downloaded. Prints the per-batch training losses of both
runs; with the same seed they agree to float rounding (the assignment is exact).
"""

from __future__ import annotations

import argparse
import contextlib


def train_losses(
    data: str,
    model: str = "yolov10n.yaml",
    patch: bool = False,
    epochs: int = 1,
    imgsz: int = 64,
    batch: int = 4,
    project: str = "runs/ultralytics",
    name: str | None = None,
):
    """Train and return (per-batch loss vectors [box, cls, dfl] as lists, the assigner class used)."""
    from ultralytics import YOLO

    from dualhead.integrations import ultralytics as dh_ultralytics

    losses, assigner = [], {}

    def on_batch_end(trainer):
        items = trainer.loss_items  # {name: tensor} in ultralytics 8.4, a tensor before
        losses.append([float(v) for v in (items.values() if isinstance(items, dict) else items)])
        assigner["class"] = type(dh_ultralytics.loss_heads(trainer.model.criterion)[0].assigner)

    yolo = YOLO(model)
    yolo.add_callback("on_train_batch_end", on_batch_end)
    ctx = dh_ultralytics.patched() if patch else contextlib.nullcontext()
    with ctx:
        yolo.train(
            data=data,
            epochs=epochs,
            imgsz=imgsz,
            batch=batch,
            device="cpu",
            workers=0,
            seed=0,
            deterministic=True,
            amp=False,
            plots=False,
            val=False,
            exist_ok=True,
            verbose=False,
            project=project,
            name=name or ("patched" if patch else "ultralytics"),
            mosaic=0.0,
        )
    return losses, assigner.get("class")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data")
    p.add_argument("--model", default="yolov10n.yaml")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--imgsz", type=int, default=64)
    p.add_argument("--batch", type=int, default=4)
    a = p.parse_args()
    for patch in (False, True):
        losses, cls = train_losses(a.data, a.model, patch, a.epochs, a.imgsz, a.batch)
        print(f"{'dualhead' if patch else 'ultralytics'} assigner ({cls.__module__}.{cls.__name__}):")
        for i, items in enumerate(losses):
            print(f"  batch {i}: box {items[0]:.5f} cls {items[1]:.5f} dfl {items[2]:.5f}")


if __name__ == "__main__":
    main()
