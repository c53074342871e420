"""CUDA-only checks (issue #4), collected everywhere and skipped without a GPU: the CUDA kernels
against the CPU kernels, every CUDA-only path (warp-split rows at any threshold, the resolve
kernel's block scan over several tiles, side streams), determinism across runs, and a short AMP
training run. The tests that hold for every device (reference parity, property tests, fp16/bf16,
empty and bad inputs, strided inputs, opcheck, torch.compile, fuzzing) are parametrised over
devices in their own files; the CPU runs this file's logic through the CPU twins
(test_kernels.py: *_cpu_twin)."""

import pytest
import torch

import dualhead
from dualhead import _ext
from dualhead.compare import assert_same_targets
from dualhead.synthetic import make_batch
from test_kernels import DISTS, fresh_seed

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not _ext.available(), reason=f"extension not built: {_ext.load_error()!r}")]

DUALS = [dict(o2o_topk=7, o2o_topk2=1), dict(o2o_topk=1), dict(o2m_topk=5, o2o_topk=4, o2o_topk2=2, conflict="claimants")]


def _dual_args(seed, **dist):
    bt = make_batch(B=3, C=11, seed=seed, **dist)
    s2, b2 = bt.second_head(seed=seed + 1)
    return (bt.pd_scores, bt.pd_bboxes, s2, b2) + bt.args()[2:]


def _outputs(r):
    return [r.o2m.fg_mask, r.o2m.gt_idx, r.o2m.scores, r.o2o.fg_mask, r.o2o.gt_idx, r.o2o.scores,
            r.stats.pick, r.stats.rank, r.stats.gap]


def _cuda(args):
    return [t.cuda() if isinstance(t, torch.Tensor) else t for t in args]


@pytest.mark.parametrize("o2o", DUALS)
@pytest.mark.parametrize("dist_name,dist", DISTS, ids=[d[0] for d in DISTS])
def test_cuda_kernel_equals_cpu_kernel(o2o, dist_name, dist):
    """Same shared math on both devices (nvcc --fmad=false); atanf/powf may differ by an ulp, so
    compare tie-aware (scores within 1e-5, identical positives on scored anchors)."""
    args = _dual_args(fresh_seed(), **dist)
    cpu = dualhead.ops.dual_assign(*args, **o2o)
    gpu = dualhead.ops.dual_assign(*_cuda(args), **o2o)
    assert gpu.o2m.scores.is_cuda
    for c, g in ((cpu.o2m, gpu.o2m), (cpu.o2o, gpu.o2o)):
        assert_same_targets(c.to_dense(11), tuple(t.cpu() for t in g.to_dense(11)))
    assert torch.equal(cpu.stats.pick, gpu.stats.pick.cpu()) and torch.equal(cpu.stats.rank, gpu.stats.rank.cpu())
    torch.testing.assert_close(gpu.stats.gap.cpu(), cpu.stats.gap, rtol=0, atol=1e-5)


@pytest.mark.parametrize("dist_name,dist", [DISTS[0], DISTS[3]], ids=["coco", "hires"])
def test_cuda_split_threshold_changes_nothing(monkeypatch, dist_name, dist):
    """Rows walked by one thread or by a warp (cells dealt to 32 lanes, lists merged): bitwise
    identical on the same device, whatever the threshold; a box over the whole image included."""
    args = _dual_args(fresh_seed(), **dist)
    args[6][:, 0] = torch.tensor([2.0, 3.0, args[4][:, 0].max().item(), args[4][:, 1].max().item()])
    args[7][:, 0] = True
    outs = []
    for cells in ("0", "32", "1000000000"):
        monkeypatch.setenv("DUALHEAD_CUDA_SPLIT_CELLS", cells)
        outs.append(_outputs(dualhead.ops.dual_assign(*_cuda(args), o2o_topk=7, o2o_topk2=1)))
    for o in outs[1:]:
        for x, y in zip(outs[0], o):
            assert torch.equal(x, y)
    ref = dualhead.reference.dual_assign(*args, o2o_topk=7, o2o_topk2=1)
    got = dualhead.ops.dual_assign(*_cuda(args), o2o_topk=7, o2o_topk2=1)
    assert_same_targets(ref.o2o.to_dense(11), tuple(t.cpu() for t in got.o2o.to_dense(11)))


def test_cuda_bitwise_deterministic_across_runs():
    """Atomics only on packed integer keys and counters; member slices sorted before use."""
    args = _cuda(_dual_args(fresh_seed(), imgsz=640, n_gt=(200, 400), kind="crowded"))  # M > 256: scan tiles
    outs = [_outputs(dualhead.ops.dual_assign(*args, o2o_topk=7, o2o_topk2=1)) for _ in range(4)]
    for o in outs[1:]:
        for x, y in zip(outs[0], o):
            assert torch.equal(x, y)


def test_cuda_side_stream_and_device_guard():
    """Kernels run on the current stream: inputs made on a side stream are read after they exist."""
    args = _cuda(_dual_args(fresh_seed(), imgsz=640, n_gt=(5, 40)))
    want = _outputs(dualhead.ops.dual_assign(*args))
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fresh = [t.clone() if isinstance(t, torch.Tensor) else t for t in args]
        got = _outputs(dualhead.ops.dual_assign(*fresh))
    side.synchronize()
    for x, y in zip(want, got):
        assert torch.equal(x, y)


def test_cuda_training_step_amp(tmp_path):
    """The trainer on CUDA (AMP fp16 + GradScaler, the CUDA assign kernel): a short run learns
    nothing in particular but must produce finite losses and loadable checkpoints."""
    pytest.importorskip("pycocotools", reason="mAP needs pycocotools (benchmarks/gpu_wheels.sh fetches it)")
    from dualhead.train import TrainConfig, train
    from dualhead.train.checkpoint import load_checkpoint

    m = train(TrainConfig(data="shapes-easy", imgsz=128, train_len=64, val_len=16, batch=16, workers=0, epochs=1,
                          device="cuda", amp="on", out=str(tmp_path)))
    assert all(v == v for v in m.values() if isinstance(v, float))  # no NaN
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck is not None
