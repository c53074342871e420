// CPU backend of dualhead::assign and dualhead::to_dense.
//
// Pass 1, parallel over (image, ground truth): enumerate the ground truth's candidate anchors
//   (grid cells under its region when anc_points is the standard grid, else a scan), evaluate
//   IoU + prior + metric for every head on each, keep each head's top-k in a sorted list, and
//   publish (a) per anchor the packed max-(overlap, -gt) key over all candidates ('all'
//   conflicts) and (b) the claims of the kept top-k (count + packed key over claimants).
//   Max of packed keys and counts commute, so the atomics give bitwise-deterministic results.
// Pass 2, parallel over images: resolve each anchor (single claimant / conflict winner),
//   re-evaluate the final pair with the same math, apply topk2, take per-ground-truth maxima,
//   write the compact targets.
// Pass 3 (dual calls), parallel over images: consistency statistics per ground truth.
// No (B, M, N) buffer anywhere: workspace is O(B*N + B*M*k).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../assign_checks.h"
#include "../dualhead_math.h"

namespace dualhead {
namespace {

// Scratch memory reused across calls on the calling thread, never returned to the caller (so
// reuse is invisible). On small machines first-touching fresh pages costs ~1.3 ms/MB while
// re-zeroing mapped ones costs ~50x less; the workspace is a few MB per call.
inline int64_t* workspace(int64_t n) {
  thread_local at::Tensor ws;
  if (!ws.defined() || ws.numel() < n) ws = at::empty({std::max<int64_t>(n, 1)}, at::TensorOptions().dtype(at::kLong));
  return ws.data_ptr<int64_t>();
}

inline void atomic_max_u64(int64_t* slot, uint64_t v) {
  uint64_t* p = reinterpret_cast<uint64_t*>(slot);
  uint64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (v > cur && !__atomic_compare_exchange_n(p, &cur, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
}

constexpr int64_t kPrefetch = 16;  // candidates ahead whose loads are issued early

struct Inputs {
  const float* boxes[2];
  const float* anc;
  const int64_t* labels;
  const float* gt;
  const bool* mask;
};

struct Work {
  int64_t* claims;    // (H, B, N) claimants per anchor
  int64_t* claim_key; // (H, B, N) max packed (o, -g) over claimants
  int64_t* all_key;   // (H, B, N) max packed (o, -g) over all candidates (conflict 'all')
  float* rank_m;      // (B, M, kRankDepth) head 0's best candidates by metric (statistics), or null
  int64_t* rank_a;    // (B, M, kRankDepth) their anchors
};

// Visit the candidate anchors of one region in increasing anchor order.
template <typename F>
inline void for_each_candidate(const Box& r, const float* anc, int64_t N, const std::vector<GridLevel>& grid, F&& f) {
  if (grid.empty()) {
    for (int64_t a = 0; a < N; ++a)
      if (in_region(anc[2 * a], anc[2 * a + 1], r)) f(a);
    return;
  }
  for (const GridLevel& L : grid) {
    int64_t i0, i1, j0, j1;
    grid_cells(r.x1, r.x2, L.stride, L.w, &i0, &i1);
    grid_cells(r.y1, r.y2, L.stride, L.h, &j0, &j1);
    for (int64_t j = j0; j <= j1; ++j) {
      for (int64_t i = i0; i <= i1; ++i) {
        const int64_t a = L.start + j * L.w + i;
        if (in_region(anc[2 * a], anc[2 * a + 1], r)) f(a);
      }
    }
  }
}

template <typename S>
inline void eval_pair(const AssignConfig& c, const Inputs& in, const S* scores, int h, int64_t b, const Box& gb,
                      float gt_atan, int64_t label, int64_t a, float* o, float* m) {
  const int64_t ba = b * c.N + a;
  *o = sanitize_overlap(box_iou_pre(gb, gt_atan, load_box(in.boxes[h] + 4 * ba), c.kind));
  *m = align_metric(static_cast<float>(scores[ba * c.C + label]), *o, c.alpha[h], c.beta[h]);
}

template <typename S>
void pass_candidates(const AssignConfig& c, const Inputs& in, const S* const* scores,
                     const std::vector<GridLevel>& grid, Work w) {
  const int64_t rows = c.B * c.M;
  const int64_t kmax = std::max(c.topk[0], c.H > 1 ? c.topk[1] : 0);
  const bool own_rank_list = w.rank_m && c.topk[0] < kRankDepth;
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> vals(2 * kmax);
    std::vector<int64_t> idxs(2 * kmax);
    std::vector<int64_t> cand;
    for (int64_t row = begin; row < end; ++row) {
      if (!in.mask[row]) continue;
      const int64_t b = row / c.M, g = row % c.M, label = in.labels[row];
      const Box gb = load_box(in.gt + 4 * row);
      const Box region = candidate_region(gb, c.min_side);
      const float gt_atan = aspect_atan(gb);
      int len[2] = {0, 0}, rank_len = 0;
      // Collect the candidates first, then evaluate them with the loads of the candidate
      // kPrefetch places ahead in flight: each reads one class score from the (B, N, C) tensor,
      // a cache miss per anchor that dominated the pass when taken one at a time.
      cand.clear();
      for_each_candidate(region, in.anc, c.N, grid, [&](int64_t a) { cand.push_back(a); });
      const int64_t nc = static_cast<int64_t>(cand.size());
      for (int64_t q = 0; q < nc; ++q) {
        if (q + kPrefetch < nc) {
          const int64_t ba = b * c.N + cand[q + kPrefetch];
          for (int h = 0; h < c.H; ++h) {
            __builtin_prefetch(scores[h] + ba * c.C + label);
            __builtin_prefetch(in.boxes[h] + 4 * ba);
          }
        }
        const int64_t a = cand[q];
        for (int h = 0; h < c.H; ++h) {
          float o, m;
          eval_pair(c, in, scores[h], h, b, gb, gt_atan, label, a, &o, &m);
          topk_insert(vals.data() + h * kmax, idxs.data() + h * kmax, &len[h], static_cast<int>(c.topk[h]), m, a);
          if (c.conflict == 0 && o > 0.f) atomic_max_u64(w.all_key + (h * c.B + b) * c.N + a, pack_overlap_key(o, g));
          if (h == 0 && own_rank_list)
            topk_insert(w.rank_m + row * kRankDepth, w.rank_a + row * kRankDepth, &rank_len, kRankDepth, m, a);
        }
      }
      if (w.rank_m) {
        if (!own_rank_list)  // head 0's top-k list is at least as deep: its prefix is the ordering
          for (rank_len = 0; rank_len < std::min(len[0], kRankDepth); ++rank_len) {
            w.rank_m[row * kRankDepth + rank_len] = vals[rank_len];
            w.rank_a[row * kRankDepth + rank_len] = idxs[rank_len];
          }
        for (int j = rank_len; j < kRankDepth; ++j) w.rank_a[row * kRankDepth + j] = -1;  // never matches
      }
      for (int h = 0; h < c.H; ++h) {
        const int64_t* ix = idxs.data() + h * kmax;
        const int keep = topk_keep_count(vals.data() + h * kmax, ix, len[h], static_cast<int>(c.topk[h]));
        for (int j = 0; j < keep; ++j) {
          const int64_t slot = (h * c.B + b) * c.N + ix[j];
          float o, m;
          eval_pair(c, in, scores[h], h, b, gb, gt_atan, label, ix[j], &o, &m);
          __atomic_fetch_add(w.claims + slot, 1, __ATOMIC_RELAXED);
          atomic_max_u64(w.claim_key + slot, pack_overlap_key(o, g));
        }
      }
    }
  });
}

struct Out {
  bool* fg;
  int64_t* gt_idx;
  float* scores;
};

template <typename S>
void pass_anchors(const AssignConfig& c, const Inputs& in, const S* const* scores, Work w, Out out) {
  at::parallel_for(0, c.B * c.H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> mf(c.N), of(c.N), mg(c.M), og(c.M);
    std::vector<int64_t> ga(c.N);
    std::vector<float> lv;
    std::vector<int64_t> li;
    std::vector<int> ll;
    for (int64_t hb = begin; hb < end; ++hb) {
      const int h = static_cast<int>(hb / c.B);
      const int64_t b = hb % c.B, base = hb * c.N;
      const int64_t* lab = in.labels + b * c.M;
      const float* gtb = in.gt + 4 * b * c.M;
      const bool* mk = in.mask + b * c.M;
      // 1. resolve each claimed anchor, re-evaluate its final pair (0 if not a candidate)
      for (int64_t a = 0; a < c.N; ++a) {
        const int64_t n = w.claims[base + a];
        mf[a] = of[a] = 0.f;
        if (n == 0) {
          ga[a] = -1;
          continue;
        }
        int64_t g;
        if (n == 1 || c.conflict == 1) {
          g = key_gt(static_cast<uint64_t>(w.claim_key[base + a]));
        } else {  // ultralytics: argmax of o over all ground truths, index 0 when all are 0
          const uint64_t k = static_cast<uint64_t>(w.all_key[base + a]);
          g = key_overlap(k) > 0.f ? key_gt(k) : 0;
        }
        ga[a] = g;
        const Box gb = load_box(gtb + 4 * g);
        if (mk[g] && in_region(in.anc[2 * a], in.anc[2 * a + 1], candidate_region(gb, c.min_side)))
          eval_pair(c, in, scores[h], h, b, gb, aspect_atan(gb), lab[g], a, &of[a], &mf[a]);
      }
      // 2. topk2: each ground truth keeps its topk2 best remaining positives by metric
      if (c.topk2[h] != c.topk[h]) {
        const int k2 = static_cast<int>(c.topk2[h]);
        lv.assign(c.M * k2, 0.f);
        li.assign(c.M * k2, 0);
        ll.assign(c.M, 0);
        for (int64_t a = 0; a < c.N; ++a)
          if (ga[a] >= 0) topk_insert(lv.data() + ga[a] * k2, li.data() + ga[a] * k2, &ll[ga[a]], k2, mf[a], a);
        for (int64_t g = 0; g < c.M; ++g)
          ll[g] = topk_keep_count(lv.data() + g * k2, li.data() + g * k2, ll[g], k2);
        for (int64_t a = 0; a < c.N; ++a) {
          if (ga[a] < 0) continue;
          const int64_t* l = li.data() + ga[a] * k2;
          if (std::find(l, l + ll[ga[a]], a) == l + ll[ga[a]]) ga[a] = -1;
        }
      }
      // 3. per ground truth maxima over the final positives, then the targets
      std::fill(mg.begin(), mg.end(), 0.f);
      std::fill(og.begin(), og.end(), 0.f);
      for (int64_t a = 0; a < c.N; ++a) {
        if (ga[a] < 0) continue;
        mg[ga[a]] = std::max(mg[ga[a]], mf[a]);
        og[ga[a]] = std::max(og[ga[a]], of[a]);
      }
      for (int64_t a = 0; a < c.N; ++a) {
        const bool fg = ga[a] >= 0;
        const int64_t g = fg ? ga[a] : 0;
        out.fg[base + a] = fg;
        out.gt_idx[base + a] = g;
        out.scores[base + a] = fg ? target_score(mf[a], og[g], mg[g], c.eps) : 0.f;
      }
    }
  });
}

// Per ground truth of a dual call: the o2o pick (largest o2o target, smaller anchor on ties),
// its rank in the o2m ordering (position in the kRankDepth-deep list; kRankDepth when deeper or
// not a candidate) and the supervision gap A = t_o2o,i - 1[i in O] t_o2m,i + sum_{O \ i} t_o2m.
void pass_stats(const AssignConfig& c, const bool* mask, Work w, Out out, int64_t* pick, int64_t* rank, float* gap) {
  at::parallel_for(0, c.B, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> tpick(c.M), omega(c.M);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t o2m = b * c.N, o2o = (c.B + b) * c.N, r0 = b * c.M;
      std::fill(tpick.begin(), tpick.end(), -1.f);
      std::fill(omega.begin(), omega.end(), 0.f);
      for (int64_t g = 0; g < c.M; ++g) pick[r0 + g] = -1;
      for (int64_t a = 0; a < c.N; ++a) {
        if (out.fg[o2o + a]) {
          const int64_t g = out.gt_idx[o2o + a];
          if (out.scores[o2o + a] > tpick[g]) {  // anchors ascend: '>' keeps the smaller on ties
            tpick[g] = out.scores[o2o + a];
            pick[r0 + g] = a;
          }
        }
        if (out.fg[o2m + a]) omega[out.gt_idx[o2m + a]] += out.scores[o2m + a];
      }
      for (int64_t g = 0; g < c.M; ++g) {
        const int64_t row = r0 + g, i = pick[row];
        if (!mask[row]) {
          rank[row] = -1;
          gap[row] = 0.f;  // padding: 0, not NaN (opcheck/compile compare outputs bitwise)
          continue;
        }
        if (i < 0) {
          rank[row] = -1;
          gap[row] = omega[g];
          continue;
        }
        int j = 0;
        while (j < kRankDepth && w.rank_a[row * kRankDepth + j] != i) ++j;
        rank[row] = j;
        const float ti = (out.fg[o2m + i] && out.gt_idx[o2m + i] == g) ? out.scores[o2m + i] : 0.f;
        gap[row] = tpick[g] - ti + (omega[g] - ti);
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> assign_cpu(
    const at::Tensor& scores, const at::Tensor& bboxes, const c10::optional<at::Tensor>& scores2,
    const c10::optional<at::Tensor>& bboxes2, const at::Tensor& anc_points, const at::Tensor& gt_labels,
    const at::Tensor& gt_bboxes, const at::Tensor& mask_gt, at::IntArrayRef topk, at::ArrayRef<double> exps,
    double min_side, int64_t conflict, int64_t kind, double eps, bool with_stats) {
  const AssignConfig c = check_assign_args(scores, bboxes, scores2, bboxes2, anc_points, gt_labels, gt_bboxes,
                                           mask_gt, topk, exps, min_side, conflict, kind, eps);
  // fp16/bf16 scores are read in place and widened per element (a (B, N, C) fp32 copy would
  // cost more than the assignment); boxes and anchors are small, made fp32 contiguous.
  const at::Tensor s0 = scores.contiguous();
  const at::Tensor s1 = c.H > 1 ? scores2->to(scores.scalar_type()).contiguous() : s0;
  const at::Tensor b0 = bboxes.to(at::kFloat).contiguous();
  const at::Tensor b1 = c.H > 1 ? bboxes2->to(at::kFloat).contiguous() : b0;
  const at::Tensor anc = anc_points.to(at::kFloat).contiguous();
  const at::Tensor lab = gt_labels.contiguous();
  const at::Tensor gt = gt_bboxes.to(at::kFloat).contiguous();
  const at::Tensor mk = mask_gt.contiguous();
  check_gt_values(lab.data_ptr<int64_t>(), gt.data_ptr<float>(), mk.data_ptr<bool>(), c.B * c.M, c.C);

  const auto fopt = b0.options();
  at::Tensor fg = at::empty({c.H, c.B, c.N}, fopt.dtype(at::kBool));
  at::Tensor gidx = at::empty({c.H, c.B, c.N}, fopt.dtype(at::kLong));
  at::Tensor tscore = at::empty({c.H, c.B, c.N}, fopt);
  const bool stats = with_stats && c.H == 2;
  const int64_t S = stats ? c.M : 0;
  // Workspace: claims, claim keys, all-candidate keys (zeroed), rank lists (not zeroed).
  const int64_t HBN = c.H * c.B * c.N, R = stats ? c.B * c.M * kRankDepth : 0;
  int64_t* ws = workspace(3 * HBN + 2 * R);
  at::parallel_for(0, 3 * HBN, 1 << 16, [&](int64_t b, int64_t e) { std::fill(ws + b, ws + e, int64_t(0)); });
  at::Tensor pick = at::empty({c.B, S}, fopt.dtype(at::kLong)), rank = at::empty({c.B, S}, fopt.dtype(at::kLong));
  at::Tensor gap = at::empty({c.B, S}, fopt);

  const Inputs in{{b0.data_ptr<float>(), b1.data_ptr<float>()}, anc.data_ptr<float>(), lab.data_ptr<int64_t>(),
                  gt.data_ptr<float>(), mk.data_ptr<bool>()};
  const Work w{ws, ws + HBN, ws + 2 * HBN, stats ? reinterpret_cast<float*>(ws + 3 * HBN) : nullptr,
               stats ? ws + 3 * HBN + R : nullptr};
  const Out out{fg.data_ptr<bool>(), gidx.data_ptr<int64_t>(), tscore.data_ptr<float>()};
  const std::vector<GridLevel> grid = detect_grid(in.anc, c.N);

  if (c.B * c.N > 0 && c.M > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, s0.scalar_type(), "dualhead_assign_cpu", [&] {
      const scalar_t* sp[2] = {s0.data_ptr<scalar_t>(), s1.data_ptr<scalar_t>()};
      pass_candidates<scalar_t>(c, in, sp, grid, w);
      pass_anchors<scalar_t>(c, in, sp, w, out);
    });
    if (stats) pass_stats(c, in.mask, w, out, pick.data_ptr<int64_t>(), rank.data_ptr<int64_t>(), gap.data_ptr<float>());
  } else if (c.B * c.N > 0) {  // M = 0: no positives
    fg.zero_();
    gidx.zero_();
    tscore.zero_();
  }
  if (stats && c.M > 0 && c.B * c.N == 0) {  // no anchors: no picks
    pick.fill_(-1);
    rank.fill_(-1);
    gap.zero_();
  }
  return {fg, gidx, tscore, pick, rank, gap};
}

void to_dense_out_cpu(const at::Tensor& labels, const at::Tensor& scores, at::Tensor out) {
  TORCH_CHECK(labels.scalar_type() == at::kLong, "labels must be int64, got ", labels.scalar_type());
  TORCH_CHECK(scores.scalar_type() == at::kFloat && scores.sizes() == labels.sizes(),
              "scores must be fp32 shaped like labels ", labels.sizes(), ", got ", scores.scalar_type(), " ",
              scores.sizes());
  TORCH_CHECK(out.scalar_type() == at::kFloat && out.is_contiguous() && out.dim() == labels.dim() + 1 &&
                  out.sizes().slice(0, labels.dim()) == labels.sizes(),
              "out must be a contiguous fp32 tensor of shape labels.shape + (C,), got ", out.sizes());
  const int64_t C = out.size(-1), n = labels.numel();
  TORCH_CHECK(C >= 1, "num_classes must be >= 1, got ", C);
  const at::Tensor l = labels.contiguous(), s = scores.contiguous();
  const int64_t* lp = l.data_ptr<int64_t>();
  const float* sp = s.data_ptr<float>();
  float* op = out.data_ptr<float>();
  // One pass: zero the row and write the one score (a labels out of range writes nothing).
  at::parallel_for(0, n, 2048, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float* row = op + i * C;
      std::fill(row, row + C, 0.f);
      if (lp[i] >= 0 && lp[i] < C) row[lp[i]] = sp[i];
    }
  });
}

at::Tensor to_dense_cpu(const at::Tensor& labels, const at::Tensor& scores, int64_t num_classes) {
  TORCH_CHECK(num_classes >= 1, "num_classes must be >= 1, got ", num_classes);
  std::vector<int64_t> shape(labels.sizes().begin(), labels.sizes().end());
  shape.push_back(num_classes);
  at::Tensor out = at::empty(shape, scores.options().dtype(at::kFloat));
  to_dense_out_cpu(labels, scores, out);
  return out;
}

at::Tensor anchor_grid_cpu(const at::Tensor& anc_points) {
  TORCH_CHECK(anc_points.dim() == 2 && anc_points.size(1) == 2, "anc_points must be (N, 2), got ", anc_points.sizes());
  const at::Tensor anc = anc_points.to(at::kFloat).contiguous();
  const std::vector<GridLevel> grid = detect_grid(anc.data_ptr<float>(), anc.size(0));
  at::Tensor out = at::empty({static_cast<int64_t>(grid.size()), 4}, anc.options().dtype(at::kDouble));
  for (size_t i = 0; i < grid.size(); ++i) {
    double* r = out.data_ptr<double>() + 4 * i;
    r[0] = grid[i].start, r[1] = grid[i].w, r[2] = grid[i].h, r[3] = grid[i].stride;
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dualhead, CPU, m) {
  m.impl("anchor_grid", &anchor_grid_cpu);
  m.impl("assign", &assign_cpu);
  m.impl("to_dense", &to_dense_cpu);
  m.impl("to_dense_out", &to_dense_out_cpu);
}

}  // namespace dualhead
