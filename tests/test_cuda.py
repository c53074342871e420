"""CUDA-only checks (issue #4), collected everywhere and skipped without a GPU: the CUDA kernels
against the CPU kernels and the reference, every CUDA-only path (warp-split rows at any
threshold, the resolve kernel's block scan over several tiles, side streams), determinism,
empty and bad inputs, opcheck, torch.compile, fuzzing, and a short AMP training run.

The CPU tests run the same logic through the CPU twins (test_kernels.py: *_cpu_twin)."""

import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dualhead
from dualhead import _ext
from dualhead.compare import assert_same_targets
from dualhead.synthetic import make_batch
from test_kernels import DISTS, FUZZ, fresh_seed

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


def test_cuda_empty_inputs():
    C = 4
    a = [t.cuda() for t in make_batch(B=2, C=C, seed=0, n_gt=(1, 3)).args()]
    z = dualhead.ops.assign(a[0], a[1], a[2], a[3][:, :0], a[4][:, :0], a[5][:, :0])
    assert z.fg_mask.is_cuda and (z.labels == C).all() and not z.fg_mask.any()
    e = dualhead.ops.assign(a[0][:0], a[1][:0], a[2], a[3][:0], a[4][:0], a[5][:0])
    assert e.fg_mask.shape == (0, a[0].shape[1])
    d = dualhead.ops.dual_assign(a[0], a[1], a[0], a[1], a[2], a[3][:, :0], a[4][:, :0], a[5][:, :0])
    assert d.stats.pick.shape == (2, 0)
    none_real = dualhead.ops.dual_assign(a[0], a[1], a[0], a[1], a[2], a[3], a[4], torch.zeros_like(a[5]))
    assert not none_real.o2m.fg_mask.any() and (none_real.stats.rank == -1).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    B=st.integers(1, 3), imgsz=st.sampled_from([64, 160, 320]), C=st.integers(1, 6), n_hi=st.integers(0, 40),
    kind=st.sampled_from(["coco", "tiny", "crowded"]), topk=st.integers(1, 15),
    topk2=st.one_of(st.none(), st.integers(1, 15)), alpha=st.sampled_from([0.0, 0.5, 1.7]),
    beta=st.sampled_from([0.0, 1.0, 6.0, 3.3]), min_side=st.sampled_from([0.0, 16.0]),
    conflict=st.sampled_from(["all", "claimants"]), iou_type=st.sampled_from(["iou", "giou", "ciou"]),
    seed=st.integers(0, 2**31 - 1), general=st.booleans(),
)
def test_cuda_property_equals_reference(B, imgsz, C, n_hi, kind, topk, topk2, alpha, beta, min_side, conflict,
                                        iou_type, seed, general):
    bt = make_batch(B=B, imgsz=imgsz, C=C, n_gt=(0, n_hi), kind=kind, seed=seed)
    args = list(bt.args())
    if general:
        args[2] = args[2] + torch.randn(args[2].shape, generator=torch.Generator().manual_seed(seed)) * 3
    N = args[0].shape[1]
    kw = dict(topk=min(topk, N), topk2=None if topk2 is None else min(topk2, N), alpha=alpha, beta=beta,
              min_side=min_side, conflict=conflict, iou_type=iou_type)
    got = dualhead.ops.assign(*_cuda(args), **kw)
    ref = dualhead.reference.assign(*args, **kw)
    assert_same_targets(ref.to_dense(C), tuple(t.cpu() for t in got.to_dense(C)), what=str(kw))


def test_cuda_opcheck():
    bt = make_batch(B=2, C=5, seed=1, n_gt=(1, 6), device="cuda")
    labels, mask = bt.gt_labels[..., 0].long(), bt.mask_gt[..., 0].bool()
    s2, b2 = bt.second_head(2)
    s2, b2 = s2.cuda(), b2.cuda()
    torch.library.opcheck(torch.ops.dualhead.assign.default,
                          (bt.pd_scores, bt.pd_bboxes, s2, b2, bt.anc_points, labels, bt.gt_bboxes, mask,
                           [10, 10, 7, 1], [0.5, 6.0, 0.5, 6.0], 16.0, 0, 3, 1e-9, True))
    a = dualhead.ops.assign(*bt.args())
    torch.library.opcheck(torch.ops.dualhead.to_dense.default, (a.labels, a.scores, 5))
    torch.library.opcheck(torch.ops.dualhead.box_iou.default, (bt.gt_bboxes[0], bt.pd_bboxes[0, :9], 3))


def test_cuda_compile_assigner_and_loss():
    """torch.compile (inductor, fullgraph) on CUDA around the custom ops: same results as eager."""
    b = make_batch(B=2, imgsz=128, C=4, n_gt=(1, 6), seed=3, device="cuda")
    s2, b2 = (t.cuda() for t in b.second_head(4))
    dual = dualhead.DualAssigner(num_classes=4, o2o_topk=7, o2o_topk2=1)
    args = (b.pd_scores, b.pd_bboxes, s2, b2, b.anc_points, b.gt_labels, b.gt_bboxes, b.mask_gt)

    def f(*a):
        return _outputs(dual(*a))

    torch._dynamo.reset()
    for g, w in zip(torch.compile(f, fullgraph=True)(*args), f(*args)):
        assert torch.equal(g, w)


def test_cuda_bad_input_messages():
    bt = make_batch(B=2, C=5, seed=3, n_gt=(2, 6), device="cuda")
    labels, mask = bt.gt_labels[..., 0].long(), bt.mask_gt[..., 0].bool()
    base = [bt.pd_scores, bt.pd_bboxes, None, None, bt.anc_points, labels, bt.gt_bboxes, mask, [10, 10], [0.5, 6.0],
            16.0, 0, 3, 1e-9, False]
    for i, v, msg in [(5, labels + 100, "gt_labels must be in"), (6, bt.gt_bboxes.flip(-1), "gt_bboxes must be xyxy"),
                      (4, bt.anc_points.cpu(), "must be on"), (8, [0, 10], "topk must be in")]:
        a = list(base)
        a[i] = v
        with pytest.raises((RuntimeError, ValueError), match=msg):
            torch.ops.dualhead.assign(*a)
    with pytest.raises(ValueError, match="gt_labels must be in"):
        dualhead.ops.assign(bt.pd_scores, bt.pd_bboxes, bt.anc_points, bt.gt_labels + 100, bt.gt_bboxes, bt.mask_gt)
    torch.cuda.synchronize()  # nothing asynchronous went wrong either


def test_cuda_fuzz_never_crashes():
    """Random shapes, NaN/inf values, bad top-k on CUDA tensors, in a subprocess: errors are
    Python exceptions, never a crash or an illegal memory access."""
    code = FUZZ.replace("r(B, N, C).sigmoid(), r(B, N, 4), r(N, 2), r(B, M, 4).abs()",
                        "r(B, N, C).sigmoid().cuda(), r(B, N, 4).cuda(), r(N, 2).cuda(), r(B, M, 4).abs().cuda()")
    code = code.replace("mask = torch.rand(B, M, generator=g) < 0.7", "mask = (torch.rand(B, M, generator=g) < 0.7).cuda()")
    code = code.replace("lab = torch.randint(-1, C + 2, (B, M), generator=g)",
                        "lab = torch.randint(-1, C + 2, (B, M), generator=g).cuda()")
    code = code.replace('print("ok")', 'torch.cuda.synchronize()\nprint("ok")')
    assert code.count(".cuda()") == 6
    seed = fresh_seed()
    r = subprocess.run([sys.executable, "-c", code, str(seed)], capture_output=True, text=True, timeout=600,
                       env={**__import__("os").environ, "DUALHEAD_CUDA_ASSIGN": "1"})
    assert r.returncode == 0 and "ok" in r.stdout, f"seed {seed}: rc={r.returncode}\n{r.stderr[-3000:]}"


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
