// CUDA backend of dualhead::assign and dualhead::to_dense: checks, workspace, launches.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdlib>

#include "../assign_checks.h"
#include "launchers.h"

namespace dualhead {
namespace {

// Ground truths with more candidate cells than this are walked by a warp instead of a thread.
// Untuned until a GPU has run the benchmarks: DUALHEAD_CUDA_SPLIT_CELLS overrides it (read per
// call, ~0.1 us, so tests and the GPU script can vary it; any value gives the same results).
int64_t split_cells() {
  const char* e = std::getenv("DUALHEAD_CUDA_SPLIT_CELLS");
  return e != nullptr && *e != '\0' ? std::atoll(e) : int64_t(32);
}

int score_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return 0;
    case at::kHalf: return 1;
    case at::kBFloat16: return 2;
    case at::kDouble: return 3;
    default: TORCH_CHECK(false, "pd_scores must be fp32, fp16, bf16 or fp64, got ", t);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> assign_cuda(
    const at::Tensor& scores, const at::Tensor& bboxes, const c10::optional<at::Tensor>& scores2,
    const c10::optional<at::Tensor>& bboxes2, const at::Tensor& anc_points, const at::Tensor& gt_labels,
    const at::Tensor& gt_bboxes, const at::Tensor& mask_gt, at::IntArrayRef topk, at::ArrayRef<double> exps,
    double min_side, int64_t conflict, int64_t kind, double eps, bool with_stats) {
  const c10::cuda::CUDAGuard guard(scores.device());
  AssignCall call = prepare_assign(scores, bboxes, scores2, bboxes2, anc_points, gt_labels, gt_bboxes, mask_gt, topk,
                                   exps, min_side, conflict, kind, eps, with_stats);
  AssignParams& p = call.p;
  if (p.B * p.N == 0 || p.M == 0) {
    fill_empty(call);
    return {call.fg, call.gidx, call.tscore, call.pick, call.rank, call.gap};
  }
  // All scratch in one allocation (each at::empty costs a few microseconds of host time, and
  // the whole call aims at ~100 us), carved into 8-byte-aligned pieces. Piece 0: the split-row
  // queue length, then the AssignCall workspace, whose first 3*H*B*N slots (claims and keys)
  // start at zero like the queue length; everything else is written before it is read.
  const int64_t HB = p.H * p.B;
  AssignScratch s{};
  s.split_cells = split_cells();
  s.kmax = std::max(p.topk[0], p.H > 1 ? p.topk[1] : 0);
  s.k2 = std::max(p.topk2[0], p.H > 1 ? p.topk2[1] : 0);
  int64_t slots = 0;
  const auto piece = [&slots](int64_t count, int64_t elem_bytes) {
    const int64_t at = slots;
    slots += (count * elem_bytes + 7) / 8;
    return at;
  };
  const int64_t o_ws = piece(1 + call.workspace_size(), 8);
  const int64_t o_vals = piece(p.B * p.M * 2 * s.kmax, 4), o_idxs = piece(p.B * p.M * 2 * s.kmax, 8);
  const int64_t o_split = piece(p.B * p.M, 8);
  const int64_t o_mf = piece(HB * p.N, 4), o_of = piece(HB * p.N, 4), o_ga = piece(HB * p.N, 8);
  const int64_t o_count = piece(HB * p.M, 4), o_cursor = piece(HB * p.M, 4);
  const int64_t o_mg = piece(HB * p.M, 4), o_og = piece(HB * p.M, 4);
  const int64_t o_lv = piece(HB * p.M * s.k2, 4), o_li = piece(HB * p.M * s.k2, 8);
  at::Tensor scratch = at::empty({slots}, call.b0.options().dtype(at::kLong));
  scratch.narrow(0, o_ws, 1 + 3 * call.hbn()).zero_();
  int64_t* base = scratch.data_ptr<int64_t>();
  const auto f32 = [base](int64_t o) { return reinterpret_cast<float*>(base + o); };
  const auto i32 = [base](int64_t o) { return reinterpret_cast<int*>(base + o); };
  s.n_split = i32(o_ws);
  call.set_workspace(base + o_ws + 1);
  s.vals = f32(o_vals), s.idxs = base + o_idxs, s.split_rows = base + o_split;
  s.mf = f32(o_mf), s.of = f32(o_of), s.ga = base + o_ga;
  s.count = i32(o_count), s.cursor = i32(o_cursor);
  s.mg = f32(o_mg), s.og = f32(o_og);
  s.lv = f32(o_lv), s.li = base + o_li;
  if (call.stats) {
    s.pick = call.pick.data_ptr<int64_t>(), s.rank = call.rank.data_ptr<int64_t>(), s.gap = call.gap.data_ptr<float>();
  }
  launch_assign(p, call.s0.data_ptr(), call.s1.data_ptr(), score_dtype(call.s0.scalar_type()), s,
                c10::cuda::getCurrentCUDAStream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {call.fg, call.gidx, call.tscore, call.pick, call.rank, call.gap};
}

// to_dense on CUDA needs no custom kernel: zero + scatter of the in-range labels.
void to_dense_out_cuda(const at::Tensor& labels, const at::Tensor& scores, at::Tensor out) {
  check_to_dense_args(labels, scores, out);
  const int64_t C = out.size(-1);
  const at::Tensor ok = labels.ge(0).logical_and(labels.lt(C));
  out.zero_();
  out.scatter_(-1, labels.clamp(0, C - 1).unsqueeze(-1), scores.mul(ok).unsqueeze(-1));
}

at::Tensor to_dense_cuda(const at::Tensor& labels, const at::Tensor& scores, int64_t num_classes) {
  return to_dense_new(labels, scores, num_classes, to_dense_out_cuda);
}

}  // namespace

TORCH_LIBRARY_IMPL(dualhead, CUDA, m) {
  m.impl("assign", &assign_cuda);
  m.impl("to_dense", &to_dense_cuda);
  m.impl("to_dense_out", &to_dense_out_cuda);
}

}  // namespace dualhead
