// assign_args.h — dualhead::assign's argument checks (ranks, shapes, dtypes, devices, scalar
// parameters; messages name the argument and the offending value or shape) and the validated
// call: contiguous inputs, outputs, the kernel parameter struct and the workspace layout, shared
// by the CPU and CUDA host code.
#pragma once

#include <algorithm>
#include <array>
#include <optional>
#include <tuple>
#include <vector>

#include "anchor_grid.h"
#include "assign_core.h"
#include "assign_values.h"
#include "host.h"

namespace dualhead {

using AssignResult = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;

// One head's settings as the schema passes them (o2m_topk, o2m_topk2, o2m_alpha, o2m_beta; the
// same for o2o), before they are checked and narrowed into HeadSettings.
struct HeadArg {
  int64_t topk, topk2;
  double alpha, beta;
};
using HeadArgs = std::array<HeadArg, 2>;

// Checks the arguments and fills the scalar fields of the kernel parameters (sizes, top-k,
// exponents, ...); the pointers are set by prepare_assign().
inline AssignParams check_assign_args(const Tensor& scores, const Tensor& bboxes, const std::optional<Tensor>& scores2,
                                      const std::optional<Tensor>& bboxes2, const Tensor& anc, const Tensor& labels,
                                      const Tensor& gt, const Tensor& mask, const HeadArgs& heads, double min_side,
                                      int64_t conflict, int64_t iou_type, double eps) {
  AssignParams c;
  DH_CHECK(scores.dim() == 3, "pd_scores must be (B, N, C), got ", shape(scores));
  c.B = scores.size(0);
  c.N = scores.size(1);
  c.C = scores.size(2);
  DH_CHECK(is_float(scores.scalar_type()), "pd_scores must be a float tensor, got ", dtype(scores));
  DH_CHECK(bboxes.dim() == 3 && bboxes.size(0) == c.B && bboxes.size(1) == c.N && bboxes.size(2) == 4,
           "pd_bboxes must be (B, N, 4) = (", c.B, ", ", c.N, ", 4), got ", shape(bboxes));
  DH_CHECK(is_float(bboxes.scalar_type()), "pd_bboxes must be a float tensor, got ", dtype(bboxes));
  DH_CHECK(scores2.has_value() == bboxes2.has_value(), "scores2 and bboxes2 must be given together");
  if (scores2.has_value()) {
    c.H = 2;
    DH_CHECK(scores2->dim() == 3 && scores2->size(0) == c.B && scores2->size(1) == c.N && scores2->size(2) == c.C,
             "o2o_scores must match o2m_scores ", shape(scores), ", got ", shape(*scores2));
    DH_CHECK(scores2->scalar_type() == scores.scalar_type(), "o2o_scores dtype ", dtype(*scores2),
             " must match o2m_scores dtype ", dtype(scores));
    DH_CHECK(bboxes2->dim() == 3 && bboxes2->size(0) == c.B && bboxes2->size(1) == c.N && bboxes2->size(2) == 4,
             "o2o_bboxes must be (B, N, 4), got ", shape(*bboxes2));
    DH_CHECK(is_float(bboxes2->scalar_type()), "o2o_bboxes must be a float tensor");
  }
  DH_CHECK(anc.dim() == 2 && anc.size(0) == c.N && anc.size(1) == 2, "anc_points must be (N, 2) = (", c.N, ", 2), got ",
           shape(anc));
  DH_CHECK(is_float(anc.scalar_type()), "anc_points must be a float tensor, got ", dtype(anc));
  DH_CHECK(gt.dim() == 3 && gt.size(0) == c.B && gt.size(2) == 4, "gt_bboxes must be (B, M, 4) with B=", c.B, ", got ",
           shape(gt));
  DH_CHECK(is_float(gt.scalar_type()), "gt_bboxes must be a float tensor, got ", dtype(gt));
  c.M = gt.size(1);
  DH_CHECK(
      labels.dim() == 2 && labels.size(0) == c.B && labels.size(1) == c.M && labels.scalar_type() == ScalarType::Long,
      "gt_labels must be int64 (B, M) = (", c.B, ", ", c.M, "), got ", dtype(labels), " ", shape(labels));
  // Anchors and ground truths are indexed with 32 bits inside the kernels (member lists,
  // packed conflict keys).
  DH_CHECK(c.N < (int64_t(1) << 31), "pd_scores has N=", c.N, " anchors, more than 2^31 - 1");
  DH_CHECK(c.M < (int64_t(1) << 31), "gt_bboxes has M=", c.M, " ground-truth slots, more than 2^31 - 1");
  DH_CHECK(mask.dim() == 2 && mask.size(0) == c.B && mask.size(1) == c.M && mask.scalar_type() == ScalarType::Bool,
           "mask_gt must be bool (B, M), got ", dtype(mask), " ", shape(mask));
  for (const Tensor* t : {&bboxes, &anc, &labels, &gt, &mask})
    DH_CHECK(same_device(*t, scores), "all inputs must be on ", device_str(scores), ", got one on ", device_str(*t));
  if (c.H == 2)
    DH_CHECK(same_device(*scores2, scores) && same_device(*bboxes2, scores), "o2o inputs must be on ",
             device_str(scores));
  // The op's own guard for callers of torch.ops.dualhead.assign; dualhead.ops validates the same
  // settings once, in HeadSettings, with the names users know.
  static const char* const kHeadName[2] = {"o2m", "o2o"};
  for (int h = 0; h < c.H; ++h) {
    const HeadArg& a = heads[h];
    const char* name = kHeadName[h];
    DH_CHECK(a.topk >= 1 && a.topk <= c.N, name, "_topk must be in [1, N=", c.N, "], got ", a.topk);
    DH_CHECK(a.topk2 >= 1 && a.topk2 <= c.N, name, "_topk2 must be in [1, N=", c.N, "], got ", a.topk2);
    DH_CHECK(a.alpha >= 0 && a.alpha < 1e30, name, "_alpha must be a finite number >= 0, got ", a.alpha);
    DH_CHECK(a.beta >= 0 && a.beta < 1e30, name, "_beta must be a finite number >= 0, got ", a.beta);
    c.head[h] = HeadSettings{a.topk, a.topk2, static_cast<float>(a.alpha), static_cast<float>(a.beta)};
  }
  DH_CHECK(min_side >= 0 && min_side < 1e30, "min_side must be a finite number >= 0, got ", min_side);
  DH_CHECK(conflict == kConflictAll || conflict == kConflictClaimants,
           "conflict must be 0 (all) or 1 (claimants), got ", conflict);
  DH_CHECK(iou_type >= kIoU && iou_type <= kCIoU, "iou_type must be 0..3 (iou, giou, diou, ciou), got ", iou_type);
  DH_CHECK(eps >= 0 && eps < 1, "eps must be in [0, 1), got ", eps);
  c.min_side = static_cast<float>(min_side);
  c.eps = static_cast<float>(eps);
  c.conflict = static_cast<int>(conflict);
  c.iou_type = static_cast<int>(iou_type);
  return c;
}

// The validated, contiguous inputs, the outputs and the parameter struct of one assign call.
// The backend supplies the workspace (workspace_size() int64 slots, the first 3*H*B*N zeroed)
// and calls set_workspace(), and sets the grid (p.grid).
struct AssignCall {
  AssignParams p;
  AnchorGrid grid;  // the CPU's, recognised on the host (p.grid points here); CUDA's lives on the device
  Tensor scores0, scores1, boxes0, boxes1, anchors, labels, gt_boxes, mask;  // contiguous inputs (1: the o2o head)
  Tensor fg, gidx, tscore, pick, rank, gap;
  bool stats = false;

  int64_t hbn() const { return p.H * p.B * p.N; }
  int64_t rank_slots() const { return stats ? p.B * p.M * kRankDepth : 0; }
  int64_t member_slots() const { return (hbn() + 1) / 2; }                 // int32 pairs
  int64_t start_slots() const { return (p.H * p.B * (p.M + 1) + 1) / 2; }  // int32 pairs
  int64_t workspace_size() const { return 3 * hbn() + 2 * rank_slots() + member_slots() + start_slots(); }
  void set_workspace(int64_t* ws) {
    p.claims = ws;
    p.claim_key = ws + hbn();
    p.all_key = ws + 2 * hbn();
    int64_t* rest = ws + 3 * hbn();
    p.rank_m = stats ? reinterpret_cast<float*>(rest) : nullptr;
    p.rank_a = stats ? rest + rank_slots() : nullptr;
    rest += 2 * rank_slots();
    p.members = reinterpret_cast<int*>(rest);
    p.member_start = reinterpret_cast<int*>(rest + member_slots());
  }
  AssignResult result() const { return {fg, gidx, tscore, pick, rank, gap}; }
};

inline AssignCall prepare_assign(const Tensor& scores, const Tensor& bboxes, const std::optional<Tensor>& scores2,
                                 const std::optional<Tensor>& bboxes2, const Tensor& anc_points,
                                 const Tensor& gt_labels, const Tensor& gt_bboxes, const Tensor& mask_gt,
                                 const HeadArgs& heads, double min_side, int64_t conflict, int64_t iou_type, double eps,
                                 bool with_stats) {
  AssignCall call;
  call.p = check_assign_args(scores, bboxes, scores2, bboxes2, anc_points, gt_labels, gt_bboxes, mask_gt, heads,
                             min_side, conflict, iou_type, eps);
  const AssignParams& c = call.p;
  // fp16/bf16 scores are read in place and widened per element (a (B, N, C) fp32 copy would
  // cost more than the assignment); boxes and anchors are small, made fp32 contiguous.
  call.scores0 = torch::stable::contiguous(scores);
  call.scores1 = c.H > 1 ? contiguous_as(*scores2, scores.scalar_type()) : call.scores0;
  call.boxes0 = contiguous_as(bboxes, ScalarType::Float);
  call.boxes1 = c.H > 1 ? contiguous_as(*bboxes2, ScalarType::Float) : call.boxes0;
  call.anchors = contiguous_as(anc_points, ScalarType::Float);
  call.labels = torch::stable::contiguous(gt_labels);
  call.gt_boxes = contiguous_as(gt_bboxes, ScalarType::Float);
  call.mask = torch::stable::contiguous(mask_gt);

  call.stats = with_stats && c.H == 2;
  call.fg = empty({c.H, c.B, c.N}, ScalarType::Bool, call.boxes0);
  call.gidx = empty({c.H, c.B, c.N}, ScalarType::Long, call.boxes0);
  call.tscore = empty({c.H, c.B, c.N}, ScalarType::Float, call.boxes0);
  const int64_t S = call.stats ? c.M : 0;
  call.pick = empty({c.B, S}, ScalarType::Long, call.boxes0);
  call.rank = empty({c.B, S}, ScalarType::Long, call.boxes0);
  call.gap = empty({c.B, S}, ScalarType::Float, call.boxes0);

  AssignParams& p = call.p;
  p.boxes[0] = ptr<float>(call.boxes0);
  p.boxes[1] = ptr<float>(call.boxes1);
  p.anc = ptr<float>(call.anchors);
  p.labels = ptr<int64_t>(call.labels);
  p.gt = ptr<float>(call.gt_boxes);
  p.mask = ptr<bool>(call.mask);
  p.fg = ptr<bool>(call.fg);
  p.gt_idx = ptr<int64_t>(call.gidx);
  p.scores = ptr<float>(call.tscore);
  return call;
}

// The CPU path's value checks and grid recognition, on host copies of the small inputs (on CPU
// tensors no copy). CUDA does neither on the host in the hot path (see cuda/assign_cuda.cpp).
inline void host_checks_and_grid(AssignCall& call) {
  const AssignParams& c = call.p;
  const Tensor lab = to_cpu(call.labels), gt = to_cpu(call.gt_boxes), anc = to_cpu(call.anchors),
               mk = to_cpu(call.mask);
  check_gt_values(ptr<int64_t>(lab), ptr<float>(gt), ptr<bool>(mk), c.B, c.M, c.C);
  check_anchor_values(ptr<float>(anc), c.N);
  call.grid = detect_grid(ptr<float>(anc), c.N);
  call.p.grid = &call.grid;
}

// M = 0 or no anchors: no positives, no picks.
inline void fill_empty(AssignCall& call) {
  torch::stable::zero_(call.fg);
  torch::stable::zero_(call.gidx);
  torch::stable::zero_(call.tscore);
  torch::stable::fill_(call.pick, -1);
  torch::stable::fill_(call.rank, -1);
  torch::stable::zero_(call.gap);
}

}  // namespace dualhead
