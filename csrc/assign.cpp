// assign — the fused task-aligned assignment of one or two heads (contract §1).
#include "library.h"

STABLE_TORCH_LIBRARY_FRAGMENT(DH_LIB, m) {
  // One pass over each ground truth's candidate anchors for every head (H = 1, or 2 when
  // scores2/bboxes2 are given: the dual o2m + o2o call sharing the candidate search).
  //   scores (B, N, C) fp32/fp16/bf16 probabilities; bboxes (B, N, 4) xyxy px; anc_points (N, 2)
  //   gt_labels (B, M) int64; gt_bboxes (B, M, 4) float; mask_gt (B, M) bool
  //   o2m_* / o2o_*: each head's HeadSettings (assign_core.h), flat because a schema has no
  //   structs; a single-head call (scores2 None) is the o2m head and its o2o_* are not read
  //   conflict 0 'all' (ultralytics) / 1 'claimants'; iou_type 0 iou / 1 giou / 2 diou / 3 ciou
  //   with_stats (H = 2): also the consistency statistics per ground truth
  // Returns fg (H,B,N) bool, gt_idx (H,B,N) int64, scores (H,B,N) f32 (labels and boxes are
  // gathers of gt_idx, left to the caller: fresh output pages are costly), and with stats (else (B, 0)): pick (B,M)
  // int64 (o2o positive with the largest target, -1 none), rank (B,M) int64 (its rank in the o2m metric order, capped
  // at 10), gap (B,M) f32 (supervision gap; 0 for padding).
  m.def(
      "assign(Tensor scores, Tensor bboxes, Tensor? scores2, Tensor? bboxes2, Tensor anc_points, "
      "Tensor gt_labels, Tensor gt_bboxes, Tensor mask_gt, int o2m_topk, int o2m_topk2, float o2m_alpha, "
      "float o2m_beta, int o2o_topk, int o2o_topk2, float o2o_alpha, float o2o_beta, float min_side, "
      "int conflict, int iou_type, float eps, bool with_stats) -> "
      "(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}
