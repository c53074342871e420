// batch_norm_train — training-mode batch norm forward on CPU float32, bitwise PyTorch's.
//
// Why it exists: aten's CPU batch norm sums each channel's values into one double, element after
// element, so its statistics pass is a chain of dependent adds (~4 cycles each): at the detector's
// 8-64 channels it takes ~8x an elementwise op, ~20 ms of a 2-core training step. The same sums,
// in the same order, with several channels' chains in flight at once give the same bits faster.
// The backward stays aten's native_batch_norm_backward (dualhead/nn/batchnorm.py).
#include <torch/csrc/stable/library.h>

STABLE_TORCH_LIBRARY_FRAGMENT(dualhead, m) {
  // input (B, C, H, W) float32, NCHW-contiguous or channels-last; weight, bias, running_mean,
  // running_var (C,) float32 contiguous. Writes out (input's shape and layout), save_mean and
  // save_invstd (C,), and updates the running statistics in place, as
  // aten::native_batch_norm(input, weight, bias, running_mean, running_var, True, momentum, eps).
  m.def(
      "batch_norm_train(Tensor input, Tensor weight, Tensor bias, Tensor(a!) running_mean, Tensor(b!) running_var, "
      "Tensor(c!) out, Tensor(d!) save_mean, Tensor(e!) save_invstd, float momentum, float eps) -> ()");
}
