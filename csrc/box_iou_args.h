// box_iou_args.h — box_iou's argument checks, shared by the backends' host code (messages name the
// argument and the offending value or shape, contract §4).
#pragma once

#include "host.h"

namespace dualhead {

inline void check_boxes(const Tensor& t, const char* name) {
  DH_CHECK(t.dim() == 2 && t.size(1) == 4, name, " must be (N, 4), got ", shape(t));
  DH_CHECK(is_float(t.scalar_type()), name, " must be a float tensor, got ", dtype(t));
}

inline void check_iou_kind(int64_t kind) {
  DH_CHECK(kind >= 0 && kind <= 3, "kind must be 0 (iou), 1 (giou), 2 (diou) or 3 (ciou), got ", kind);
}

}  // namespace dualhead
