"""dualhead::to_dense / to_dense_out: compact targets to ultralytics' dense (B, N, C) scores."""

import pytest
import torch
from conftest import DEVICES, float64_default_dtype, fresh_seed

import dualhead
from dualhead import _ext
from dualhead.assignment import dense_torch
from dualhead.synthetic import make_batch

pytestmark = pytest.mark.skipif(not _ext.available(), reason=f"extension not built: {_ext.load_error()!r}")


@pytest.mark.parametrize("device", DEVICES)
def test_to_dense_op_and_out_buffer(device):
    bt = make_batch(B=2, C=9, seed=fresh_seed(), n_gt=(1, 20))
    a = dualhead.ops.assign(*[t.to(device) for t in bt.args()])
    ref = dualhead.reference.to_dense(a, 9)
    assert torch.equal(a.to_dense(9)[2], ref[2])
    buf = torch.full((2, bt.anc_points.shape[0], 9), 5.0, device=device)
    out = a.to_dense(9, out=buf)
    assert out[2] is buf and torch.equal(buf, ref[2])
    with pytest.raises(ValueError, match="out must be"):
        a.to_dense(9, out=buf[:, :-1])


@pytest.mark.parametrize("device", DEVICES)
def test_to_dense_opcheck(device):
    bt = make_batch(B=2, C=5, seed=1, n_gt=(1, 6), device=device)
    a = dualhead.ops.assign(*bt.args())
    torch.library.opcheck(torch.ops.dualhead.to_dense.default, (a.labels, a.scores, 5))
    torch.library.opcheck(
        torch.ops.dualhead.to_dense_out.default, (a.labels, a.scores, torch.empty(*a.labels.shape, 5, device=device))
    )


def test_reference_to_dense_never_runs_the_kernels(monkeypatch):
    """dualhead.reference is a leaf oracle: its Assignments densify in pure torch."""
    bt = make_batch(B=2, C=5, seed=2, n_gt=(1, 6))
    monkeypatch.setattr(dualhead.ops, "to_dense", lambda *a, **k: pytest.fail("the oracle ran dualhead.ops"))
    ref = dualhead.reference.assign(*bt.args())
    labels, _, scores, fg, _ = ref.to_dense(5)
    assert scores.shape == (2, bt.anc_points.shape[0], 5) and torch.equal(scores.sum(-1), ref.scores * fg)


def test_labels_out_of_range_write_nothing_in_the_kernel_and_the_reference():
    """The op's rule (a label outside 0..C-1 writes no score) holds for the pure-torch form too,
    and both give fp32 scores whatever torch's default dtype."""
    labels = torch.tensor([[-1, 5, 0, 4, 2]])
    scores = torch.tensor([[0.5, 0.25, 0.75, 1.0, 0.0]])
    fg = torch.tensor([[True, True, True, True, False]])
    a = dualhead.Assignment(fg, torch.zeros_like(labels), labels, torch.zeros(1, 5, 4), scores)
    want = torch.zeros(1, 5, 5)
    want[0, 2, 0], want[0, 3, 4] = 0.75, 1.0
    with float64_default_dtype():
        kernel, torch_form = dualhead.ops.to_dense(a, 5)[2], dense_torch(a, 5)[2]
    assert torch.equal(kernel, want) and torch.equal(torch_form, want)
    assert kernel.dtype == torch_form.dtype == torch.float32
