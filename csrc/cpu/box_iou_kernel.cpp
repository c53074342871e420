// CPU backend of dualhead::box_iou.
#include "../box_iou_args.h"
#include "../dualhead_math.h"
#include "../host.h"

namespace dualhead {
namespace {

Tensor box_iou_cpu(Tensor boxes1, Tensor boxes2, int64_t kind) {
  check_boxes(boxes1, "boxes1");
  check_boxes(boxes2, "boxes2");
  check_iou_kind(kind);
  // Inputs in fp16/bf16 are computed in fp32 (contract §3).
  const Tensor b1 = contiguous_as(boxes1, ScalarType::Float);
  const Tensor b2 = contiguous_as(boxes2, ScalarType::Float);
  const int64_t n = b1.size(0), m = b2.size(0);
  Tensor out = empty({n, m}, ScalarType::Float, b1);
  if (n == 0 || m == 0) return out;
  const float* p1 = ptr<float>(b1);
  const float* p2 = ptr<float>(b2);
  float* po = ptr<float>(out);
  const int k = static_cast<int>(kind);
  torch::stable::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const Box a = load_box(p1 + 4 * i);
      for (int64_t j = 0; j < m; ++j) po[i * m + j] = box_iou(a, load_box(p2 + 4 * j), k);
    }
  });
  return out;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(dualhead, CPU, m) { m.impl("box_iou", TORCH_BOX(&box_iou_cpu)); }

}  // namespace dualhead
