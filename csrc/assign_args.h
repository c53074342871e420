// assign_args.h — dualhead::assign's argument checks (ranks, shapes, dtypes, devices, scalar
// parameters; messages name the argument and the offending value or shape) and the validated
// call: contiguous inputs, outputs, the kernel parameter struct and the workspace layout, shared
// by the CPU and CUDA host code.
#pragma once

#include <algorithm>
#include <optional>
#include <tuple>
#include <vector>

#include <cmath>

#include "anchor_grid.h"
#include "assign_core.h"
#include "assign_settings.h"
#include "assign_values.h"
#include "host.h"

namespace dualhead {

using AssignResult = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;

// The schema's settings list (assign_settings.h), read by name: ints must be whole numbers,
// numbers finite; every message names the setting.
struct SettingsReader {
  const std::vector<double>& v;
  double num(AssignSetting i) const { return v[i]; }
  int64_t whole(AssignSetting i, const char* name) const {
    const double x = v[i];
    DH_CHECK(std::isfinite(x) && x == std::floor(x) && std::fabs(x) < 9007199254740992.0, name,
             " must be an integer, got ", x);
    return static_cast<int64_t>(x);
  }
};

// Checks the arguments and fills the scalar fields of the kernel parameters (sizes, top-k,
// exponents, ...); the pointers are set by prepare_assign().
inline AssignParams check_assign_args(const Tensor& scores, const Tensor& bboxes, const std::optional<Tensor>& scores2,
                                      const std::optional<Tensor>& bboxes2, const Tensor& anc, const Tensor& labels,
                                      const Tensor& gt, const Tensor& mask, const std::vector<double>& settings) {
  AssignParams c;
  DH_CHECK(settings.size() == static_cast<size_t>(kAssignSettingCount), "settings must hold ", int(kAssignSettingCount),
           " values (", assign_setting_names(), "), got ", settings.size());
  const SettingsReader set{settings};
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
  // settings once, in HeadSettings and Convention, with the names users know.
  const AssignSetting head_set[2][4] = {{kSet_o2m_topk, kSet_o2m_topk2, kSet_o2m_alpha, kSet_o2m_beta},
                                        {kSet_o2o_topk, kSet_o2o_topk2, kSet_o2o_alpha, kSet_o2o_beta}};
  static const char* const kHeadName[2] = {"o2m", "o2o"};
  for (int h = 0; h < c.H; ++h) {
    const std::string name = kHeadName[h];
    const int64_t topk = set.whole(head_set[h][0], (name + "_topk").c_str());
    const int64_t topk2 = set.whole(head_set[h][1], (name + "_topk2").c_str());
    const double alpha = set.num(head_set[h][2]), beta = set.num(head_set[h][3]);
    DH_CHECK(topk >= 1 && topk <= c.N, name, "_topk must be in [1, N=", c.N, "], got ", topk);
    DH_CHECK(topk2 >= 1 && topk2 <= topk, name, "_topk2 must be in [1, ", name, "_topk=", topk, "], got ", topk2);
    DH_CHECK(alpha >= 0 && alpha < 1e30, name, "_alpha must be a finite number >= 0, got ", alpha);
    DH_CHECK(beta >= 0 && beta < 1e30, name, "_beta must be a finite number >= 0, got ", beta);
    c.head[h] = HeadSettings{topk, topk2, static_cast<float>(alpha), static_cast<float>(beta)};
  }
  const int64_t order = set.whole(kSet_order, "order"), conflict = set.whole(kSet_conflict, "conflict");
  const int64_t round_trip = set.whole(kSet_round_trip, "round_trip"), iou_type = set.whole(kSet_iou_type, "iou_type");
  const double floor_below = set.num(kSet_floor_below), floor_to = set.num(kSet_floor_to);
  const double margin = set.num(kSet_margin), eps = set.num(kSet_eps);
  DH_CHECK(order == kInBoxFirst || order == kTopkFirst, "order must be 0 (in_box_first) or 1 (topk_first), got ",
           order);
  DH_CHECK(conflict >= kConflictAll && conflict <= kConflictAllPairs,
           "conflict must be 0 (all), 1 (claimants) or 2 (all_pairs), got ", conflict);
  DH_CHECK(floor_below >= 0 && floor_below < 1e30, "floor_below must be a finite number >= 0, got ", floor_below);
  DH_CHECK(floor_to >= 0 && floor_to < 1e30, "floor_to must be a finite number >= 0, got ", floor_to);
  DH_CHECK(round_trip == 0 || round_trip == 1, "round_trip must be 0 or 1, got ", round_trip);
  DH_CHECK(round_trip == 1 || (floor_below == 0 && floor_to == 0),
           "a small-box floor needs round_trip=1 (ultralytics 8.4's region), got floor_below=", floor_below,
           " floor_to=", floor_to);
  DH_CHECK(margin >= 0 && margin < 1e30, "margin must be a finite number >= 0, got ", margin);
  DH_CHECK(iou_type >= kIoU && iou_type <= kCIoU, "iou_type must be 0..3 (iou, giou, diou, ciou), got ", iou_type);
  DH_CHECK(eps >= 0 && eps < 1, "eps must be in [0, 1), got ", eps);
  c.conv.order = static_cast<int>(order);
  c.conv.conflict = static_cast<int>(conflict);
  c.conv.floor_below = static_cast<float>(floor_below);
  c.conv.floor_to = static_cast<float>(floor_to);
  c.conv.round_trip = round_trip == 1;
  c.conv.margin = static_cast<float>(margin);
  c.eps = static_cast<float>(eps);
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
                                 const std::vector<double>& settings, bool with_stats) {
  AssignCall call;
  call.p = check_assign_args(scores, bboxes, scores2, bboxes2, anc_points, gt_labels, gt_bboxes, mask_gt, settings);
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
