// assign_values.h — the input *value* checks of dualhead::assign on the host (contract §4: labels in
// [0, C), finite upright ground-truth boxes, finite anchors) and their messages. The checks
// themselves are assign_core.h's gt_value_error / anchor_value_error, which CUDA's check_kernel
// runs on the device; the messages are written once here for both.
#pragma once

#include <algorithm>
#include <climits>
#include <string>

#include "assign_core.h"
#include "host.h"

namespace dualhead {

// The message of an input value error (gt_value_error / anchor_value_error of assign_core.h) at
// ground-truth row `index` (b * M + g) or anchor `index`: what the CPU raises before any work,
// and what CUDA raises when its device check reports one. v: the box or anchor values.
inline std::string input_error_message(int code, int64_t index, int64_t label, const float* v, int64_t C, int64_t M) {
  const std::string where = code == kAnchorNotFinite ? ""
                                                     : str(" (image ", index / std::max<int64_t>(M, 1), ", slot ",
                                                           index % std::max<int64_t>(M, 1), ")");
  switch (code) {
    case kBadLabel:
      return str("gt_labels must be in [0, C=", C, ") for real ground truths, got ", label, where,
                 label == INT64_MIN ? " (what a NaN, infinite or huge float label becomes as int64)" : "");
    case kBoxNotFinite:
      return str("gt_bboxes must be finite for real ground truths, got [", v[0], ", ", v[1], ", ", v[2], ", ", v[3],
                 "]", where);
    case kBoxInverted:
      return str("gt_bboxes must be xyxy with x2 >= x1 and y2 >= y1, got [", v[0], ", ", v[1], ", ", v[2], ", ", v[3],
                 "]", where);
    default:
      return str("anc_points must be finite, got (", v[0], ", ", v[1], ") at index ", index);
  }
}

// Host-side value checks (the CPU path; CUDA runs the same checks on the device). They
// raise ValueError (DH_CHECK_VALUE) like the Python checks of the reference path.
inline void check_gt_values(const int64_t* labels, const float* gt, const bool* mask, int64_t B, int64_t M, int64_t C) {
  for (int64_t r = 0; r < B * M; ++r) {
    if (!mask[r]) continue;
    const int code = gt_value_error(labels[r], gt + 4 * r, C);
    DH_CHECK_VALUE(code == kValueOk, input_error_message(code, r, labels[r], gt + 4 * r, C, M));
  }
}

inline void check_anchor_values(const float* anc, int64_t N) {
  for (int64_t a = 0; a < N; ++a) {
    const int code = anchor_value_error(anc + 2 * a);
    DH_CHECK_VALUE(code == kValueOk, input_error_message(code, a, 0, anc + 2 * a, 0, 0));
  }
}

}  // namespace dualhead
