"""The trainer's step (dualhead.detector.train.step): its speed-ups change no result on CPU."""

import copy
import resource
import sys

import pytest
import torch

from dualhead.detector.data import Augment, DetectionSet, ShapesDataset, collate
from dualhead.detector.train import TrainConfig
from dualhead.detector.train.step import TrainStep, param_groups


def _batches(n, imgsz=64, batch=4):
    ds = DetectionSet(ShapesDataset("train", n * batch, imgsz, max_objects=4), Augment(), seed=0)
    return [collate([ds[(0, k * batch + i)] for i in range(batch)]) for k in range(n)]


def _assert_same_state(fast, slow):
    """Every weight and buffer, EMA entry and AdamW moment of two TrainSteps equal."""
    for (k, a), (_, b) in zip(fast.model.state_dict().items(), slow.model.state_dict().items()):
        assert torch.equal(a, b), k
    for (k, a), (_, b) in zip(fast.ema.module.state_dict().items(), slow.ema.module.state_dict().items()):
        assert torch.equal(a, b), k
    for sa, sb in zip(fast.opt.state.values(), slow.opt.state.values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])


def test_cpu_step_is_bitwise_the_per_tensor_defaults():
    """make_optimizer's foreach AdamW and the foreach gradient clip against torch's defaults on CPU
    (per-tensor loops), over steps with the clip active: every weight, EMA entry and moment
    equal. If a torch release made them differ, `dualhead train` would silently change results."""
    cfg = TrainConfig(imgsz=64, width=0.0625, grad_clip=0.5, ema_tau=3.0)
    torch.manual_seed(0)
    fast = TrainStep.build(cfg, 5, torch.device("cpu"), total_iters=10)
    slow = copy.deepcopy(fast)
    groups = param_groups(slow.model, cfg.weight_decay, cfg.lr, cfg.o2o_lr)
    slow.opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))
    slow.sched = torch.optim.lr_scheduler.LambdaLR(slow.opt, fast.sched.lr_lambdas[0])
    slow.ema.module = copy.deepcopy(fast.ema.module)
    assert fast.opt.defaults["foreach"] and not slow.opt.defaults["foreach"]

    def clip_per_tensor(params, max_norm, foreach=None):
        return real_clip(params, max_norm, foreach=False)

    real_clip = torch.nn.utils.clip_grad_norm_
    for b in _batches(3):
        fast(b)
        torch.nn.utils.clip_grad_norm_ = clip_per_tensor
        try:
            slow(b)
        finally:
            torch.nn.utils.clip_grad_norm_ = real_clip
    _assert_same_state(fast, slow)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_kept_mapped():
    """After retain_freed_memory a freed multi-megabyte tensor's pages are reused: allocating and
    filling it again costs (almost) no page faults; glibc's defaults fault every page again."""
    from dualhead.detector.train.heap import retain_freed_memory

    if not retain_freed_memory():
        pytest.skip("not glibc")

    def faults_of_alloc():
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.ones(4 << 20)  # 16 MB, written
        del x
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0

    # the first few allocations may land on fresh pages (glibc settles where the freed block goes
    # within a few rounds: seen 4096 faults up to the fourth); from then on none
    for _ in range(8):
        faults_of_alloc()
    assert max(faults_of_alloc() for _ in range(4)) < 400  # 4096 pages of 4 KB if they were unmapped


def test_clip_branches_clips_the_o2o_head_apart():
    """--clip-branches: the o2o head's gradient norm and the rest's each clipped to grad_clip (the
    global clip would scale both by one factor)."""
    from dualhead.detector.nn import Detector
    from dualhead.detector.train.step import clip_sets

    m = Detector(3, 0.0625, ("o2m", "o2o"), 64)
    params = [p for p in m.parameters() if p.requires_grad]
    assert clip_sets(m, params, False) == [params]
    rest, o2o = clip_sets(m, params, True)
    assert len(rest) + len(o2o) == len(params) and o2o
    assert {id(p) for p in o2o} == {id(p) for p in m.head.heads["o2o"].parameters()}
    for p in rest:
        p.grad = torch.full_like(p, 1e-4)
    for p in o2o:
        p.grad = torch.full_like(p, 10.0)
    for s in clip_sets(m, params, True):
        torch.nn.utils.clip_grad_norm_(s, 1.0, foreach=True)
    assert all(torch.equal(p.grad, torch.full_like(p, 1e-4)) for p in rest)  # small: untouched
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in o2o]))
    assert abs(norm.item() - 1.0) < 1e-4
    single = Detector(3, 0.0625, ("o2m",), 64)
    sp = list(single.parameters())
    assert clip_sets(single, sp, True) == [sp]
