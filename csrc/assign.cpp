// assign — the fused task-aligned assignment of one or two heads (SPEC §1).
#include "library.h"

STABLE_TORCH_LIBRARY_FRAGMENT(DH_LIB, m) {
  // One pass over each ground truth's candidate anchors for every head (H = 1, or 2 when
  // scores2/bboxes2 are given: the dual o2m + o2o call sharing the candidate search).
  //   scores (B, N, C) fp32/fp16/bf16 probabilities; bboxes (B, N, 4) xyxy px; anc_points (N, 2)
  //   gt_labels (B, M) int64; gt_bboxes (B, M, 4) float; mask_gt (B, M) bool
  //   topk = [topk_h0, topk2_h0, (topk_h1, topk2_h1)]; exps = [alpha_h0, beta_h0, (alpha_h1, beta_h1)]
  //   conflict 0 'all' (ultralytics) / 1 'claimants'; kind 0 iou / 1 giou / 2 diou / 3 ciou
  //   with_stats (H = 2): also the consistency statistics per ground truth
  // Returns fg (H,B,N) bool, gt_idx (H,B,N) int64, scores (H,B,N) f32 (labels and boxes are
  // gathers of gt_idx, left to the caller: fresh output pages are costly), and with stats (else (B, 0)): pick (B,M) int64 (o2o positive with the
  // largest target, -1 none), rank (B,M) int64 (its rank in the o2m metric order, capped at 10),
  // gap (B,M) f32 (supervision gap; 0 for padding).
  m.def(
      "assign(Tensor scores, Tensor bboxes, Tensor? scores2, Tensor? bboxes2, Tensor anc_points, "
      "Tensor gt_labels, Tensor gt_bboxes, Tensor mask_gt, int[] topk, float[] exps, float min_side, "
      "int conflict, int kind, float eps, bool with_stats) -> "
      "(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}
