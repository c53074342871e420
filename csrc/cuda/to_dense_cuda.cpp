// CUDA backend of dualhead::to_dense / to_dense_out.
#include "../to_dense_args.h"
#include "cuda_host.h"
#include "to_dense_launch.h"

namespace dualhead {
namespace {

void to_dense_out_cuda(Tensor labels, Tensor scores, Tensor out) {
  check_to_dense_args(labels, scores, out);
  const int device = out.get_device_index();
  const CudaGuard guard(device);
  const Tensor l = torch::stable::contiguous(labels), s = torch::stable::contiguous(scores);
  const ToDenseParams p{ptr<int64_t>(l), ptr<float>(s), ptr<float>(out), l.numel(), out.size(out.dim() - 1)};
  launch_to_dense(p, current_stream(device));
  launch_check("to_dense_kernel");
}

Tensor to_dense_cuda(Tensor labels, Tensor scores, int64_t num_classes) {
  return to_dense_new(labels, scores, num_classes, to_dense_out_cuda);
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(DH_LIB, DH_CUDA_BACKEND, m) {
  m.impl("to_dense", TORCH_BOX(&to_dense_cuda));
  m.impl("to_dense_out", TORCH_BOX(&to_dense_out_cuda));
}

}  // namespace dualhead
