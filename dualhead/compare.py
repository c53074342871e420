"""Tie-aware equality of assignments (contract §3), shared by the tests and the benchmark harness
(which asserts every implementation equal to the baseline before timing it)."""

import torch


def assert_same_targets(ref, got, atol=1e-5, what=""):
    """ref, got: ultralytics-style 5-tuples. Exact positives / gt indices / labels / boxes on every
    anchor with a non-zero target score on either side; scores within atol everywhere. Zero-metric
    positives are loss-neutral and may resolve differently (contract §3)."""
    rl, rb, rs, rf, rg = ref
    gl, gb, gs, gf, gg = got
    assert rs.shape == gs.shape, what
    nz = (rs.sum(-1) > 0) | (gs.sum(-1) > 0)
    assert torch.equal(rf.bool()[nz], gf.bool()[nz]), (
        f"{what}: fg_mask differs on {int((rf.bool() != gf.bool())[nz].sum())} scored anchors"
    )
    assert torch.equal(rg.long()[nz], gg.long()[nz]), f"{what}: target_gt_idx differs on scored anchors"
    assert torch.equal(rl.long()[nz], gl.long()[nz]), f"{what}: labels differ on scored anchors"
    assert torch.equal(rb.float()[nz], gb.float()[nz]), f"{what}: boxes differ on scored anchors"
    err = (rs.float() - gs.float()).abs().max().item() if rs.numel() else 0.0
    assert err <= atol, f"{what}: target scores differ by {err}"
