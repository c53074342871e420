"""pytest-benchmark suite: `pytest benchmarks/ --benchmark-only` (not part of the test run).

The same W1 inputs through the fused kernels, the pure-torch reference and ultralytics (two
calls, o2m topk 10 and o2o topk 7 + topk2 1), each asserted equal to ultralytics once first.
`dualhead bench` is the fuller harness (all workloads, memory, JSON).
"""

import pytest
import torch

from dualhead.bench import as_dense, check_equal, have_ultralytics, make_fn, workload_batch


@pytest.fixture(scope="module")
def w1():
    torch.set_num_threads(2)
    return workload_batch("W1", "cpu")


IMPLS = ["dualhead", "reference"] + (["ultralytics"] if have_ultralytics() else [])


@pytest.mark.parametrize("mode", ["dual-compact", "dual-dense", "single-compact", "single-dense"])
@pytest.mark.parametrize("impl", IMPLS)
def test_w1_dual(benchmark, w1, impl, mode):
    bt, s2, b2, C = w1
    fn = make_fn(impl, mode, bt, s2, b2, C)
    if fn is None:
        pytest.skip("ultralytics has no compact output")
    if have_ultralytics() and impl != "ultralytics":
        ref = make_fn("ultralytics", mode.replace("compact", "dense"), bt, s2, b2, C)()
        check_equal(as_dense(fn(), mode, C), ref, f"{impl}/{mode}")
    benchmark.group = f"W1 {mode}"
    benchmark(fn)
