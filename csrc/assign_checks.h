// assign_checks.h — boundary checks and parameter unpacking of dualhead::assign, shared by
// the CPU and CUDA host code. Messages name the argument and the offending value or shape.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <string>
#include <vector>

#include "assign_core.h"
#include "dualhead_math.h"

namespace dualhead {

// Checks the arguments and fills the scalar fields of the kernel parameters (sizes, top-k,
// exponents, ...); the pointers are set by prepare_assign().
inline AssignParams check_assign_args(const at::Tensor& scores, const at::Tensor& bboxes,
                                      const c10::optional<at::Tensor>& scores2,
                                      const c10::optional<at::Tensor>& bboxes2, const at::Tensor& anc,
                                      const at::Tensor& labels, const at::Tensor& gt, const at::Tensor& mask,
                                      at::IntArrayRef topk, at::ArrayRef<double> exps, double min_side,
                                      int64_t conflict, int64_t kind, double eps) {
  AssignParams c;
  TORCH_CHECK(scores.dim() == 3, "pd_scores must be (B, N, C), got ", scores.sizes());
  c.B = scores.size(0);
  c.N = scores.size(1);
  c.C = scores.size(2);
  TORCH_CHECK(at::isFloatingType(scores.scalar_type()), "pd_scores must be a float tensor, got ", scores.scalar_type());
  TORCH_CHECK(bboxes.dim() == 3 && bboxes.size(0) == c.B && bboxes.size(1) == c.N && bboxes.size(2) == 4,
              "pd_bboxes must be (B, N, 4) = (", c.B, ", ", c.N, ", 4), got ", bboxes.sizes());
  TORCH_CHECK(at::isFloatingType(bboxes.scalar_type()), "pd_bboxes must be a float tensor, got ", bboxes.scalar_type());
  TORCH_CHECK(scores2.has_value() == bboxes2.has_value(), "scores2 and bboxes2 must be given together");
  if (scores2.has_value()) {
    c.H = 2;
    TORCH_CHECK(scores2->sizes() == scores.sizes(), "o2o_scores must match o2m_scores ", scores.sizes(), ", got ",
                scores2->sizes());
    TORCH_CHECK(scores2->scalar_type() == scores.scalar_type(), "o2o_scores dtype ", scores2->scalar_type(),
                " must match o2m_scores dtype ", scores.scalar_type());
    TORCH_CHECK(bboxes2->sizes() == bboxes.sizes(), "o2o_bboxes must be (B, N, 4), got ", bboxes2->sizes());
    TORCH_CHECK(at::isFloatingType(bboxes2->scalar_type()), "o2o_bboxes must be a float tensor");
  }
  TORCH_CHECK(anc.dim() == 2 && anc.size(0) == c.N && anc.size(1) == 2, "anc_points must be (N, 2) = (", c.N,
              ", 2), got ", anc.sizes());
  TORCH_CHECK(at::isFloatingType(anc.scalar_type()), "anc_points must be a float tensor, got ", anc.scalar_type());
  TORCH_CHECK(gt.dim() == 3 && gt.size(0) == c.B && gt.size(2) == 4, "gt_bboxes must be (B, M, 4) with B=", c.B,
              ", got ", gt.sizes());
  TORCH_CHECK(at::isFloatingType(gt.scalar_type()), "gt_bboxes must be a float tensor, got ", gt.scalar_type());
  c.M = gt.size(1);
  TORCH_CHECK(labels.dim() == 2 && labels.size(0) == c.B && labels.size(1) == c.M &&
                  labels.scalar_type() == at::kLong,
              "gt_labels must be int64 (B, M) = (", c.B, ", ", c.M, "), got ", labels.scalar_type(), " ",
              labels.sizes());
  // Anchors and ground truths are indexed with 32 bits inside the kernels (member lists,
  // packed conflict keys).
  TORCH_CHECK(c.N < (int64_t(1) << 31), "pd_scores has N=", c.N, " anchors, more than 2^31 - 1");
  TORCH_CHECK(c.M < (int64_t(1) << 31), "gt_bboxes has M=", c.M, " ground-truth slots, more than 2^31 - 1");
  TORCH_CHECK(mask.dim() == 2 && mask.size(0) == c.B && mask.size(1) == c.M && mask.scalar_type() == at::kBool,
              "mask_gt must be bool (B, M), got ", mask.scalar_type(), " ", mask.sizes());
  for (const at::Tensor* t : {&bboxes, &anc, &labels, &gt, &mask}) {
    TORCH_CHECK(t->device() == scores.device(), "all inputs must be on ", scores.device(), ", got one on ",
                t->device());
  }
  if (c.H == 2) {
    TORCH_CHECK(scores2->device() == scores.device() && bboxes2->device() == scores.device(),
                "o2o inputs must be on ", scores.device());
  }
  TORCH_CHECK(static_cast<int64_t>(topk.size()) == 2 * c.H, "topk must hold 2 values per head, got ", topk.size());
  TORCH_CHECK(static_cast<int64_t>(exps.size()) == 2 * c.H, "exps must hold 2 values per head, got ", exps.size());
  for (int64_t h = 0; h < c.H; ++h) {
    c.topk[h] = topk[2 * h];
    c.topk2[h] = topk[2 * h + 1];
    TORCH_CHECK(c.topk[h] >= 1 && c.topk[h] <= c.N, "topk must be in [1, N=", c.N, "], got ", c.topk[h]);
    TORCH_CHECK(c.topk2[h] >= 1 && c.topk2[h] <= c.N, "topk2 must be in [1, N=", c.N, "], got ", c.topk2[h]);
    const double a = exps[2 * h], b = exps[2 * h + 1];
    TORCH_CHECK(a >= 0 && a < 1e30, "alpha must be a finite number >= 0, got ", a);
    TORCH_CHECK(b >= 0 && b < 1e30, "beta must be a finite number >= 0, got ", b);
    c.alpha[h] = static_cast<float>(a);
    c.beta[h] = static_cast<float>(b);
  }
  TORCH_CHECK(min_side >= 0 && min_side < 1e30, "min_side must be a finite number >= 0, got ", min_side);
  TORCH_CHECK(conflict == 0 || conflict == 1, "conflict must be 0 (all) or 1 (claimants), got ", conflict);
  TORCH_CHECK(kind >= 0 && kind <= 3, "kind must be 0..3 (iou, giou, diou, ciou), got ", kind);
  TORCH_CHECK(eps >= 0 && eps < 1, "eps must be in [0, 1), got ", eps);
  c.min_side = static_cast<float>(min_side);
  c.eps = static_cast<float>(eps);
  c.conflict = static_cast<int>(conflict);
  c.kind = static_cast<int>(kind);
  return c;
}

// The message of an input value error (gt_value_error / anchor_value_error of assign_core.h) at
// ground-truth row `index` (b * M + g) or anchor `index`: what the CPU raises before any work,
// and what CUDA raises when its device check reports one. v: the box or anchor values.
inline std::string input_error_message(int code, int64_t index, int64_t label, const float* v, int64_t C, int64_t M) {
  const std::string where = code == kAnchorNotFinite
                                ? ""
                                : c10::str(" (image ", index / std::max<int64_t>(M, 1), ", slot ", index % std::max<int64_t>(M, 1), ")");
  switch (code) {
    case kBadLabel:
      return c10::str("gt_labels must be in [0, C=", C, ") for real ground truths, got ", label, where,
                      label == INT64_MIN ? " (what a NaN, infinite or huge float label becomes as int64)" : "");
    case kBoxNotFinite:
      return c10::str("gt_bboxes must be finite for real ground truths, got [", v[0], ", ", v[1], ", ", v[2], ", ", v[3],
                      "]", where);
    case kBoxInverted:
      return c10::str("gt_bboxes must be xyxy with x2 >= x1 and y2 >= y1, got [", v[0], ", ", v[1], ", ", v[2], ", ",
                      v[3], "]", where);
    default:
      return c10::str("anc_points must be finite, got (", v[0], ", ", v[1], ") at index ", index);
  }
}

// Host-side value checks (CPU path; CUDA on a grid-cache miss reads the anchors anyway). They
// raise ValueError (TORCH_CHECK_VALUE) like the Python checks of the reference path.
inline void check_gt_values(const int64_t* labels, const float* gt, const bool* mask, int64_t B, int64_t M, int64_t C) {
  for (int64_t r = 0; r < B * M; ++r) {
    if (!mask[r]) continue;
    const int code = gt_value_error(labels[r], gt + 4 * r, C);
    TORCH_CHECK_VALUE(code == kValueOk, input_error_message(code, r, labels[r], gt + 4 * r, C, M));
  }
}

inline void check_anchor_values(const float* anc, int64_t N) {
  for (int64_t a = 0; a < N; ++a) {
    const int code = anchor_value_error(anc + 2 * a);
    TORCH_CHECK_VALUE(code == kValueOk, input_error_message(code, a, 0, anc + 2 * a, 0, 0));
  }
}

// Recognise ultralytics' multi-level anchor grid: consecutive levels, each row-major with
// anchor (i + 0.5) * s, (j + 0.5) * s. Every anchor is compared exactly, so a match is a proof
// and anything else takes the general scan. O(N) (~10 us for N = 8400): cheaper and safer than
// caching on a data pointer that may be reused by another tensor.
inline std::vector<GridLevel> detect_grid(const float* anc, int64_t N) {
  std::vector<GridLevel> levels;
  int64_t p = 0;
  while (p < N) {
    const float s = anc[2 * p] * 2.f;
    if (!(s > 0.f) || !(s < 1e7f) || anc[2 * p + 1] != anc[2 * p] || static_cast<int>(levels.size()) >= kMaxLevels) return {};
    int64_t w = 0;
    while (p + w < N && anc[2 * (p + w) + 1] == anc[2 * p + 1]) ++w;
    int64_t h = 0;
    while (p + (h + 1) * w <= N) {
      bool ok = true;
      for (int64_t i = 0; i < w && ok; ++i) {
        const float* q = anc + 2 * (p + h * w + i);
        ok = q[0] == (static_cast<float>(i) + 0.5f) * s && q[1] == (static_cast<float>(h) + 0.5f) * s;
      }
      if (!ok) break;
      ++h;
    }
    if (h == 0) return {};
    levels.push_back(GridLevel{p, w, h, s});
    p += w * h;
  }
  return levels;
}

}  // namespace dualhead

namespace dualhead {

// The validated, contiguous inputs, the outputs and the parameter struct of one assign call;
// shared by the CPU and CUDA host code. The backend supplies the workspace (workspace_size()
// int64 slots, the first 3*H*B*N zeroed) and calls set_workspace().
struct AssignCall {
  AssignParams p;
  at::Tensor s0, s1, b0, b1, anc, lab, gt, mk;
  at::Tensor fg, gidx, tscore, pick, rank, gap;
  bool stats = false;

  int64_t hbn() const { return p.H * p.B * p.N; }
  int64_t rank_slots() const { return stats ? p.B * p.M * kRankDepth : 0; }
  int64_t member_slots() const { return (hbn() + 1) / 2; }                   // int32 pairs
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
};

inline AssignCall prepare_assign(const at::Tensor& scores, const at::Tensor& bboxes,
                                 const c10::optional<at::Tensor>& scores2, const c10::optional<at::Tensor>& bboxes2,
                                 const at::Tensor& anc_points, const at::Tensor& gt_labels, const at::Tensor& gt_bboxes,
                                 const at::Tensor& mask_gt, at::IntArrayRef topk, at::ArrayRef<double> exps,
                                 double min_side, int64_t conflict, int64_t kind, double eps, bool with_stats) {
  AssignCall call;
  call.p = check_assign_args(scores, bboxes, scores2, bboxes2, anc_points, gt_labels, gt_bboxes,
                             mask_gt, topk, exps, min_side, conflict, kind, eps);
  const AssignParams& c = call.p;
  // fp16/bf16 scores are read in place and widened per element (a (B, N, C) fp32 copy would
  // cost more than the assignment); boxes and anchors are small, made fp32 contiguous.
  call.s0 = scores.contiguous();
  call.s1 = c.H > 1 ? scores2->to(scores.scalar_type()).contiguous() : call.s0;
  call.b0 = bboxes.to(at::kFloat).contiguous();
  call.b1 = c.H > 1 ? bboxes2->to(at::kFloat).contiguous() : call.b0;
  call.anc = anc_points.to(at::kFloat).contiguous();
  call.lab = gt_labels.contiguous();
  call.gt = gt_bboxes.to(at::kFloat).contiguous();
  call.mk = mask_gt.contiguous();
  call.stats = with_stats && c.H == 2;
  const auto fopt = call.b0.options();
  call.fg = at::empty({c.H, c.B, c.N}, fopt.dtype(at::kBool));
  call.gidx = at::empty({c.H, c.B, c.N}, fopt.dtype(at::kLong));
  call.tscore = at::empty({c.H, c.B, c.N}, fopt);
  const int64_t S = call.stats ? c.M : 0;
  call.pick = at::empty({c.B, S}, fopt.dtype(at::kLong));
  call.rank = at::empty({c.B, S}, fopt.dtype(at::kLong));
  call.gap = at::empty({c.B, S}, fopt);

  AssignParams& p = call.p;
  p.n_levels = 0;  // the backend sets the grid (set_grid)
  p.boxes[0] = call.b0.data_ptr<float>();
  p.boxes[1] = call.b1.data_ptr<float>();
  p.anc = call.anc.data_ptr<float>();
  p.labels = call.lab.data_ptr<int64_t>();
  p.gt = call.gt.data_ptr<float>();
  p.mask = call.mk.data_ptr<bool>();
  p.fg = call.fg.data_ptr<bool>();
  p.gt_idx = call.gidx.data_ptr<int64_t>();
  p.scores = call.tscore.data_ptr<float>();
  return call;
}

inline void set_grid(AssignParams& p, const std::vector<GridLevel>& grid) {
  p.n_levels = static_cast<int>(grid.size());
  for (int l = 0; l < p.n_levels; ++l) p.grid[l] = grid[l];
}

// The CPU path's value checks and grid recognition, on host copies of the small inputs (on CPU
// tensors a no-op copy). CUDA does neither on the host in the hot path (see cuda/assign_cuda.cpp).
inline void host_checks_and_grid(AssignCall& call) {
  const AssignParams& c = call.p;
  const at::Tensor lab = call.lab.cpu(), gt = call.gt.cpu(), anc = call.anc.cpu(), mk = call.mk.cpu();
  check_gt_values(lab.data_ptr<int64_t>(), gt.data_ptr<float>(), mk.data_ptr<bool>(), c.B, c.M, c.C);
  check_anchor_values(anc.data_ptr<float>(), c.N);
  set_grid(call.p, detect_grid(anc.data_ptr<float>(), c.N));
}

// M = 0 or no anchors: no positives, no picks.
inline void fill_empty(AssignCall& call) {
  call.fg.zero_();
  call.gidx.zero_();
  call.tscore.zero_();
  call.pick.fill_(-1);
  call.rank.fill_(-1);
  call.gap.zero_();
}

}  // namespace dualhead

namespace dualhead {

// to_dense / to_dense_out argument checks and the functional form's allocation, shared by the
// CPU and CUDA backends.
inline void check_to_dense_args(const at::Tensor& labels, const at::Tensor& scores, const at::Tensor& out) {
  TORCH_CHECK(labels.scalar_type() == at::kLong, "labels must be int64, got ", labels.scalar_type());
  TORCH_CHECK(scores.scalar_type() == at::kFloat && scores.sizes() == labels.sizes(),
              "scores must be fp32 shaped like labels ", labels.sizes(), ", got ", scores.scalar_type(), " ",
              scores.sizes());
  TORCH_CHECK(out.scalar_type() == at::kFloat && out.is_contiguous() && out.dim() == labels.dim() + 1 &&
                  out.sizes().slice(0, labels.dim()) == labels.sizes() && out.size(-1) >= 1,
              "out must be a contiguous fp32 tensor of shape labels.shape + (C,) with C >= 1, got ", out.sizes());
  TORCH_CHECK(labels.device() == out.device() && scores.device() == out.device(),
              "labels, scores and out must be on one device");
}

template <typename OutFn>
at::Tensor to_dense_new(const at::Tensor& labels, const at::Tensor& scores, int64_t num_classes, OutFn out_fn) {
  TORCH_CHECK(num_classes >= 1, "num_classes must be >= 1, got ", num_classes);
  std::vector<int64_t> shape(labels.sizes().begin(), labels.sizes().end());
  shape.push_back(num_classes);
  at::Tensor out = at::empty(shape, scores.options().dtype(at::kFloat));
  out_fn(labels, scores, out);
  return out;
}

}  // namespace dualhead
