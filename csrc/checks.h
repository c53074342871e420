// checks.h — argument checks shared by the backends' host code (messages name the argument
// and the offending value or shape, SPEC §4).
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace dualhead {

inline void check_boxes(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 2 && t.size(1) == 4, name, " must be (N, 4), got ", t.sizes());
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), name, " must be a float tensor, got ", t.scalar_type());
}

inline void check_iou_kind(int64_t kind) {
  TORCH_CHECK(kind >= 0 && kind <= 3, "kind must be 0 (iou), 1 (giou), 2 (diou) or 3 (ciou), got ", kind);
}

}  // namespace dualhead
