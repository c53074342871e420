// assign — the fused task-aligned assignment of one or two heads (contract §1).
#include <string>

#include "assign_settings.h"
#include "host.h"
#include "library.h"

STABLE_TORCH_LIBRARY_FRAGMENT(DH_LIB, m) {
  // One pass over each ground truth's candidate anchors for every head (H = 1, or 2 when
  // scores2/bboxes2 are given: the dual o2m + o2o call sharing the candidate search).
  //   scores (B, N, C) fp32/fp16/bf16 probabilities; bboxes (B, N, 4) xyxy px; anc_points (N, 2)
  //   gt_labels (B, M) int64; gt_bboxes (B, M, 4) float; mask_gt (B, M) bool
  //   settings: the values named by assign_setting_names() (assign_settings.h), in that order:
  //   each head's HeadSettings (a single-head call is the o2m head, its o2o_* unread), the call's
  //   Convention (assign_core.h) and the target eps
  //   with_stats (H = 2): also the consistency statistics per ground truth
  // Returns fg (H,B,N) bool, gt_idx (H,B,N) int64, scores (H,B,N) f32 (labels and boxes are
  // gathers of gt_idx, left to the caller: fresh output pages are costly), and with stats (else (B, 0)): pick (B,M)
  // int64 (o2o positive with the largest target, -1 none), rank (B,M) int64 (its rank in the o2m metric order, capped
  // at 10), gap (B,M) f32 (supervision gap; 0 for padding).
  m.def(
      "assign(Tensor scores, Tensor bboxes, Tensor? scores2, Tensor? bboxes2, Tensor anc_points, "
      "Tensor gt_labels, Tensor gt_bboxes, Tensor mask_gt, float[] settings, bool with_stats) -> "
      "(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // The names of assign's settings, comma-separated, in order: what dualhead.ops packs by.
  m.def("assign_settings() -> str");
}

namespace dualhead {
namespace {
std::string assign_settings() { return assign_setting_names(); }
}  // namespace
}  // namespace dualhead

STABLE_TORCH_LIBRARY_IMPL(DH_LIB, CompositeExplicitAutograd, m) {
  m.impl("assign_settings", TORCH_BOX(&dualhead::assign_settings));
}
