"""Training end to end: learning happens, resume continues, DDP on two gloo processes, predict."""

import csv
import math
import os
import subprocess
import sys

import pytest
import torch

from dualhead.detector.train import TrainConfig, train
from dualhead.detector.train.checkpoint import load_checkpoint

EASY = dict(data="shapes-easy", imgsz=128, val_len=48, batch=16, workers=0, eval_max_det=50)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    m = train(TrainConfig(**EASY, train_len=768, epochs=4, out=str(out)))
    return out, m


@pytest.mark.slow
def test_training_learns(trained):
    out, m = trained
    rows = _rows(out / "results.csv")
    assert len(rows) == 4
    first = sum(float(rows[0][k]) for k in rows[0] if k.startswith(("o2m_", "o2o_")))
    last = sum(float(rows[-1][k]) for k in rows[-1] if k.startswith(("o2m_", "o2o_")))
    assert last < 0.5 * first, (first, last)
    # the easy subset: few large objects; NMS-free o2o head well above chance after ~190 steps
    assert m["map50"] > 0.25, m
    assert 0 <= m["top1"] <= m["top5"] <= m["top10"] <= 1 and m["gap"] >= 0
    # the inference head's false-positive breakdown (shares summing to 1 when there are any)
    fp = [float(rows[-1][f"fp_{k}"]) for k in ("dup", "cls", "loc", "bkg")]
    assert all(0 <= v <= 1 for v in fp) and sum(fp) == pytest.approx(1, abs=1e-4)
    assert 0 < float(rows[-1]["prec"]) <= 1 and 0 < float(rows[-1]["rec"]) <= 1
    assert float(rows[-1]["map_o2o_nms"]) >= 0
    for f in ("last.pt", "best.pt", "results.csv", "results.png"):
        assert (out / f).is_file()
    from dualhead.detector.train.plots import loss_columns, read_csv

    losses = [f"{h}_{k}" for h in ("o2m", "o2o") for k in ("box", "cls", "dfl")]
    assert loss_columns(read_csv(out / "results.csv")) == losses  # not fp_cls


@pytest.mark.slow
def test_predict_writes_pictures(trained, tmp_path):
    from dualhead.detector.predict import detect, predict
    from dualhead.detector.train.checkpoint import load_model

    out, _ = trained
    paths = predict(out / "best.pt", "shapes", tmp_path, limit=3)
    assert sorted(p.name for p in paths) == [
        "contact_sheet.png",
        "shapes_val_000_pred.png",
        "shapes_val_001_pred.png",
        "shapes_val_002_pred.png",
    ]
    model, names = load_model(out / "best.pt")
    assert names == ("circle", "rectangle")
    dets = detect(model, torch.rand(2, 3, 128, 128), conf=0.0, max_det=7)
    assert [d.shape for d in dets] == [(7, 6), (7, 6)]
    with pytest.raises(ValueError, match="source"):
        predict(out / "best.pt", tmp_path / "nothing-here", tmp_path)


def test_resume_continues(tmp_path):
    cfg = TrainConfig(**EASY, train_len=32, epochs=1, out=str(tmp_path), ema=True)
    train(cfg)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 0
    cfg.epochs, cfg.resume = 2, True
    train(cfg)
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["epoch"] == 1 and ck["ema"]["updates"] == 4  # two epochs of two steps
    assert [r["epoch"] for r in _rows(tmp_path / "results.csv")] == ["1", "2"]


@pytest.mark.slow
def test_single_head_modes_and_yolo_directory(tmp_path):
    from test_detector import _write_yolo

    _write_yolo(tmp_path / "data", n=8, imgsz=64)
    for mode in ("o2m", "o2o"):
        m = train(
            TrainConfig(
                data=str(tmp_path / "data"), imgsz=64, batch=4, epochs=1, workers=0, mode=mode, out=str(tmp_path / mode)
            )
        )
        assert m["epoch"] == 1 and "map" in m and ("top1" not in m)


def _one_loss(cfg, monkeypatch):
    """TrainStep.build(cfg)'s model, loss and optimiser on one batch: (step, heads the library
    call received, loss, items, the backbone's gradient (L1) from the o2o branch's loss alone)."""
    import dualhead.ops
    from dualhead.detector.train.step import TrainStep

    seen = {}
    real = dualhead.ops.dual_assign

    def spy(*a, **kw):
        seen["heads"] = kw["heads"]
        return real(*a, **kw)

    monkeypatch.setattr(dualhead.ops, "dual_assign", spy)
    torch.manual_seed(0)
    step = TrainStep.build(cfg.validate(), 3, torch.device("cpu"), total_iters=10)
    model = step.model.train()
    out, feats = model(torch.rand(2, 3, 64, 64))
    anchors, strides = model.head.anchors(feats)
    gb = torch.tensor([[[8.0, 8.0, 40.0, 40.0], [20.0, 10.0, 60.0, 50.0]], [[4.0, 30.0, 30.0, 62.0], [0, 0, 0, 0]]])
    gl, gm = torch.tensor([[0, 2], [1, 0]]), torch.tensor([[True, True], [True, False]])
    loss, items, _ = step.criterion(out, anchors, strides, gl, gb, gm)
    model.zero_grad()
    vec = step.criterion({"o2o": out["o2o"]}, anchors, strides, gl, gb, gm)[0]
    vec.backward(retain_graph=True)
    grads = [p.grad.abs().sum() for p in model.backbone.parameters() if p.grad is not None]
    return step, seen["heads"], loss, items, float(sum(grads)) if grads else 0.0


def test_o2o_options_reach_the_library_the_loss_and_the_model(monkeypatch):
    """TrainConfig's o2o_alpha / o2o_beta reach the assignment call, o2o_gain the loss's weighting,
    o2o_detach the model's o2o branch, o2o_lr the optimiser; the defaults are the consistent,
    detached YOLOv10 setting."""
    base = TrainConfig(**EASY, train_len=32, epochs=1, out="unused")
    step, heads, loss, items, grad = _one_loss(base, monkeypatch)
    o2m, o2o = heads
    assert (o2m.alpha, o2m.beta, o2o.alpha, o2o.beta) == (0.5, 6.0, 0.5, 6.0) and (o2o.topk, o2o.kept) == (7, 1)
    assert step.model.head.detach_o2o is True and grad == 0.0  # the o2o loss does not train the backbone
    fast = {id(p) for g in step.opt.param_groups if g["initial_lr"] == 3.0 * base.lr for p in g["params"]}
    assert base.o2o_lr == 3.0 and fast == {id(p) for p in step.model.head.heads["o2o"].parameters()}
    total = sum(float(v) for v in items.values())
    assert float(loss.detach()) == pytest.approx(2 * total, rel=1e-6)  # x batch size 2, equal weights, gain 1

    cfg = TrainConfig(
        **EASY,
        train_len=32,
        epochs=1,
        out="unused",
        o2o_alpha=0.25,
        o2o_beta=3.0,
        o2o_gain=2.5,
        o2o_detach=False,
        o2o_lr=1.0,
    )
    step, heads, loss, items, grad = _one_loss(cfg, monkeypatch)
    o2m, o2o = heads
    assert (o2m.alpha, o2m.beta, o2o.alpha, o2o.beta) == (0.5, 6.0, 0.25, 3.0)
    assert step.model.head.detach_o2o is False and grad > 0
    assert {g["initial_lr"] for g in step.opt.param_groups} == {cfg.lr}
    o2m_sum = sum(float(v) for k, v in items.items() if k.startswith("o2m"))
    o2o_sum = sum(float(v) for k, v in items.items() if k.startswith("o2o"))
    assert float(loss.detach()) == pytest.approx(2 * (o2m_sum + 2.5 * o2o_sum), rel=1e-6)


@pytest.mark.slow
def test_o2o_knobs_train(tmp_path):
    m = train(
        TrainConfig(**EASY, train_len=32, epochs=1, out=str(tmp_path), o2o_lr=3.0, o2o_gain=2.0, o2o_detach=False)
    )
    assert m["epoch"] == 1 and "map" in m


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(mode="both"), "mode"),
        (dict(imgsz=100), "imgsz"),
        (dict(epochs=0), "epochs"),
        (dict(o2o_alpha=0.5), "o2o-alpha"),
        (dict(data="/nonexistent/dir"), "YOLO-format"),
        (dict(o2o_lr=0.0), "--o2o-lr must be a number > 0"),
        (dict(o2o_gain=-1.0), "--o2o-gain must be a number > 0"),
    ],
)
def test_bad_config(kw, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        train(TrainConfig(**{**EASY, "out": str(tmp_path), **kw}))


def test_cli_bad_input_is_a_message_not_a_traceback():
    r = subprocess.run(
        [sys.executable, "-m", "dualhead.detector.cli", "train", "--imgsz", "100"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "--imgsz must be a multiple of 32, at least 32" in r.stderr and "100" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_ddp_two_gloo_processes(tmp_path):
    """torchrun with two CPU processes (gloo): both ranks train, rank 0 evaluates and saves."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "dualhead.detector.cli",
        "train",
        "--data",
        "shapes-easy",
        "--imgsz",
        "64",
        "--train-len",
        "32",
        "--val-len",
        "8",
        "--epochs",
        "2",
        "--batch",
        "8",
        "--workers",
        "0",
        "--out",
        str(tmp_path),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "2 process(es)" in r.stdout
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["epoch"] == 1 and ck["ema"]["updates"] == 8  # 16 images per rank, 4 per step: 4 steps x 2 epochs
    assert len(_rows(tmp_path / "results.csv")) == 2


@pytest.mark.slow
def test_amp_on_cpu_bf16(tmp_path):
    """amp='on' on CPU: bf16 autocast through the model, the loss and the assignment kernel (bf16
    scores), scaler disabled; finite losses and a checkpoint that resumes. (fp16 + GradScaler:
    tests/test_cuda.py on a GPU.)"""
    cfg = TrainConfig(**EASY, train_len=32, epochs=1, amp="on", out=str(tmp_path))
    m = train(cfg)
    assert all(torch.isfinite(torch.tensor(float(v))) for k, v in m.items() if k.startswith(("o2m_", "o2o_")))
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["epoch"] == 0 and "scaler" in ck  # 0-based index of the last finished epoch
    m2 = train(TrainConfig(**EASY, train_len=32, epochs=2, amp="on", out=str(tmp_path), resume=True))
    assert m2["epoch"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("channels_last", [True, False])
def test_memory_format_option(tmp_path, channels_last):
    """--channels-last trains NHWC (the convolution weights in that layout), the default NCHW;
    either checkpoint loads into an ordinary Detector for predict."""
    from dualhead.detector.train.checkpoint import load_model

    assert not TrainConfig().channels_last  # the default
    m = train(TrainConfig(**EASY, train_len=32, epochs=1, channels_last=channels_last, out=str(tmp_path)))
    assert m["epoch"] == 1 and m["img_s"] > 0 and 0 <= m["data_wait"] <= 1
    w = load_checkpoint(tmp_path / "last.pt")["model"]
    nhwc = [
        t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
        for t in w.values()
        if t.dim() == 4 and t.shape[1] > 1
    ]
    assert any(nhwc) if channels_last else not any(nhwc)
    model, _ = load_model(tmp_path / "last.pt")
    assert model(torch.rand(1, 3, 128, 128))["o2o"][0].shape[0] == 1


def test_default_data_workers():
    """--workers unset: on CPU none for data in memory, 1 for a directory (the model needs the cores),
    several on a GPU machine; a given value is kept."""
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert TrainConfig().loader_workers(cpu) == 1 and TrainConfig().loader_workers(cpu, in_memory=True) == 0
    assert TrainConfig(workers=2).loader_workers(cpu, in_memory=True) == 2
    assert TrainConfig(workers=0).loader_workers(gpu) == 0
    n = TrainConfig().loader_workers(gpu)
    assert 1 <= n <= 8 and n == max(1, min(8, (os.cpu_count() or 2) - 1))
    assert TrainConfig().loader_workers(gpu, world=64) == 1


@pytest.mark.slow
def test_compile_option(tmp_path):
    """--compile: the model's training forward through torch.compile (a tiny model: the compile
    itself takes most of this test); it trains, the eager model is what is saved and evaluated."""
    cfg = TrainConfig(
        data="shapes-easy",
        imgsz=64,
        width=0.0625,
        train_len=16,
        val_len=8,
        batch=8,
        workers=0,
        epochs=1,
        eval_max_det=20,
        compile=True,
        out=str(tmp_path),
    )
    m = train(cfg)
    assert m["epoch"] == 1 and all(math.isfinite(m[k]) for k in m if k.startswith(("o2m_", "o2o_")))
    assert not any(k.startswith("_orig_mod") for k in load_checkpoint(tmp_path / "last.pt")["model"])
