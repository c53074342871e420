"""The ultralytics release matrix (`make compat-ultralytics`): for each release, installed with
--no-deps into its own folder (its dependencies are those of the pinned 8.4.190 in .venv), the
loss with dualhead's patch against ultralytics' own, on the same model and random batches:

  - YOLOv10n (the end-to-end loss: one-to-many + one-to-one heads), YOLOv8n / YOLO11n
    (v8DetectionLoss), YOLO26n where the release has it: relative loss difference over 3 batches,
    and the gradient of a head weight;
  - two SGD steps from the same weights with and without the patch: the per-step losses.

A release that patch() refuses is reported as refused, together with the difference the patch
would have made (patch(force=True)), which is why it is refused.

    python benchmarks/compat_ultralytics.py [RELEASE ...]      # default: the matrix below
    python benchmarks/compat_ultralytics.py /path/to/yolov10     # a checkout whose ultralytics/ is a fork
    python benchmarks/compat_ultralytics.py --child DIR         # (internal) one release
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

RELEASES = ["8.0.100", "8.1.34", "8.2.103", "8.3.100", "8.3.253", "8.4.0", "8.4.127", "8.4.128", "8.4.150", "8.4.190"]
MODELS = ["yolov10n.yaml", "yolov8n.yaml", "yolo11n.yaml", "yolo26n.yaml"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child() -> dict:
    """Runs with the release under test first on sys.path."""
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    import ultralytics
    from ultralytics.nn.tasks import DetectionModel

    try:
        from ultralytics.cfg import get_cfg
    except ImportError:  # 8.0.x
        from ultralytics.yolo.cfg import get_cfg

    def criterion(model):
        if hasattr(model, "init_criterion"):
            return model.init_criterion()
        from ultralytics.yolo.v8.detect.train import Loss  # 8.0.x: the trainer's loss

        return Loss(model)

    from dualhead.integrations import ultralytics as dhu

    def batch(g, B=2, imgsz=320, n=14, nc=80):
        return {
            "img": torch.rand(B, 3, imgsz, imgsz, generator=g),
            "batch_idx": torch.randint(0, B, (n,), generator=g).sort().values.float(),
            "cls": torch.randint(0, nc, (n, 1), generator=g).float(),
            "bboxes": torch.cat(
                (torch.rand(n, 2, generator=g) * 0.8 + 0.1, torch.rand(n, 2, generator=g) * 0.3 + 0.01), 1
            ),
        }

    def rel(a, b):
        return float(((a - b).abs() / b.abs().clamp_min(1e-12)).max())

    out = {"release": ultralytics.__version__, "file": ultralytics.__file__, "models": {}}
    try:
        dhu.check_release()
        out["status"] = "supported"
    except dhu.UnsupportedRelease as e:
        out["status"], out["refusal"] = "refused", str(e)
    for cfg in MODELS:
        try:
            torch.manual_seed(0)
            m = DetectionModel(cfg, nc=80, verbose=False)
        except Exception as e:  # the release has no such model
            out["models"][cfg] = {"absent": f"{type(e).__name__}: {str(e)[:80]}"}
            continue
        m.args = get_cfg()
        m.train()
        own = criterion(m)
        dhu.patch(force=True)
        try:
            ours = criterion(m)
        finally:
            dhu.unpatch()
        g = torch.Generator().manual_seed(1)
        loss_diff, grad_diff = 0.0, 0.0
        head_w = next(p for n, p in m.model[-1].named_parameters() if n.startswith("cv3") and p.requires_grad)
        for _ in range(3):
            b = batch(g)
            preds = m(b["img"])
            (lu, _), (ld, _) = own(preds, b), ours(preds, b)
            loss_diff = max(loss_diff, rel(ld, lu))
            gu = torch.autograd.grad(lu.sum(), head_w, retain_graph=True)[0]
            gd = torch.autograd.grad(ld.sum(), head_w)[0]
            grad_diff = max(grad_diff, float((gd - gu).abs().max() / gu.abs().max().clamp_min(1e-12)))
        # two SGD steps from the same weights, each with its own criterion
        import copy

        steps = []
        for patched in (False, True):
            torch.manual_seed(0)
            mm = copy.deepcopy(m)
            if patched:
                dhu.patch(force=True)
            try:
                crit = criterion(mm)
            finally:
                dhu.unpatch()
            opt = torch.optim.SGD(mm.parameters(), lr=0.01)
            g2 = torch.Generator().manual_seed(2)
            losses = []
            for _ in range(2):
                b = batch(g2)
                loss, _ = crit(mm(b["img"]), b)
                opt.zero_grad()
                loss.sum().backward()
                opt.step()
                losses.append(loss.detach())
            steps.append(losses)
        step_diff = max(rel(d, u) for u, d in zip(*steps))
        out["models"][cfg] = {
            "loss_rel_diff": loss_diff,
            "grad_rel_diff": grad_diff,
            "train_step_rel_diff": step_diff,
            "loss": type(own).__name__,
        }
    return out


def _older_than_8_2(v: str, target: str) -> bool:
    """8.0, 8.1 and the yolov10 fork import modules that 8.4.190's dependencies do not bring (pkg_resources, pandas, huggingface_hub)."""
    if not os.path.isdir(v):
        return tuple(int(x) for x in v.split(".")[:2]) < (8, 2)
    with open(os.path.join(target, "ultralytics", "__init__.py")) as f:
        return any(line.startswith('__version__ = "8.0.') or line.startswith('__version__ = "8.1.') for line in f)


def _old_deps(cache: str) -> str:
    folder = os.path.join(cache, "_deps_8.0_8.1")
    if not os.path.isdir(os.path.join(folder, "huggingface_hub")):
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--target", folder]
        subprocess.run([*pip, "pandas", "setuptools<70", "huggingface_hub"], check=True)
    return folder


def run(releases) -> int:
    cache = os.environ.get("COMPAT_ULTRALYTICS_DIR", "/tmp/dualhead-ultralytics")
    rows, status = [], 0
    for v in releases:
        t0 = time.time()
        target = v if os.path.isdir(v) else os.path.join(cache, v)
        if not os.path.isdir(os.path.join(target, "ultralytics")):
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--no-deps",
                    "--no-compile",
                    "--target",
                    target,
                    f"ultralytics=={v}",
                ],
                check=True,
            )
        path = [target, ROOT]
        if _older_than_8_2(v, target):
            path.insert(1, _old_deps(cache))
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([*path, os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "2",
            "YOLO_VERBOSE": "False",
            "YOLO_OFFLINE": "1",
        }
        r = subprocess.run([sys.executable, __file__, "--child"], capture_output=True, text=True, env=env, timeout=1200)
        if r.returncode != 0:
            rows.append({"release": v, "status": "error", "error": r.stderr.strip().splitlines()[-1:]})
            status = 1
            print(f"{v}: error\n{r.stderr[-2000:]}", flush=True)
            continue
        res = json.loads(r.stdout.strip().splitlines()[-1])
        res["seconds"] = round(time.time() - t0)
        rows.append(res)
        present = {k: m for k, m in res["models"].items() if "absent" not in m}
        worst = max((max(m["loss_rel_diff"], m["train_step_rel_diff"]) for m in present.values()), default=0.0)
        exact = worst <= 1e-5
        if res["status"] == "supported" and not exact:
            status = 1  # a supported release that is silently different: the bug this matrix exists for
        res["verdict"] = (
            ("exact" if exact else "DIFFERENT")
            if res["status"] == "supported"
            else (f"refused (would differ by {worst:.1e})" if not exact else "refused (no difference seen)")
        )
        print(
            f"{v}: {res['verdict']}  "
            + "  ".join(f"{k.split('.')[0]} {m.get('loss_rel_diff', 0):.1e}" for k, m in present.items()),
            flush=True,
        )
    with open(os.path.join(cache, "matrix.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print("\n| ultralytics | verdict | YOLOv10n | YOLOv8n | YOLO11n | YOLO26n |\n|---|---|---|---|---|---|")
    for r in rows:
        cells = []
        for cfg in MODELS:
            m = r.get("models", {}).get(cfg, {})
            cells.append(
                "—" if not m or "absent" in m else f"{m['loss_rel_diff']:.1e} / {m['train_step_rel_diff']:.1e}"
            )
        print(f"| {r['release']} | {r.get('verdict', r['status'])} | " + " | ".join(cells) + " |")
    print("\n(loss relative difference over 3 batches / over 2 SGD steps, patch against ultralytics' own)")
    return status


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child()))
    else:
        sys.exit(run(sys.argv[1:] or RELEASES))
