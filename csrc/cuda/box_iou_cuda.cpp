// CUDA backend of dualhead::box_iou: checks and the launch on the current stream.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../checks.h"
#include "launchers.h"

namespace dualhead {
namespace {

at::Tensor box_iou_cuda(const at::Tensor& boxes1, const at::Tensor& boxes2, int64_t kind) {
  check_boxes(boxes1, "boxes1");
  check_boxes(boxes2, "boxes2");
  check_iou_kind(kind);
  TORCH_CHECK(boxes1.device() == boxes2.device(), "boxes1 and boxes2 must be on one device, got ",
              boxes1.device(), " and ", boxes2.device());
  const c10::cuda::CUDAGuard guard(boxes1.device());
  const at::Tensor b1 = boxes1.to(at::kFloat).contiguous();
  const at::Tensor b2 = boxes2.to(at::kFloat).contiguous();
  at::Tensor out = at::empty({b1.size(0), b2.size(0)}, b1.options());
  BoxIouParams p{b1.data_ptr<float>(), b2.data_ptr<float>(), out.data_ptr<float>(), b1.size(0), b2.size(0),
                 static_cast<int>(kind)};
  launch_box_iou(p, c10::cuda::getCurrentCUDAStream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dualhead, CUDA, m) { m.impl("box_iou", &box_iou_cuda); }

}  // namespace dualhead
