"""contract §4 for what a user touches first: every mistake in CLI options, dataset folders,
checkpoints, predict sources is one clear line on stderr naming the option, file:line or value,
a non-zero exit code, never a Python traceback, and found before any work starts; Ctrl-C stops
cleanly; resume is exact (results file and checkpoint always agree, workers or not)."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_detector import _write_yolo

import dualhead
from dualhead.detector.train import TrainConfig, train
from dualhead.detector.train.checkpoint import load_checkpoint
from dualhead.synthetic import make_batch

TINY = [
    "--data",
    "shapes-easy",
    "--imgsz",
    "64",
    "--train-len",
    "32",
    "--val-len",
    "8",
    "--batch",
    "16",
    "--workers",
    "0",
    "--epochs",
    "1",
]
DIR = ["--batch", "4", "--workers", "0", "--epochs", "1"]  # with a --data directory


def cli(*args, timeout=300, cwd=None, env=None):
    r = subprocess.run(
        [sys.executable, "-m", "dualhead.detector.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    return r


def fails(*args, match, **kw):
    """The CLI refuses args with exit status 2 and one line naming the problem. In this process
    (each subprocess pays the imports again) unless cwd or env are given; a traceback would be an
    exception here. The subprocess form, Python's own output included, is checked by cli() users
    and test_train.py's test_cli_bad_input_is_a_message_not_a_traceback."""
    if kw:
        r = cli(*args, **kw)
        code, out, err = r.returncode, r.stdout, r.stderr
    else:
        import contextlib
        import io

        from dualhead.detector.cli import main

        o, e = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
            code = main([str(a) for a in args])
        out, err = o.getvalue(), e.getvalue()
    assert code == 2, (code, out[-2000:], err[-2000:])
    err = err.strip()
    assert match in err, err
    lines = err.splitlines()
    if "error: dataset " in err:  # the dataset check: one report, a line per problem
        assert "Traceback" not in err and lines[-1].startswith("fix these and run again"), err
    else:
        assert len(lines) == 1 or "dualhead train: error" in lines[-1], err  # one line
    return err


@pytest.fixture
def yolo(tmp_path):
    root = tmp_path / "data"
    _write_yolo(root, n=6, imgsz=64)
    return root


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    r = cli("train", *TINY, "--out", out)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


# --- options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,match",
    [
        (["--device", "gpu"], "--device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
        (["--imgsz", "100"], "--imgsz must be a multiple of 32, at least 32 (e.g. 256, 640), got 100"),
        (["--epochs", "0"], "--epochs must be an int >= 1, got 0"),
        (["--o2o-topk", "3", "--o2o-topk2", "5"], "--o2o-topk2 must be an int in [1, o2o_topk=3], got 5"),
        (["--lr", "-1"], "--lr must be a number > 0, got -1.0"),
        (["--o2o-alpha", "0.5"], "--o2o-alpha must be given together with --o2o-beta"),
    ],
)
def test_bad_options(tmp_path, args, match):
    fails("train", *TINY, "--out", tmp_path, *args, match=match)


def test_argparse_type_errors_name_the_option():
    r = cli("train", "--epochs", "many")
    assert r.returncode == 2 and "--epochs" in r.stderr and "invalid int value: 'many'" in r.stderr
    r = cli("train", "--mode", "both")
    assert r.returncode == 2 and "invalid choice: 'both'" in r.stderr and "dual" in r.stderr


def test_help_has_text_and_default_for_every_option():
    out = cli("train", "--help").stdout
    from dataclasses import fields

    for f in fields(TrainConfig):
        assert f"--{f.name.replace('_', '-')}" in out
    assert out.count("(default:") == len(fields(TrainConfig))
    assert "{dual,o2m,o2o}" in out and "{auto,on,off}" in out
    assert cli("--version").stdout.strip() == f"dualhead {dualhead.__version__}"


def test_unwritable_out_is_found_before_training(tmp_path, monkeypatch):
    """Refused before the data is read or a model built: either would raise here first."""
    from dualhead.detector.train import trainer

    def started(*a, **k):
        raise AssertionError("work started before --out was checked")

    monkeypatch.setattr(trainer, "build_dataset", started)
    monkeypatch.setattr(trainer.TrainStep, "build", started)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    fails("train", *TINY, "--out", blocker / "run", match="--out")


# --- datasets ------------------------------------------------------------------------------


@pytest.mark.parametrize("with_ultralytics", [False, True])
def test_corrupt_image_named_before_training(tmp_path, yolo, with_ultralytics):
    """Also in a process that imported ultralytics: it replaces PIL's Image.open, whose failure
    on an unidentified file then becomes an ImportError (pi_heif)."""
    if with_ultralytics:
        pytest.importorskip("ultralytics.utils.patches")
    (yolo / "images" / "im3.png").write_bytes(b"\x89PNG not really")
    err = fails("train", *DIR, "--data", yolo, "--imgsz", "64", "--out", tmp_path / "r", match="im3.png")
    assert "not a readable image" in err


def test_corrupt_image_in_a_worker_is_still_one_line(tmp_path, yolo):
    """An image that passes the up-front check but fails to decode in a data-loader worker (a
    truncated file): the worker's wrapped traceback becomes the original one-line message."""
    p = yolo / "images" / "im2.png"
    p.write_bytes(p.read_bytes()[:-200])  # truncated: verify() may pass, decoding fails
    r = cli("train", *DIR, "--workers", "1", "--data", yolo, "--imgsz", "64", "--out", tmp_path / "r")
    assert r.returncode == 2 and "im2.png" in r.stderr and "Original Traceback" not in r.stderr


def test_label_errors_name_file_and_line(tmp_path, yolo):
    (yolo / "labels" / "im1.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n")
    fails(
        "train",
        *DIR,
        "--data",
        yolo,
        "--imgsz",
        "64",
        "--out",
        tmp_path / "r",
        match=f"{yolo / 'labels' / 'im1.txt'}:2: expected 'class cx cy w h'",
    )


def test_class_outside_classes_txt(tmp_path, yolo):
    (yolo / "classes.txt").write_text("circle\nrectangle\ntriangle\ncross\nring\n")
    (yolo / "labels" / "im4.txt").write_text("1 0.5 0.5 0.2 0.2\n\n7 0.5 0.5 0.2 0.2\n")
    fails(
        "train",
        *DIR,
        "--data",
        yolo,
        "--imgsz",
        "64",
        "--out",
        tmp_path / "r",
        match="im4.txt:3: class 7 is not one of the 5 classes (0..4)",
    )


def test_no_labels_folder_is_an_error(tmp_path, yolo):
    for f in (yolo / "labels").iterdir():
        f.unlink()
    (yolo / "labels").rmdir()
    fails("train", *DIR, "--data", yolo, "--imgsz", "64", "--out", tmp_path / "r", match="no labels folder")


def test_train_len_with_a_directory(tmp_path, yolo):
    fails(
        "train",
        "--data",
        yolo,
        "--imgsz",
        "64",
        "--train-len",
        "10",
        "--out",
        tmp_path / "r",
        match="--train-len applies to the embedded data",
    )


def test_missing_data_folder(tmp_path):
    fails("train", "--data", tmp_path / "nope", "--out", tmp_path / "r", match="--data must be 'shapes'")


# --- checkpoints and resume ----------------------------------------------------------------


def test_resume_without_checkpoint(tmp_path):
    fails("train", *TINY, "--resume", "--out", tmp_path, match="--resume: no checkpoint")


def test_resume_with_another_model_shape(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    err = fails(
        "train", *TINY, "--epochs", "2", "--width", "0.25", "--resume", "--out", run, match="holds a different model"
    )
    assert "width 0.125 -> 0.25" in err and "size mismatch" not in err


def test_resume_of_a_finished_run_says_so(tiny_run):
    r = cli("train", *TINY, "--resume", "--out", tiny_run)
    assert r.returncode == 0 and "has finished all 1 epochs" in r.stdout and "nothing to resume" in r.stdout


def _rows(path):
    with open(path, newline="") as f:
        return [r["epoch"] for r in csv.DictReader(f)]


def _weights(path):
    return load_checkpoint(path)["model"]


@pytest.mark.parametrize("workers", [0, 1])
def test_resume_reproduces_the_uninterrupted_run(tmp_path, workers):
    """Two epochs in one go, or one epoch then a resume (a new process state, the loader built
    anew): bitwise the same weights, with or without data-loader workers."""
    kw = dict(data="shapes-easy", imgsz=64, train_len=32, val_len=8, batch=16, workers=workers, epochs=2)
    train(TrainConfig(**kw, out=str(tmp_path / "whole")))
    train(TrainConfig(**kw, out=str(tmp_path / "split"), time_limit=1e-6))  # stops after epoch 1
    assert _rows(tmp_path / "split" / "results.csv") == ["1"]
    train(TrainConfig(**kw, out=str(tmp_path / "split"), resume=True))
    a, b = _weights(tmp_path / "whole" / "last.pt"), _weights(tmp_path / "split" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _rows(tmp_path / "split" / "results.csv") == ["1", "2"]


@pytest.mark.parametrize("stage", ["last.pt", "best.pt", "results.csv", "plot"])
def test_kill_at_each_stage_of_the_epoch_end(tmp_path, monkeypatch, stage):
    """A kill after each file of the epoch end (and a kill inside a save, which leaves a temporary
    file): the resumed run's results.csv holds each epoch once, the checkpoint's epochs exactly,
    and no temporary file is left."""
    from dualhead.detector.train import checkpoint as ck
    from dualhead.detector.train import trainer

    kw = dict(data="shapes-easy", imgsz=64, train_len=32, val_len=8, batch=16, workers=0)
    train(TrainConfig(**kw, epochs=1, out=str(tmp_path)))
    real_save, real_csv, real_plot = ck.save_atomic, trainer.write_csv, trainer.plot_results

    class Killed(BaseException):
        pass

    def kill_after(fn, name):
        def f(*a, **k):
            fn(*a, **k)
            if name == stage:
                raise Killed

        return f

    monkeypatch.setattr(trainer, "save_atomic", lambda obj, path: kill_after(real_save, Path(path).name)(obj, path))
    monkeypatch.setattr(trainer, "write_csv", kill_after(real_csv, "results.csv"))
    monkeypatch.setattr(trainer, "plot_results", kill_after(real_plot, "plot"))
    real_end = trainer.end_epoch
    monkeypatch.setattr(trainer, "end_epoch", lambda ckpt, m, is_best, out: real_end(ckpt, m, True, out))
    with pytest.raises(Killed):  # epoch 2 ends, the process dies after `stage`
        train(TrainConfig(**kw, epochs=3, out=str(tmp_path), resume=True))
    (tmp_path / ".last.pt.killed.tmp").write_bytes(b"")  # what a kill inside torch.save leaves
    monkeypatch.undo()
    saved = load_checkpoint(tmp_path / "last.pt")["epoch"] + 1
    train(TrainConfig(**kw, epochs=3, out=str(tmp_path), resume=True))
    assert _rows(tmp_path / "results.csv") == ["1", "2", "3"]
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2 and saved in (1, 2)
    assert not list(tmp_path.glob(".*.tmp"))


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path):
    args = [
        sys.executable,
        "-m",
        "dualhead.detector.cli",
        "train",
        *TINY[:-2],
        "--epochs",
        "50",
        "--out",
        str(tmp_path),
    ]
    # A child inherits an ignored SIGINT (a shell's background job, some CI runners), and Python
    # then installs no KeyboardInterrupt handler: give the child the default disposition, as a
    # terminal's foreground process has.
    p = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 240
    while not (tmp_path / "last.pt").exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, (out[-1000:], err[-2000:])
    assert "Traceback" not in err and f"dualhead train --resume --out {tmp_path}" in err


def test_ctrl_c_while_the_images_are_drawn(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while the prerender pool
    draws the training images: the pool stops, one line, no traceback from it or its workers."""
    args = [sys.executable, "-m", "dualhead.detector.cli", "train", "--train-len", "20000", "--out", str(tmp_path)]
    p = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )

    def children():  # of every thread of the process
        n = 0
        for t in Path(f"/proc/{p.pid}/task").iterdir():
            try:
                n += len(t.joinpath("children").read_text().split())
            except OSError:  # a thread that just ended
                pass
        return n

    deadline = time.time() + 60
    while p.poll() is None and time.time() < deadline and children() < 2:
        time.sleep(0.2)  # until the pool's processes run
    assert p.poll() is None, p.communicate()
    time.sleep(1)
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, (out[-1000:], err[-2000:])
    # one line: no traceback, nor a pool worker's "Process ForkPoolWorker-N:" header
    assert [line for line in err.splitlines() if line.strip()] == [
        "dualhead train: interrupted before the first epoch finished: nothing was saved"
    ], err[-2000:]


# --- predict -------------------------------------------------------------------------------


def test_predict_weights_that_are_not_a_checkpoint(tmp_path, yolo):
    fails(
        "predict",
        "--weights",
        yolo / "images" / "im0.png",
        "--out",
        tmp_path / "p",
        match="is not a dualhead checkpoint",
    )
    fails("predict", "--weights", tmp_path / "none.pt", "--out", tmp_path / "p", match="(not found)")


def test_predict_bad_device_and_options(tiny_run, tmp_path):
    fails("predict", "--weights", tiny_run / "last.pt", "--device", "tpu", "--out", tmp_path, match="--device must be")
    fails("predict", "--weights", tiny_run / "last.pt", "--conf", "2", "--out", tmp_path, match="--conf must be")


def test_predict_on_originals_skips_bad_images_never_overwrites(tiny_run, tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    Image.fromarray(np.full((90, 200, 3), 200, np.uint8)).save(src / "wide.png")
    Image.fromarray(np.full((300, 120, 3), 90, np.uint8)).save(src / "contact_sheet.png")
    (src / "broken.jpg").write_bytes(b"not an image")
    before = {f.name: f.read_bytes() for f in src.iterdir()}
    r = cli("predict", "--weights", tiny_run / "last.pt", "--source", src, "--out", src, "--conf", "0.0")
    assert r.returncode == 0, r.stderr
    assert "skipped" in r.stderr and "broken.jpg" in r.stderr
    assert {f.name: f.read_bytes() for f in src.iterdir() if f.name in before} == before  # inputs untouched
    with Image.open(src / "wide_pred.png") as im:
        assert im.size == (200, 90)  # drawn at the original resolution
    with Image.open(src / "contact_sheet_pred.png") as im:
        assert im.size == (120, 300)


def test_predicted_boxes_are_mapped_back_and_clipped():
    from dualhead.detector.predict import unletterbox

    dets = torch.tensor([[-10.0, 20.0, 100.0, 70.0, 0.9, 1.0]])
    got = unletterbox(dets, (0.5, 0, 16), 200, 90)  # 200x90 image letterboxed to 100: scale 0.5, pad y 16
    assert got[0, :4].tolist() == [0.0, 8.0, 200.0, 90.0]


# --- the library ---------------------------------------------------------------------------


def test_assigner_rejects_wrong_num_classes():
    bt = make_batch(B=2, C=5, seed=0, n_gt=(1, 4))
    with pytest.raises(ValueError, match="pd_scores has 5 classes .* num_classes=2"):
        dualhead.TaskAlignedAssigner(num_classes=2)(*bt.args())
    with pytest.raises(ValueError, match="o2m_scores has 5 classes"):
        dualhead.DualAssigner(num_classes=3)(bt.pd_scores, bt.pd_bboxes, bt.pd_scores, bt.pd_bboxes, *bt.args()[2:])


def test_info_from_an_unbuilt_checkout(tmp_path):
    """A source tree without the compiled extension: info says so and how to build it."""
    import shutil

    root = Path(dualhead.__file__).parent
    shutil.copytree(root, tmp_path / "dualhead", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    r = cli("info", cwd=tmp_path, env=env)
    assert r.returncode == 0 and "NOT built" in r.stdout and "pip install -e ." in r.stdout
    assert "circular" not in r.stdout


def test_ctrl_c_during_a_checkpoint_write_is_taken_after_it(tmp_path, monkeypatch):
    """SIGINT in the middle of torch.save: the file is written whole, then KeyboardInterrupt (not
    the RuntimeError torch's writer would make of it)."""
    import torch

    from dualhead.detector.train import checkpoint as ck

    real_save = torch.save

    def interrupted_save(obj, f):
        os.kill(os.getpid(), signal.SIGINT)
        real_save(obj, f)

    monkeypatch.setattr(torch, "save", interrupted_save)
    # Python's own Ctrl-C handler, also where this runs as a background job (SIGINT ignored there)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            ck.save_atomic({"x": torch.arange(10)}, tmp_path / "last.pt")
    finally:
        signal.signal(signal.SIGINT, outer)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.equal(torch.load(tmp_path / "last.pt")["x"], torch.arange(10))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
