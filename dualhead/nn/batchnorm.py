"""BatchNorm2d whose training forward on CPU float32 is dualhead's batch_norm_train kernel:
bitwise aten's batch norm, ~1.5x faster on the detector's activations.

aten's CPU batch norm adds each channel's values into one double, one element after the other,
so its statistics are a chain of dependent additions: ~20 ms of a ~230 ms training step of the
default detector on 2 cores, 8x an elementwise op over the same tensors. The kernel
(csrc/cpu/batch_norm_kernel.cpp) makes the same additions in the same order, several channels
at once, and reproduces aten's rounding of every other step, so outputs, saved statistics and
running averages are the same bits; the backward is aten's native_batch_norm_backward on the same
saved tensors. Anything else (eval mode, CUDA, other dtypes, torch.compile tracing) is
nn.BatchNorm2d's own forward.

Bitwise equality rests on how aten is compiled (its vectorised kernels contract x * a + b into
one FMA), so it is checked once per process against aten on random inputs; where it differs
(a CPU without FMA, a torch that changed its kernel) the layer keeps aten's forward and says so
once. For a channels-last input the statistics are the NCHW ones (aten's channels-last kernel
sums in float32, which is what made `--channels-last` train worse: RESULTS.md).
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch import nn

from dualhead import _ext

_OP = "batch_norm_train"


def kernel_forward(x, weight, bias, running_mean, running_var, momentum: float, eps: float):
    """The kernel's (out, save_mean, save_invstd) on x, out in x's layout (NCHW or channels last);
    running_mean and running_var updated in place."""
    out, mean, invstd = torch.empty_like(x), x.new_empty(x.shape[1]), x.new_empty(x.shape[1])
    torch.ops.dualhead.batch_norm_train(x, weight, bias, running_mean, running_var, out, mean, invstd, momentum, eps)
    return out, mean, invstd


class _TrainBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum: float, eps: float):
        out, mean, invstd = kernel_forward(x, weight, bias, running_mean, running_var, momentum, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, mean, invstd = ctx.saved_tensors
        mask = [bool(n) for n in ctx.needs_input_grad[:3]]
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(grad_out, x, weight, None, None, mean, invstd, True,
                                                               ctx.eps, mask)
        return gx, gw, gb, None, None, None, None


def _native_and_kernel(x, weight, bias, mom: float, eps: float):
    """(aten's, the kernel's) (out, save_mean, save_invstd, running_mean, running_var) on x, both
    from the same running statistics; aten's on x made NCHW (the statistics the kernel keeps)."""
    rm, rv = torch.randn(x.shape[1]), torch.rand(x.shape[1]) + 0.5
    rm1, rv1, rm2, rv2 = rm.clone(), rv.clone(), rm.clone(), rv.clone()
    out, mean, invstd = torch.ops.aten.native_batch_norm(x.contiguous(), weight, bias, rm1, rv1, True, mom, eps)
    return (out, mean, invstd, rm1, rv1), (*kernel_forward(x, weight, bias, rm2, rv2, mom, eps), rm2, rv2)


@functools.cache
def kernel_matches_aten() -> bool:
    """Whether the kernel gives aten's bits on this machine and torch (checked once: random
    shapes with a partial channel block, NCHW and channels last, two momenta)."""
    if not _ext.has_kernel(_OP, "CPU"):
        return False
    g = torch.Generator().manual_seed(12345)
    for shape, mom, eps in (((4, 11, 9, 13), 0.03, 1e-3), ((2, 16, 20, 20), 0.1, 1e-5), ((3, 5, 1, 7), 0.5, 1e-3)):
        x = torch.randn(shape, generator=g) * 3 + 1
        w, b = torch.randn(shape[1], generator=g), torch.randn(shape[1], generator=g)
        for inp in (x, x.contiguous(memory_format=torch.channels_last)):
            ref, got = _native_and_kernel(inp, w, b, mom, eps)
            if not all(torch.equal(r.contiguous(), o.contiguous()) for r, o in zip(ref, got)):
                warnings.warn("dualhead: the batch_norm_train kernel does not reproduce aten's batch norm bit for bit "
                              f"with torch {torch.__version__} on this CPU; training keeps aten's batch norm",
                              stacklevel=3)
                return False
    return True


def kernel_applies(x: torch.Tensor, bn: nn.BatchNorm2d) -> bool:
    """Whether bn's training forward on x runs on the kernel."""
    if not (bn.training and bn.track_running_stats and bn.affine and bn.running_mean is not None
            and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and bn.weight.dtype == torch.float32):
        return False
    # NCHW as aten's NCHW kernel sees it: aten takes 1x1 maps (and a single channel, whose layout
    # is ambiguous) through its channels-last kernel, whose float32 sums the kernel does not copy.
    # Either layout test implies more than one value per channel (aten's own error otherwise).
    nchw = x.is_contiguous() and x.shape[2] * x.shape[3] > 1 and x.shape[1] > 1
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return ((nchw or channels_last) and not torch.compiler.is_compiling() and not _ext.reference_forced()
            and kernel_matches_aten())


class BatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d (same parameters, buffers and state_dict) with the kernel's training forward
    on CPU float32; bitwise nn.BatchNorm2d's results."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not kernel_applies(x, self):
            return super().forward(x)  # also raises nn.BatchNorm2d's errors for a bad input
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        return _TrainBatchNorm.apply(x, self.weight, self.bias, self.running_mean, self.running_var, float(momentum),
                                     float(self.eps))
