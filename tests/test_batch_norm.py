"""dualhead::batch_norm_train and dualhead.nn.BatchNorm2d: aten's CPU batch norm, bit for bit."""

import pytest
import torch
from torch import nn

from dualhead import _ext
from dualhead.nn import batchnorm
from conftest import fresh_seed

pytestmark = pytest.mark.skipif(not _ext.available(), reason=f"extension not built: {_ext.load_error()!r}")
aten = torch.ops.aten


def _random_case(g):
    B, C, H, W = (int(torch.randint(lo, hi, (1,), generator=g)) for lo, hi in ((1, 9), (1, 41), (1, 30), (1, 30)))
    H = max(H, 2)  # aten sends 1x1 maps through its channels-last kernel (the layer defers to aten there)
    scale, shift = float(torch.rand(1, generator=g)) * 8, float(torch.randn(1, generator=g)) * 4
    x = torch.randn(B, C, H, W, generator=g) * scale + shift
    return x, torch.randn(C, generator=g), torch.randn(C, generator=g), torch.randn(C, generator=g), \
        torch.rand(C, generator=g) + 0.1


@pytest.mark.parametrize("rep", range(4))
def test_kernel_is_aten_bit_for_bit(rep):
    """Output, saved mean / invstd and both running statistics equal aten's native_batch_norm on
    random shapes (channel counts off the 8-channel blocks too) and value ranges; a channels-last
    input gives the NCHW statistics and output, in channels-last layout."""
    if not batchnorm.kernel_matches_aten():
        pytest.skip("aten's batch norm rounds differently on this CPU / torch (the layer falls back)")
    seed = fresh_seed()
    g = torch.Generator().manual_seed(seed)
    for _ in range(6):
        x, w, b, rm, rv = _random_case(g)
        mom, eps = (0.03, 1e-3) if rep % 2 else (0.1, 1e-5)
        r1, v1 = rm.clone(), rv.clone()
        ref = aten.native_batch_norm(x, w, b, r1, v1, True, mom, eps)
        for inp in (x, x.contiguous(memory_format=torch.channels_last)):
            r2, v2 = rm.clone(), rv.clone()
            out, mean, invstd = batchnorm.kernel_forward(inp, w, b, r2, v2, mom, eps)
            for name, a, e in (("out", out, ref[0]), ("save_mean", mean, ref[1]), ("save_invstd", invstd, ref[2]),
                               ("running_mean", r2, r1), ("running_var", v2, v1)):
                assert torch.equal(a, e), (seed, tuple(x.shape), name, inp.is_contiguous())
            assert out.stride() == inp.stride()


def test_channels_last_statistics_are_more_accurate_than_aten_channels_last():
    """What the kernel buys --channels-last: aten's channels-last statistics sum in float32;
    the kernel's are the NCHW ones (double sums), closer to float64 batch norm."""
    if not batchnorm.kernel_matches_aten():
        pytest.skip("kernel not used on this CPU / torch")
    g = torch.Generator().manual_seed(fresh_seed())
    x = (torch.randn(16, 16, 64, 64, generator=g) * 0.5 + 3).contiguous(memory_format=torch.channels_last)
    w, b = torch.ones(16), torch.zeros(16)
    exact = aten.native_batch_norm(x.double().contiguous(), w.double(), b.double(), None, None, True, 0.1, 1e-3)[0]
    ours = batchnorm.kernel_forward(x, w, b, torch.zeros(16), torch.ones(16), 0.1, 1e-3)[0]
    theirs = aten.native_batch_norm(x, w, b, None, None, True, 0.1, 1e-3)[0]
    assert (ours.double() - exact).abs().max() < (theirs.double() - exact).abs().max()


def test_layer_trains_bitwise_as_nn_batchnorm():
    """dualhead.nn.BatchNorm2d against nn.BatchNorm2d over training steps: outputs, input /
    weight / bias gradients, running statistics and num_batches_tracked equal; eval mode and
    momentum=None (cumulative average) included; same state_dict keys."""
    seed = fresh_seed()
    torch.manual_seed(seed)
    for momentum in (0.03, None):
        ref = nn.BatchNorm2d(11, eps=1e-3, momentum=momentum)
        ours = batchnorm.BatchNorm2d(11, eps=1e-3, momentum=momentum)
        with torch.no_grad():
            ref.weight.uniform_(0.5, 1.5), ref.bias.uniform_(-1, 1)
        ours.load_state_dict(ref.state_dict())
        assert list(ours.state_dict()) == list(ref.state_dict())
        for _ in range(3):
            x = torch.randn(4, 11, 9, 7) * 2 + 1
            xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
            ya, yb = ref(xa), ours(xb)
            gy = torch.randn_like(ya)
            ya.backward(gy), yb.backward(gy)
            assert torch.equal(ya, yb) and torch.equal(xa.grad, xb.grad), seed
            assert torch.equal(ref.weight.grad, ours.weight.grad) and torch.equal(ref.bias.grad, ours.bias.grad)
        for k, v in ref.state_dict().items():
            assert torch.equal(v, ours.state_dict()[k]), k
        ref.eval(), ours.eval()
        x = torch.randn(2, 11, 5, 5)
        assert torch.equal(ref(x), ours(x))


def test_layer_runs_the_kernel_only_where_it_applies(monkeypatch):
    """Training on CPU float32 takes the kernel; eval, float64 and a single value per channel take
    nn.BatchNorm2d's forward (which then raises aten's own error for the last)."""
    calls = []
    real = batchnorm._TrainBatchNorm.apply
    monkeypatch.setattr(batchnorm._TrainBatchNorm, "apply", lambda *a: calls.append(1) or real(*a))
    bn = batchnorm.BatchNorm2d(3)
    bn(torch.randn(2, 3, 4, 4))
    assert calls == ([1] if batchnorm.kernel_matches_aten() else [])
    calls.clear()
    bn.double()(torch.randn(2, 3, 4, 4, dtype=torch.float64))
    bn.float().eval()(torch.randn(2, 3, 4, 4))
    assert calls == []
    bn.train()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(torch.randn(1, 3, 1, 1))


def test_kernel_rejects_bad_arguments():
    x = torch.randn(2, 4, 3, 3)
    v = torch.zeros(4)
    with pytest.raises(RuntimeError, match="weight must be a contiguous float32 CPU vector of 4"):
        torch.ops.dualhead.batch_norm_train(x, torch.ones(3), v, v.clone(), v + 1, torch.empty_like(x), v.clone(),
                                            v.clone(), 0.1, 1e-3)
    with pytest.raises(RuntimeError, match="input must be a 4-d float32"):
        torch.ops.dualhead.batch_norm_train(x.double(), v + 1, v, v.clone(), v + 1, torch.empty_like(x), v.clone(),
                                            v.clone(), 0.1, 1e-3)
    with pytest.raises(RuntimeError, match="NCHW-contiguous or channels-last"):
        torch.ops.dualhead.batch_norm_train(x.transpose(2, 3), v + 1, v, v.clone(), v + 1, torch.empty_like(x),
                                            v.clone(), v.clone(), 0.1, 1e-3)
    with pytest.raises(RuntimeError, match="out must have input's shape"):
        torch.ops.dualhead.batch_norm_train(x, v + 1, v, v.clone(), v + 1, torch.empty(2, 4, 3, 2), v.clone(),
                                            v.clone(), 0.1, 1e-3)


def test_opcheck():
    x = torch.randn(2, 4, 3, 3)
    v = torch.zeros(4)
    torch.library.opcheck(torch.ops.dualhead.batch_norm_train.default,
                          (x, v + 1, v, v.clone(), v + 1, torch.empty_like(x), v.clone(), v.clone(), 0.1, 1e-3))


def test_size_one_dims_may_have_any_stride():
    """A tensor torch calls contiguous may carry any stride on a size-1 dim (a view of a batch of
    one, a one-row map): the kernel takes it, with aten's results."""
    if not batchnorm.kernel_matches_aten():
        pytest.skip("kernel not used on this CPU / torch")
    g = torch.Generator().manual_seed(fresh_seed())
    base = torch.randn(3, 6, 5, 4, generator=g)
    one_row = base[:, :, 2:3, :].transpose(0, 2)[:, :, :1].contiguous().transpose(0, 2)[:1]  # (1, 6, 1, 4)
    batch_of_one = base[1:2].as_strided((1, 6, 5, 4), (7, 20, 4, 1))  # stride 7 on the batch dim of size 1
    for x in (batch_of_one, one_row):
        assert x.is_contiguous() and x.stride() != torch.empty(x.shape).stride()
        w, b = torch.randn(6, generator=g), torch.randn(6, generator=g)
        ref = aten.native_batch_norm(x.contiguous(), w, b, None, None, True, 0.1, 1e-3)
        out, mean, invstd = batchnorm.kernel_forward(x, w, b, torch.zeros(6), torch.ones(6), 0.1, 1e-3)
        assert torch.equal(out, ref[0]) and torch.equal(mean, ref[1]) and torch.equal(invstd, ref[2])


def test_layer_defers_to_aten_where_aten_takes_its_channels_last_kernel():
    """1x1 maps (the P5 level at --imgsz 32) and a single channel: aten uses its channels-last
    (float32-sum) kernel there, so the layer does too, and stays bitwise nn.BatchNorm2d."""
    torch.manual_seed(fresh_seed())
    for shape in ((4, 6, 1, 1), (3, 1, 5, 5)):
        x = torch.randn(shape) * 3 + 2
        ours = batchnorm.BatchNorm2d(shape[1])
        assert not batchnorm.kernel_applies(x, ours)
        ref = nn.BatchNorm2d(shape[1])
        assert torch.equal(ours(x), ref(x)) and torch.equal(ours.running_var, ref.running_var)
