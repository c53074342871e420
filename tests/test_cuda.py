"""CUDA-only checks (issue #4), collected everywhere and skipped without a GPU: the CUDA kernels
against the CPU kernels, every CUDA-only path (warp-per-row tiles and the thread-per-row fallback,
the image kernel's block scan over several tiles, side streams), determinism across runs, and a short AMP
training run. The tests that hold for every device (reference parity, property tests, fp16/bf16,
empty and bad inputs, strided inputs, opcheck, torch.compile, fuzzing) are parametrised over
devices in their own files; the CPU runs this file's logic through the CPU twins
(test_assign.py: *_cpu_twin)."""

import pytest
import torch

import dualhead
from dualhead import _ext
from dualhead.compare import assert_same_targets
from dualhead.synthetic import make_batch
from conftest import DISTS, fresh_seed

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
@pytest.mark.parametrize("grid", [True, False], ids=["grid", "general"])
def test_cuda_tiles_and_fallback(dist_name, dist, grid):
    """The warp-per-row tile kernel and the thread-per-row fallback (a topk above 32) agree with
    the CPU's sequential pass, a box over the whole image included (hundreds of tiles)."""
    args = list(_dual_args(fresh_seed(), **dist))
    args[6][:, 0] = torch.tensor([2.0, 3.0, args[4][:, 0].max().item(), args[4][:, 1].max().item()])
    args[7][:, 0] = True
    if not grid:  # anchors and predictions reversed: no grid recognised, every row scans all anchors
        args[0], args[1], args[2], args[3] = (t.flip(1) for t in args[:4])
        args[4] = args[4].flip(0)
    for kw in (dict(o2o_topk=7, o2o_topk2=1), dict(o2m_topk=40, o2o_topk=33, o2o_topk2=1)):
        cpu = dualhead.ops.dual_assign(*args, **kw)
        gpu = dualhead.ops.dual_assign(*_cuda(args), **kw)
        for c, g in ((cpu.o2m, gpu.o2m), (cpu.o2o, gpu.o2o)):
            assert_same_targets(c.to_dense(11), tuple(t.cpu() for t in g.to_dense(11)))
        assert torch.equal(cpu.stats.rank, gpu.stats.rank.cpu())


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


def _bad_label(args, value):
    a = list(args)
    a[5] = a[5].clone()
    a[5][0, 0] = value
    a[7] = a[7].clone()
    a[7][0, 0] = True
    return a


def test_cuda_no_host_sync_after_warm_up(monkeypatch):
    """The hot path never waits for the GPU: value checks run on the device, the anchor grid
    comes from a cache verified on the device (torch.cuda.set_sync_debug_mode raises on any
    synchronising call)."""
    monkeypatch.delenv("DUALHEAD_SYNC_CHECKS", raising=False)
    args = _cuda(_dual_args(fresh_seed(), imgsz=640, n_gt=(5, 40)))
    want = _outputs(dualhead.ops.dual_assign(*args, o2o_topk=7, o2o_topk2=1))  # warm-up: grid recognised once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        got = dualhead.ops.dual_assign(*args, o2o_topk=7, o2o_topk2=1)
        single = dualhead.ops.assign(*[args[i] for i in (0, 1, 4, 5, 6, 7)], topk=10)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for x, y in zip(want, _outputs(got)):
        assert torch.equal(x, y)
    assert single.fg_mask.any()


def test_cuda_value_errors_surface_at_the_next_call(monkeypatch):
    """Without DUALHEAD_SYNC_CHECKS a bad label does not stop its own call (no sync): its row is
    left out, nothing is read out of bounds, and the ValueError naming gt_labels and the value
    comes from dualhead.ops.check_errors() or the next call on the device; then all is clear."""
    monkeypatch.delenv("DUALHEAD_SYNC_CHECKS", raising=False)
    args = _cuda(_dual_args(fresh_seed(), imgsz=640, n_gt=(5, 40)))
    good = dualhead.ops.dual_assign(*args)
    bad = _bad_label(args, 11)  # C = 11: out of range
    out = dualhead.ops.dual_assign(*bad)
    torch.cuda.synchronize()
    on_bad = out.o2m.fg_mask[0] & (out.o2m.gt_idx[0] == 0)  # the rejected row supervises nothing
    assert (out.o2m.scores[0][on_bad] == 0).all()
    with pytest.raises(ValueError, match=r"gt_labels must be in \[0, C=11\).*got 11 \(image 0, slot 0\).*earlier"):
        dualhead.ops.check_errors()
    dualhead.ops.check_errors()  # cleared
    dualhead.ops.dual_assign(*_bad_label(args, -3))
    torch.cuda.synchronize()
    with pytest.raises(ValueError, match=r"gt_labels.*got -3.*earlier dualhead assign call"):
        dualhead.ops.dual_assign(*args)
    again = dualhead.ops.dual_assign(*args)
    for x, y in zip(_outputs(good), _outputs(again)):
        assert torch.equal(x, y)
    monkeypatch.setenv("DUALHEAD_SYNC_CHECKS", "1")
    with pytest.raises(ValueError, match=r"gt_labels.*got 11"):
        dualhead.ops.dual_assign(*bad)


def test_cuda_grid_cache_follows_the_anchors():
    """Two anchor layouts with the same N (640x320 and 320x640 images): the cached grid of the
    first is verified on the device against the second, found wrong (that call takes the general
    scan: same results), and recognised again for the call after."""
    from dualhead.nn.head import make_anchors

    g = torch.Generator().manual_seed(fresh_seed())
    for h, w in ((640, 320), (320, 640), (320, 640), (640, 320)):
        pts, st = make_anchors([(h // s, w // s) for s in (8, 16, 32)], (8, 16, 32))
        anc = pts * st
        N, M = anc.shape[0], 12
        assert torch.ops.dualhead.anchor_grid(anc).shape[0] == 3
        xy = torch.rand(2, M, 2, generator=g) * torch.tensor([w * 0.8, h * 0.8])
        wh = 8 + torch.rand(2, M, 2, generator=g) * 120
        gt = torch.cat([xy, xy + wh], -1)
        pred = (torch.cat([anc - 12, anc + 12], 1) + torch.randn(2, N, 4, generator=g) * 4).contiguous()
        args = (torch.rand(2, N, 5, generator=g), pred, anc, torch.randint(0, 5, (2, M), generator=g), gt,
                torch.rand(2, M, generator=g) < 0.8)
        cpu = dualhead.ops.assign(*args, topk=10)
        gpu = dualhead.ops.assign(*_cuda(args), topk=10)
        assert_same_targets(cpu.to_dense(5), tuple(t.cpu() for t in gpu.to_dense(5)))


def test_cuda_graph_capture_and_reduce_overhead():
    """The assignment is capturable in a CUDA graph (after a warm-up) and replays on new
    predictions written into the captured inputs; torch.compile(mode='reduce-overhead') of a
    DualAssigner, which builds on graphs, gives the eager results."""
    args = _cuda(_dual_args(fresh_seed(), imgsz=640, n_gt=(5, 40)))

    def f():
        r = dualhead.ops.dual_assign(*args, o2o_topk=7, o2o_topk2=1)
        return _outputs(r)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            f()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = f()
    fresh = _cuda(_dual_args(fresh_seed(), imgsz=640, n_gt=(5, 40)))
    for i in (0, 1, 2, 3):  # new predictions of both heads, same ground truths
        args[i].copy_(fresh[i])
    graph.replay()
    torch.cuda.synchronize()
    for x, y in zip(f(), captured):
        assert torch.equal(x, y)

    dual = dualhead.DualAssigner(num_classes=11, o2o_topk=7, o2o_topk2=1)

    def step(*a):
        r = dual(*a)
        return r.o2m.fg_mask, r.o2m.scores, r.o2o.fg_mask, r.o2o.scores

    compiled = torch.compile(step, mode="reduce-overhead", fullgraph=True)
    for _ in range(3):  # records, then replays the graph
        got = compiled(*args)
    for x, y in zip(step(*args), got):
        assert torch.equal(x, y)
