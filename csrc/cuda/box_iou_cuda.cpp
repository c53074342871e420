// CUDA backend of dualhead::box_iou: checks and the launch on the current stream.
#include "../box_iou_args.h"
#include "cuda_host.h"
#include "box_iou_launch.h"

namespace dualhead {
namespace {

Tensor box_iou_cuda(Tensor boxes1, Tensor boxes2, int64_t kind) {
  check_boxes(boxes1, "boxes1");
  check_boxes(boxes2, "boxes2");
  check_iou_kind(kind);
  DH_CHECK(same_device(boxes1, boxes2), "boxes1 and boxes2 must be on one device, got ", device_str(boxes1), " and ",
           device_str(boxes2));
  const int device = boxes1.get_device_index();
  const CudaGuard guard(device);
  const Tensor b1 = contiguous_as(boxes1, ScalarType::Float);
  const Tensor b2 = contiguous_as(boxes2, ScalarType::Float);
  Tensor out = empty({b1.size(0), b2.size(0)}, ScalarType::Float, b1);
  BoxIouParams p{ptr<float>(b1), ptr<float>(b2), ptr<float>(out), b1.size(0), b2.size(0), static_cast<int>(kind)};
  launch_box_iou(p, current_stream(device));
  launch_check("box_iou_kernel");
  return out;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(DH_LIB, DH_CUDA_BACKEND, m) { m.impl("box_iou", TORCH_BOX(&box_iou_cuda)); }

}  // namespace dualhead
