"""The loss from compact targets equals ultralytics' v8DetectionLoss / E2ELoss (dense targets)."""

from types import SimpleNamespace

import pytest
import torch

from dualhead.detector.loss import DetectionLoss, dfl_loss, o2m_weight
from dualhead.detector.nn import Detector

ul_loss = pytest.importorskip("ultralytics.utils.loss")


def _fake_ultralytics_model(nc):
    head = SimpleNamespace(stride=torch.tensor([8.0, 16.0, 32.0]), nc=nc, reg_max=16)
    return SimpleNamespace(
        args=SimpleNamespace(box=7.5, cls=0.5, dfl=1.5, epochs=5),
        model=[head],
        parameters=lambda: iter([torch.zeros(1)]),
    )


def _case(seed, nc=4, B=3, imgsz=128):
    g = torch.Generator().manual_seed(seed)
    model = Detector(nc, 0.125, imgsz=imgsz).train()
    torch.manual_seed(seed)
    for p in model.parameters():  # move away from the symmetric initialisation
        p.data.add_(0.05 * torch.randn_like(p))
    out, feats = model(torch.rand(B, 3, imgsz, imgsz, generator=g))
    counts = [int(c) for c in torch.randint(0, 6, (B,), generator=g)]
    counts[0] = max(counts[0], 1)
    M = max(counts)
    gb, gl, gm = torch.zeros(B, M, 4), torch.zeros(B, M, dtype=torch.long), torch.zeros(B, M, dtype=torch.bool)
    rows = []
    for b, n in enumerate(counts):
        for j in range(n):
            wh = 8 + 80 * torch.rand(2, generator=g)
            c = wh / 2 + (imgsz - wh) * torch.rand(2, generator=g)
            gb[b, j] = torch.cat((c - wh / 2, c + wh / 2))
            gl[b, j] = int(torch.randint(0, nc, (1,), generator=g))
            gm[b, j] = True
            rows.append((b, float(gl[b, j]), *(c / imgsz).tolist(), *(wh / imgsz).tolist()))
    r = torch.tensor(rows)
    batch = {"batch_idx": r[:, 0], "cls": r[:, 1:2], "bboxes": r[:, 2:6]}
    leaf = {k: (d.detach().requires_grad_(), lg.detach().requires_grad_()) for k, (d, lg) in out.items()}
    return model, leaf, feats, (gl, gb, gm), batch


def _ul_preds(d, lg, feats):
    return {"boxes": d.transpose(1, 2), "scores": lg.transpose(1, 2), "feats": list(feats)}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("branch", ["o2m", "o2o"])
def test_head_loss_equals_ultralytics(seed, branch):
    model, leaf, feats, gt, batch = _case(seed)
    nc = model.config["nc"]
    anchors, strides = model.head.anchors(feats)
    ours = DetectionLoss(nc, (branch,))
    loss, items, _ = ours({branch: leaf[branch]}, anchors, strides, *gt)
    topk = dict(o2m=dict(tal_topk=10), o2o=dict(tal_topk=7, tal_topk2=1))[branch]
    ul = ul_loss.v8DetectionLoss(_fake_ultralytics_model(nc), **topk)
    d2 = leaf[branch][0].detach().requires_grad_()
    l2 = leaf[branch][1].detach().requires_grad_()
    ref, _ = ul.loss(_ul_preds(d2, l2, feats), batch)
    got = torch.stack([items[f"{branch}_{k}"] for k in ("box", "cls", "dfl")]) * gt[1].shape[0]
    torch.testing.assert_close(got, ref.detach(), rtol=1e-5, atol=1e-6)
    loss.backward()
    ref.sum().backward()
    torch.testing.assert_close(leaf[branch][0].grad, d2.grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(leaf[branch][1].grad, l2.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("epoch", [0, 2, 4])
def test_dual_schedule_equals_e2eloss(epoch):
    model, leaf, feats, gt, batch = _case(10 + epoch)
    nc = model.config["nc"]
    anchors, strides = model.head.anchors(feats)
    ours = DetectionLoss(nc, ("o2m", "o2o"), weighting="schedule", epochs=5)
    ours.set_epoch(epoch)
    loss, _, stats = ours(leaf, anchors, strides, *gt)
    e2e = ul_loss.E2ELoss(_fake_ultralytics_model(nc))
    for _ in range(epoch):
        e2e.update()
    assert ours.weights["o2m"] == pytest.approx(e2e.o2m) and ours.weights["o2o"] == pytest.approx(e2e.o2o)
    preds = {"one2many": _ul_preds(*leaf["o2m"], feats), "one2one": _ul_preds(*leaf["o2o"], feats)}
    ref, _ = e2e(preds, batch)
    torch.testing.assert_close(loss.detach(), ref.sum().detach(), rtol=1e-5, atol=1e-6)
    assert stats is not None and 0 <= stats.top1 <= 1


def test_o2m_weight_schedule_endpoints():
    assert o2m_weight(0, 10) == pytest.approx(0.8) and o2m_weight(9, 10) == pytest.approx(0.1)
    assert o2m_weight(0, 1) == pytest.approx(0.8)


def test_empty_foreground_keeps_graph():
    model, leaf, feats, (gl, gb, gm), _ = _case(3)
    anchors, strides = model.head.anchors(feats)
    gm = torch.zeros_like(gm)  # no real ground truth: classification pushes everything to background
    loss, items, _ = DetectionLoss(model.config["nc"])(leaf, anchors, strides, gl, gb, gm)
    loss.backward()
    assert float(items["o2m_box"]) == 0 and float(items["o2m_cls"]) > 0
    assert leaf["o2m"][1].grad is not None and leaf["o2m"][0].grad is not None


def test_dfl_target_split():
    """A target between bins 3 and 4 weighs their log-probabilities by its distance to the other
    bin: 3.25 -> 0.75 on bin 3, 0.25 on bin 4; exactly on bin 3 -> all on bin 3; beyond the last
    bin -> clamped to reg_max - 1.01 (0.01 on bin 14, 0.99 on 15). The four sides are averaged."""
    logits = torch.randn(2, 4, 16, generator=torch.Generator().manual_seed(0))
    logp = torch.log_softmax(logits, -1)
    target = torch.tensor([[3.25, 3.0, 15.5, 0.0], [7.9, 0.5, 14.99, 2.0]])
    want = torch.zeros(2, 4)
    for i in range(2):
        for j in range(4):
            t = min(max(float(target[i, j]), 0.0), 16 - 1 - 0.01)
            lo = int(t)
            want[i, j] = -((lo + 1 - t) * logp[i, j, lo] + (t - lo) * logp[i, j, lo + 1])
    assert float(want[0, 0]) == pytest.approx(-(0.75 * float(logp[0, 0, 3]) + 0.25 * float(logp[0, 0, 4])))
    torch.testing.assert_close(dfl_loss(logits, target, 16), want.mean(-1), rtol=1e-6, atol=1e-6)


def test_bad_weighting():
    with pytest.raises(ValueError, match="weighting"):
        DetectionLoss(4, weighting="sometimes")
    with pytest.raises(ValueError, match="o2o_gain must be a number > 0, got 0"):
        DetectionLoss(4, o2o_gain=0)


def test_o2o_gain_scales_the_o2o_term_only():
    model, leaf, feats, gt, _ = _case(5)
    anchors, strides = model.head.anchors(feats)
    nc = model.config["nc"]
    base, items, _ = DetectionLoss(nc)(leaf, anchors, strides, *gt)
    gained, items2, _ = DetectionLoss(nc, o2o_gain=3.0)(leaf, anchors, strides, *gt)
    B = gt[1].shape[0]
    o2o = sum(items[f"o2o_{k}"] for k in ("box", "cls", "dfl")) * B
    torch.testing.assert_close(gained.detach(), base.detach() + 2.0 * o2o, rtol=1e-5, atol=1e-5)
    assert all(torch.equal(items[k], items2[k]) for k in items)  # logged items stay unweighted


@pytest.mark.parametrize("seed", [0, 1])
def test_gathered_dfl_is_bitwise_the_masked_form(seed, monkeypatch):
    """On CPU head_loss gathers the positives for the DFL term; the masked form (CUDA, compile)
    must give bitwise the same gradients, and the same loss up to the order of its sum."""
    import dualhead.detector.loss as L

    real = L.gather_positives
    assert real(torch.zeros(1)) and not real(torch.zeros(1, device="meta"))
    model, leaf, feats, gt, _ = _case(seed, B=4)
    anchors, strides = model.head.anchors(feats)
    crit = DetectionLoss(model.config["nc"])

    def run(gather):
        monkeypatch.setattr(L, "gather_positives", lambda x: gather)
        out = {k: (d.detach().requires_grad_(), lg.detach().requires_grad_()) for k, (d, lg) in leaf.items()}
        loss, items, _ = crit(out, anchors, strides, *gt)
        loss.backward()
        return loss.detach(), [t.grad for pair in out.values() for t in pair]

    (l1, g1), (l0, g0) = run(True), run(False)
    assert torch.allclose(l1, l0, rtol=1e-6, atol=0)
    assert all(torch.equal(a, b) for a, b in zip(g1, g0))
