// assign / to_dense — the fused task-aligned assignment of one or two heads (SPEC §1).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dualhead, m) {
  // One pass over each ground truth's candidate anchors for every head (H = 1, or 2 when
  // scores2/bboxes2 are given: the dual o2m + o2o call sharing the candidate search).
  //   scores (B, N, C) fp32/fp16/bf16 probabilities; bboxes (B, N, 4) xyxy px; anc_points (N, 2)
  //   gt_labels (B, M) int64; gt_bboxes (B, M, 4) float; mask_gt (B, M) bool
  //   topk = [topk_h0, topk2_h0, (topk_h1, topk2_h1)]; exps = [alpha_h0, beta_h0, (alpha_h1, beta_h1)]
  //   conflict 0 'all' (ultralytics) / 1 'claimants'; kind 0 iou / 1 giou / 2 diou / 3 ciou
  //   with_pairs: also return head 0's candidate pairs (gt row b*M+g, anchor, metric) for statistics
  // Returns fg (H,B,N) bool, gt_idx (H,B,N) int64, labels (H,B,N) int64, boxes (H,B,N,4) f32,
  // scores (H,B,N) f32, pair_gt (K) int64, pair_anchor (K) int64, pair_metric (K) f32.
  m.def(
      "assign(Tensor scores, Tensor bboxes, Tensor? scores2, Tensor? bboxes2, Tensor anc_points, "
      "Tensor gt_labels, Tensor gt_bboxes, Tensor mask_gt, int[] topk, float[] exps, float min_side, "
      "int conflict, int kind, float eps, bool with_pairs) -> "
      "(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // Dense (..., C) fp32 target scores: score on class `labels`, 0 elsewhere (ultralytics layout).
  m.def("to_dense(Tensor labels, Tensor scores, int num_classes) -> Tensor");
  // The same into a caller-owned buffer (reused across steps: first touch of fresh pages is
  // what a dense write costs on small machines).
  m.def("to_dense_out(Tensor labels, Tensor scores, Tensor(a!) out) -> ()");
}
