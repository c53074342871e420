// CPU backend of dualhead::box_iou.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../checks.h"
#include "../dualhead_math.h"

namespace dualhead {
namespace {

at::Tensor box_iou_cpu(const at::Tensor& boxes1, const at::Tensor& boxes2, int64_t kind) {
  check_boxes(boxes1, "boxes1");
  check_boxes(boxes2, "boxes2");
  check_iou_kind(kind);
  // Inputs in fp16/bf16 are computed in fp32 (SPEC §3).
  const at::Tensor b1 = boxes1.to(at::kFloat).contiguous();
  const at::Tensor b2 = boxes2.to(at::kFloat).contiguous();
  const int64_t n = b1.size(0), m = b2.size(0);
  at::Tensor out = at::empty({n, m}, b1.options());
  if (n == 0 || m == 0) return out;
  const float* p1 = b1.data_ptr<float>();
  const float* p2 = b2.data_ptr<float>();
  float* po = out.data_ptr<float>();
  const int k = static_cast<int>(kind);
  at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const Box a = load_box(p1 + 4 * i);
      for (int64_t j = 0; j < m; ++j) po[i * m + j] = box_iou(a, load_box(p2 + 4 * j), k);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dualhead, CPU, m) { m.impl("box_iou", &box_iou_cpu); }

}  // namespace dualhead
