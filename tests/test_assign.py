"""dualhead::assign (the fused single and dual assignment) against dualhead.reference (contract §3):
parity, properties, determinism, bad input, fuzzing, the CPU twins of the CUDA-only paths, registration."""

import inspect
import subprocess
import sys

import pytest
import torch
from conftest import CONFIGS, DEVICES, DISTS, fresh_seed, op_settings, settings_layout
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dualhead
from dualhead import _ext
from dualhead.compare import assert_same_targets
from dualhead.synthetic import make_batch

pytestmark = pytest.mark.skipif(not _ext.available(), reason=f"extension not built: {_ext.load_error()!r}")


def op_args(bt, labels, mask, scores2=None, bboxes2=None, o2o=(10, 10), stats=False):
    """Positional arguments of torch.ops.dualhead.assign for a batch: o2m top-10, o2o (topk,
    topk2), alpha 0.5, beta 6 for both, min_side 16, conflict all, CIoU, eps 1e-9."""
    settings = op_settings(o2o=(*o2o, 0.5, 6.0))
    return (
        bt.pd_scores,
        bt.pd_bboxes,
        scores2,
        bboxes2,
        bt.anc_points,
        labels,
        bt.gt_bboxes,
        mask,
        settings,
        stats,
    )


def compare(bt_args, kw, C, device="cpu"):
    args = [t.to(device) for t in bt_args]
    got = dualhead.ops.assign(*args, **kw)
    ref = dualhead.reference.assign(*bt_args, **kw)
    assert_same_targets(ref.to_dense(C), tuple(t.cpu() for t in got.to_dense(C)), what=str(kw))
    return got


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dist_name,dist", DISTS, ids=[d[0] for d in DISTS])
@pytest.mark.parametrize("name,kw", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_kernel_matches_reference(device, name, kw, dist_name, dist):
    seed = fresh_seed()
    bt = make_batch(B=3, C=13, seed=seed, **dist)
    got = compare(bt.args(), kw, 13, device)
    assert got.fg_mask.any(), f"seed {seed}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_kernel_half_inputs(device, dtype):
    bt = make_batch(B=3, C=9, seed=fresh_seed(), dtype=dtype, n_gt=(1, 40))
    compare(bt.args(), dict(topk=10), 9, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("o2o", [dict(o2o_topk=1), dict(o2o_topk=7, o2o_topk2=1), dict(o2m_topk=5, o2o_topk=3, r=1.5)])
@pytest.mark.parametrize("dist_name,dist", DISTS, ids=[d[0] for d in DISTS])
def test_dual_kernel_matches_reference(device, o2o, dist_name, dist):
    bt = make_batch(B=3, C=11, seed=fresh_seed(), **dist)
    s2, b2 = bt.second_head(seed=fresh_seed())
    args = (bt.pd_scores, bt.pd_bboxes, s2, b2) + bt.args()[2:]
    got = dualhead.ops.dual_assign(*[t.to(device) for t in args], **o2o)
    ref = dualhead.reference.dual_assign(*args, **o2o)
    for g, r in ((got.o2m, ref.o2m), (got.o2o, ref.o2o)):
        assert_same_targets(r.to_dense(11), tuple(t.cpu() for t in g.to_dense(11)))
    v = ref.stats.valid
    assert torch.equal(got.stats.pick.cpu(), ref.stats.pick) and torch.equal(got.stats.rank.cpu(), ref.stats.rank)
    assert (got.stats.gap.cpu()[v] - ref.stats.gap[v]).abs().max() < 1e-5
    assert (got.stats.gap.cpu()[~v] == 0).all()


def test_bitwise_deterministic_across_threads_and_runs():
    bt = make_batch(B=6, C=20, seed=fresh_seed(), n_gt=(100, 300), kind="crowded")
    s2, b2 = bt.second_head(seed=1)
    args = (bt.pd_scores, bt.pd_bboxes, s2, b2) + bt.args()[2:]
    old = torch.get_num_threads()
    outs = []
    try:
        for n in (1, 2, 2, 1):
            torch.set_num_threads(n)
            r = dualhead.ops.dual_assign(*args, o2o_topk=7, o2o_topk2=1)
            outs.append(
                [r.o2m.scores, r.o2m.gt_idx, r.o2o.scores, r.o2o.gt_idx, r.o2o.fg_mask, r.stats.gap, r.stats.rank]
            )
    finally:
        torch.set_num_threads(old)
    for o in outs[1:]:
        for x, y in zip(outs[0], o):
            assert torch.equal(x, y)


@pytest.mark.parametrize("device", DEVICES)
# derandomize=False: Hypothesis' CI profile would replay the same examples in every CI run; a
# failure prints its example (the seed argument included) and a @reproduce_failure blob
@settings(
    max_examples=60,
    deadline=None,
    derandomize=False,
    print_blob=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    B=st.integers(1, 3),
    imgsz=st.sampled_from([64, 96, 160, 320]),
    C=st.integers(1, 6),
    n_hi=st.integers(0, 25),
    kind=st.sampled_from(["coco", "tiny", "crowded"]),
    topk=st.integers(1, 15),
    topk2=st.one_of(st.none(), st.integers(1, 15)),
    alpha=st.sampled_from([0.0, 0.5, 1.0, 1.7]),
    beta=st.sampled_from([0.0, 1.0, 2.0, 6.0, 3.3]),
    min_side=st.sampled_from([0.0, 8.0, 16.0, 40.5]),
    conflict=st.sampled_from(["all", "claimants"]),
    iou_type=st.sampled_from(["iou", "giou", "diou", "ciou"]),
    seed=st.integers(0, 2**31 - 1),
    general=st.booleans(),
)
def test_property_kernel_equals_reference(
    device, B, imgsz, C, n_hi, kind, topk, topk2, alpha, beta, min_side, conflict, iou_type, seed, general
):
    bt = make_batch(B=B, imgsz=imgsz, C=C, n_gt=(0, n_hi), kind=kind, seed=seed)
    args = list(bt.args())
    if general:  # arbitrary anchor points: jittered, general scan path
        g = torch.Generator().manual_seed(seed)
        args[2] = args[2] + torch.randn(args[2].shape, generator=g) * 3
    N = args[0].shape[1]
    topk = min(topk, N)
    topk2 = None if topk2 is None else min(topk2, topk)  # HeadSettings: topk2 in [1, topk]
    kw = dict(topk=topk, topk2=topk2, alpha=alpha, beta=beta, min_side=min_side, conflict=conflict, iou_type=iou_type)
    got = dualhead.ops.assign(*[t.to(device) for t in args], **kw)
    ref = dualhead.reference.assign(*args, **kw)
    # beta = 0 or alpha = 0 make many metrics exactly equal (ties); compare loss-relevant targets
    assert_same_targets(ref.to_dense(C), tuple(t.cpu() for t in got.to_dense(C)), what=str(kw))


@pytest.mark.parametrize("device", DEVICES)
def test_empty_inputs(device):
    C = 4
    bt = make_batch(B=2, C=C, seed=0, n_gt=(1, 3), device=device)
    a = list(bt.args())
    z = dualhead.ops.assign(a[0], a[1], a[2], a[3][:, :0], a[4][:, :0], a[5][:, :0])
    assert (z.labels == C).all() and not z.fg_mask.any()
    e = dualhead.ops.assign(a[0][:0], a[1][:0], a[2], a[3][:0], a[4][:0], a[5][:0])
    assert e.fg_mask.shape == (0, a[0].shape[1])
    d = dualhead.ops.dual_assign(a[0], a[1], a[0], a[1], a[2], a[3][:, :0], a[4][:, :0], a[5][:, :0])
    assert d.stats.pick.shape == (2, 0)
    none_real = dualhead.ops.dual_assign(a[0], a[1], a[0], a[1], a[2], a[3], a[4], torch.zeros_like(a[5]))
    assert not none_real.o2m.fg_mask.any() and (none_real.stats.rank == -1).all()
    assert z.fg_mask.device == none_real.o2o.scores.device == a[0].device


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_assign(device):
    bt = make_batch(B=2, C=5, seed=1, n_gt=(1, 6), device=device)
    labels, mask = bt.gt_labels[..., 0].long(), bt.mask_gt[..., 0].bool()
    s2, b2 = (t.to(device) for t in bt.second_head(2))
    torch.library.opcheck(torch.ops.dualhead.assign.default, op_args(bt, labels, mask))
    torch.library.opcheck(torch.ops.dualhead.assign.default, op_args(bt, labels, mask, s2, b2, o2o=(7, 1), stats=True))


def test_torch_compile_fullgraph():
    bt = make_batch(B=2, C=5, seed=2, n_gt=(1, 6))
    labels, mask = bt.gt_labels[..., 0].long(), bt.mask_gt[..., 0].bool()

    def f(s, b, anc, lab, gt, m):
        fg, gi, t, *_ = torch.ops.dualhead.assign(s, b, None, None, anc, lab, gt, m, settings, False)
        return torch.ops.dualhead.to_dense(lab.gather(1, gi[0]), t[0], 5), fg[0]

    settings = op_settings()
    args = (bt.pd_scores, bt.pd_bboxes, bt.anc_points, labels, bt.gt_bboxes, mask)
    got = torch.compile(f, fullgraph=True, backend="aot_eager")(*args)
    ref = f(*args)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])


@pytest.mark.parametrize("device", DEVICES)
def test_kernel_bad_input_messages(device, monkeypatch):
    """Direct torch.ops calls (no Python checks) still fail with a named argument, never crash."""
    monkeypatch.setenv("DUALHEAD_SYNC_CHECKS", "1")  # CUDA: value errors within the call (else deferred)
    bt = make_batch(B=2, C=5, seed=3, n_gt=(2, 6), device=device)
    labels, mask = bt.gt_labels[..., 0].long(), bt.mask_gt[..., 0].bool()
    base = list(op_args(bt, labels, mask))
    cases = [
        (5, labels + 100, "gt_labels must be in"),
        (5, labels.int(), "gt_labels must be int64"),
        (6, bt.gt_bboxes.flip(-1), "gt_bboxes must be xyxy"),
        (6, bt.gt_bboxes * float("nan"), "gt_bboxes must be finite"),
        (
            4,
            bt.anc_points.index_fill(0, torch.tensor([7], device=device), float("inf")),
            r"anc_points must be finite, got \(inf",
        ),
        (4, bt.anc_points.to("meta"), "must be on"),
        (4, bt.anc_points[:-1], "anc_points must be"),
        (1, bt.pd_bboxes[..., :3], "pd_bboxes must be"),
        (8, [1.0, 2.0], r"settings must hold \d+ values \(o2m_topk,"),
    ]
    # each setting, named in the message
    layout = settings_layout()
    bad = dict(
        o2m_topk=(0, "o2m_topk must be in"),
        o2m_topk2=(11, r"o2m_topk2 must be in \[1, o2m_topk=10\]"),
        o2m_beta=(float("nan"), "o2m_beta must be"),
        floor_below=(-1.0, "floor_below must be"),
        floor_to=(float("inf"), "floor_to must be"),
        margin=(-0.5, "margin must be"),
        order=(2, "order must be"),
        conflict=(5, "conflict must be"),
        round_trip=(0.5, "round_trip must be an integer"),
        iou_type=(7, "iou_type must be"),
        eps=(1.0, "eps must be"),
    )
    for name, (v, msg) in bad.items():
        settings = list(base[8])
        settings[layout.index(name)] = float(v)
        cases.append((8, settings, msg))
    no_trip = list(base[8])
    no_trip[layout.index("round_trip")] = 0.0
    cases.append((8, no_trip, "a small-box floor needs round_trip=1"))
    for i, v, msg in cases:
        a = list(base)
        a[i] = v
        with pytest.raises((RuntimeError, ValueError), match=msg):  # data checks: ValueError
            torch.ops.dualhead.assign(*a)
    if device == "cuda":
        torch.cuda.synchronize()  # nothing asynchronous went wrong either


FUZZ = r"""
import sys, torch
import dualhead
g = torch.Generator().manual_seed(int(sys.argv[1]))
dev = sys.argv[2]
def r(*s): return (torch.randn(*s, generator=g) * float(torch.randint(1, 2000, (1,), generator=g))).to(dev)
vals = [float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 1e38]
for it in range(150):
    B, N, C, M = (int(torch.randint(0, 4, (1,), generator=g)), int(torch.randint(0, 60, (1,), generator=g)),
                  int(torch.randint(0, 5, (1,), generator=g)), int(torch.randint(0, 6, (1,), generator=g)))
    s, b, anc, gt = r(B, N, C).sigmoid(), r(B, N, 4), r(N, 2), r(B, M, 4).abs()
    lab = torch.randint(-1, C + 2, (B, M), generator=g).to(dev)
    mask = (torch.rand(B, M, generator=g) < 0.7).to(dev)
    for t in (s, b, gt):
        if t.numel() and torch.rand(1, generator=g) < 0.4:
            t.view(-1)[torch.randint(0, t.numel(), (3,), generator=g).to(dev)] = vals[int(torch.randint(0, 6, (1,), generator=g))]
    topk = [int(torch.randint(-1, N + 3, (1,), generator=g)) for _ in range(2)]
    side = float(torch.randint(-2, 40, (1,), generator=g))
    conv = dict(order=int(torch.randint(0, 2, (1,), generator=g)), conflict=int(torch.randint(1, 3, (1,), generator=g)),
                floor_below=side, floor_to=side)
    settings = op_settings((*topk, 0.5, 6.0), (*topk, 0.5, 6.0), **conv)
    args = [s, b, None, None, anc, lab, gt, mask, settings, False]
    if torch.rand(1, generator=g) < 0.3:
        args[2], args[3], args[9] = s, b, True
        args[8] = op_settings((*topk, 0.5, 6.0), (*topk, 1.0, 2.0), **conv)
    try:
        out = torch.ops.dualhead.assign(*args)
        assert torch.isfinite(out[2]).all() and torch.isfinite(out[5]).all()  # target scores, gaps
    except (RuntimeError, ValueError):  # TORCH_CHECK / TORCH_CHECK_VALUE
        pass
    try:
        dualhead.ops.assign(s, b, anc, lab, gt, mask, topk=max(topk[0], 1))
    except ValueError:
        pass
if dev == "cuda":
    torch.cuda.synchronize()  # an asynchronous fault would surface here
print("ok")
"""


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("run", range(2))
def test_fuzz_never_crashes(run, device):
    """Random shapes, NaN/inf values, bad top-k, in a subprocess: errors are Python exceptions,
    never a crash (nor, on CUDA, an illegal memory access). The seed is drawn inside the test
    (fresh every run, printed on failure), so collection is the same in every pytest-xdist worker."""
    seed = fresh_seed()
    script = "import torch\n" + inspect.getsource(op_settings) + inspect.getsource(settings_layout) + FUZZ
    r = subprocess.run([sys.executable, "-c", script, str(seed), device], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "ok" in r.stdout, f"seed {seed}: rc={r.returncode}\n{r.stderr[-3000:]}"


def _twin_bitwise_equal(monkeypatch, env, args, kw):
    """The dual assignment with the CPU twin switch `env` off and on: every output bitwise equal.
    Returns the twin's result."""
    monkeypatch.delenv(env, raising=False)
    plain = dualhead.ops.dual_assign(*args, **kw)
    monkeypatch.setenv(env, "1")
    twin = dualhead.ops.dual_assign(*args, **kw)
    for a, b in ((plain.o2m, twin.o2m), (plain.o2o, twin.o2o)):
        assert torch.equal(a.fg_mask, b.fg_mask) and torch.equal(a.gt_idx, b.gt_idx) and torch.equal(a.scores, b.scores)
    for f in ("pick", "rank", "gap"):
        assert torch.equal(getattr(plain.stats, f), getattr(twin.stats, f))
    return twin


@pytest.mark.parametrize(
    "o2o",
    [
        dict(o2o_topk=7, o2o_topk2=1),
        dict(o2m_topk=5, o2o_topk=3),
        dict(o2m_topk=32, o2o_topk=1),
        dict(o2m_topk=13, conflict="claimants"),
    ],
)
@pytest.mark.parametrize("grid", [True, False], ids=["grid", "general"])
def test_tiles_cpu_twin(monkeypatch, o2o, grid):
    """CUDA's warp-per-row path (one candidate cell per lane, 32-cell tiles merged into the
    top-k lists by rank) run on CPU, lane after lane, via DUALHEAD_CPU_TILES=1: bitwise equal to
    the sequential pass and to the reference, statistics included (o2m_topk=5 keeps the row's own
    rank list; 32 fills a list's capacity; a whole-image box takes hundreds of tiles)."""
    bt = make_batch(B=2, C=7, imgsz=320, n_gt=(5, 40), seed=fresh_seed())
    bt.gt_bboxes[0, 0] = torch.tensor([1.0, 2.0, 318.0, 317.0])
    bt.mask_gt[0, 0] = True
    anc = bt.anc_points if grid else bt.anc_points.flip(0)  # reversed: no grid recognised
    s1, b1 = (bt.pd_scores, bt.pd_bboxes) if grid else (bt.pd_scores.flip(1), bt.pd_bboxes.flip(1))
    s2, b2 = bt.second_head(seed=fresh_seed()) if grid else (s1.clone(), b1.clone())
    args = (s1, b1, s2, b2, anc, bt.gt_labels, bt.gt_bboxes, bt.mask_gt)
    tiles = _twin_bitwise_equal(monkeypatch, "DUALHEAD_CPU_TILES", args, o2o)
    ref = dualhead.reference.dual_assign(*args, **o2o)
    assert_same_targets(ref.o2m.to_dense(7), tiles.o2m.to_dense(7))
    assert_same_targets(ref.o2o.to_dense(7), tiles.o2o.to_dense(7))
    assert torch.equal(tiles.stats.rank, ref.stats.rank)


@pytest.mark.parametrize(
    "o2o", [dict(o2o_topk=7, o2o_topk2=1), dict(o2m_topk=9, o2o_topk=4, o2o_topk2=2), dict(conflict="claimants")]
)
@pytest.mark.parametrize("dist_name,dist", [DISTS[0], DISTS[2]], ids=["coco", "crowded"])
def test_resolve_order_cpu_twin(monkeypatch, o2o, dist_name, dist):
    """CUDA's resolve kernel runs each phase's anchors and ground truths on many threads, so the
    member slices fill in any order (and the statistics walk them per ground truth). With
    DUALHEAD_CPU_SCRAMBLE=1 the CPU visits every phase's loop in a scrambled order: the outputs
    must stay bitwise equal (finish_gt's sort, order-free atomics), and equal the reference."""
    bt = make_batch(B=3, C=11, seed=fresh_seed(), **dist)
    s2, b2 = bt.second_head(seed=fresh_seed())
    args = (bt.pd_scores, bt.pd_bboxes, s2, b2, bt.anc_points, bt.gt_labels, bt.gt_bboxes, bt.mask_gt)
    scrambled = _twin_bitwise_equal(monkeypatch, "DUALHEAD_CPU_SCRAMBLE", args, o2o)
    ref = dualhead.reference.dual_assign(*args, **o2o)
    assert_same_targets(ref.o2o.to_dense(11), scrambled.o2o.to_dense(11))
    assert torch.equal(scrambled.stats.pick, ref.stats.pick)


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device):
    """Strided views (a permuted (B, C, N) score tensor as ultralytics' heads produce, boxes
    sliced out of a wider tensor, transposed anchors, every other ground-truth slot) give the
    bitwise results of their contiguous copies."""
    bt = make_batch(B=3, C=9, seed=fresh_seed(), n_gt=(2, 30), device=device)
    s2, b2 = (t.to(device) for t in bt.second_head(seed=fresh_seed()))
    a = (bt.pd_scores, bt.pd_bboxes, s2, b2, bt.anc_points, bt.gt_labels, bt.gt_bboxes, bt.mask_gt)
    strided = (
        bt.pd_scores.transpose(1, 2).contiguous().transpose(1, 2),
        torch.cat((bt.pd_bboxes, bt.pd_bboxes), -1)[..., :4],
        s2.transpose(1, 2).contiguous().transpose(1, 2),
        b2.transpose(0, 1).contiguous().transpose(0, 1),
        bt.anc_points.t().contiguous().t(),
        torch.stack((bt.gt_labels, bt.gt_labels), 2)[:, :, 0],
        torch.stack((bt.gt_bboxes, bt.gt_bboxes), 2)[:, :, 0],
        torch.stack((bt.mask_gt, bt.mask_gt), 2)[:, :, 0],
    )
    assert not any(t.is_contiguous() for t in strided)
    for x, y in zip(a, strided):
        assert torch.equal(x, y)
    want = dualhead.ops.dual_assign(*a, o2o_topk=7, o2o_topk2=1)
    got = dualhead.ops.dual_assign(*strided, o2o_topk=7, o2o_topk2=1)
    for w, g in ((want.o2m, got.o2m), (want.o2o, got.o2o)):
        for f in ("fg_mask", "gt_idx", "scores", "labels", "bboxes"):
            assert torch.equal(getattr(w, f), getattr(g, f)), f
    assert torch.equal(want.stats.gap, got.stats.gap)


def test_back_to_back_calls_share_no_stale_state():
    """The CPU kernel reuses per-thread buffers across calls (workspace, the per-anchor atan
    cache of CIoU): a call with other predictions of the same shape must not see the previous
    call's values."""
    bt = make_batch(B=2, C=7, seed=fresh_seed(), n_gt=(5, 40))
    a = list(bt.args())
    first = dualhead.ops.assign(*a)
    a[1] = a[1] * torch.tensor([1.0, 1.0, 1.3, 0.8])  # other aspect ratios, same shape
    second = dualhead.ops.assign(*a)
    ref = dualhead.reference.assign(*a)
    assert_same_targets(ref.to_dense(7), second.to_dense(7))
    assert not torch.equal(first.scores, second.scores)


def test_reference_switch(monkeypatch):
    """DUALHEAD_REFERENCE=1 (debugging) sends the functional API to the pure-torch reference."""
    bt = make_batch(B=2, C=5, seed=4, n_gt=(1, 6))
    calls = []
    real = dualhead.reference.assign
    monkeypatch.setattr(dualhead.reference, "assign", lambda *a, **k: calls.append(1) or real(*a, **k))
    dualhead.ops.assign(*bt.args())
    assert calls == []
    monkeypatch.setenv("DUALHEAD_REFERENCE", "1")
    dualhead.ops.assign(*bt.args())
    assert calls == [1]
