// CPU backend of dualhead::assign and dualhead::to_dense.
//
// The stages live in csrc/assign_core.h (shared with CUDA); this file decides who runs them:
// pass 1, parallel_for over (image, ground truth) rows: candidates, IoU + prior + metric for
// every head, top-k lists, conflict keys and claims (atomics on packed keys commute, so results
// are bitwise identical for any thread count); pass 2, parallel over (head, image): the resolve
// phases (conflicts, member lists, topk2, maxima, compact targets); pass 3 (dual calls),
// parallel over ground truths: statistics.
// No (B, M, N) buffer anywhere: workspace is O(B*N + B*M*k).
#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Half.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "../assign_args.h"
#include "../assign_core.h"
#include "../host.h"

namespace dualhead {
namespace {

constexpr int64_t kPrefetch = 16;  // candidates ahead whose loads are issued early

// Scratch memory reused across calls on the calling thread, never returned to the caller (so
// reuse is invisible). First-touching fresh pages (a page fault each) costs far more than
// re-zeroing mapped ones, and the workspace is a few MB per call.
int64_t* workspace(int64_t n) {
  thread_local std::vector<int64_t> ws;
  if (static_cast<int64_t>(ws.size()) < n) ws.resize(n);
  return ws.data();
}

// The pred_atan cache (assign_core.h), reused across calls on the calling thread like the
// workspace: each call takes a new generation, so stale entries never match and nothing is
// cleared (only when the 32-bit generation wraps, or for memory that is new).
struct AtanCache {
  uint64_t* data;
  uint32_t gen;
};
AtanCache atan_cache(int64_t n) {
  thread_local std::vector<uint64_t> buf;
  thread_local uint32_t gen = 0;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(n, 0);  // new entries: generation 0, never current
  if (++gen == 0) {
    std::fill(buf.begin(), buf.end(), uint64_t(0));
    gen = 1;
  }
  return {buf.data(), gen};
}

// The CPU walks a row's candidates sequentially by default (fastest here). DUALHEAD_CPU_TILES=1
// runs instead what the CUDA warp runs: the tile phases of assign_core.h, lane after lane, so the
// CPU tests prove that logic bitwise against the sequential pass and the reference.
bool cpu_tiles() {
  const char* e = std::getenv("DUALHEAD_CPU_TILES");
  return e != nullptr && e[0] == '1';
}

// The merge phases of the staged tile into every list of T (CUDA: warp_merge_staged).
void merge_staged(const AssignParams& p, const GtRow& r, TileLists& T) {
  for (int x = 0; x < kLists; ++x) {
    const int cap = list_cap(p, r, x);
    if (!tile_wants(T, x, cap)) continue;
    for (int lane = 0; lane < kTile; ++lane) tile_merge(T, x, cap, lane);
    const int n = tile_merged_len(T, x, cap);
    for (int lane = 0; lane < kTile; ++lane) tile_commit(T, x, n, lane);
    T.len[x] = n;
  }
}

// One row through the tile phases, lane after lane: what gt_tiles_kernel's warp does, or for a
// row of more than kBigRowCells cells what gt_big_kernel's kBigWarps warps do (tiles dealt
// round-robin, lists merged pairwise). T: kBigWarps lists.
template <typename S>
void tile_row(const AssignParams& p, const S* const* scores, const GtRow& r, TileLists* T) {
  const RowCells rc = row_cells(p, r.region);
  const int warps = rc.total > kBigRowCells ? kBigWarps : 1;
  for (int w = 0; w < warps; ++w) {
    for (int lane = 0; lane < kTile; ++lane) tile_reset(T[w], lane);
    for (int64_t t = w; t * kTile < rc.total; t += warps) {
      for (int lane = 0; lane < kTile; ++lane) tile_stage(p, scores, r, rc, T[w], t, lane);
      merge_staged(p, r, T[w]);
    }
  }
  for (int d = 1; d < warps; d *= 2)
    for (int w = 0; w + d < warps; w += 2 * d) {
      for (int lane = 0; lane < kTile; ++lane) lists_stage(T[w], T[w + d], lane);
      merge_staged(p, r, T[w]);
    }
  for (int lane = 0; lane < kTile; ++lane) tile_finish(p, scores, r, T[0], lane);
}

template <typename S>
void pass_candidates(const AssignParams& p, const S* const* scores) {
  const int64_t kmax = std::max(p.head[0].topk, p.H > 1 ? p.head[1].topk : 0);
  const bool tiles = cpu_tiles() && tile_path(p);
  torch::stable::parallel_for(0, p.B * p.M, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> vals(2 * kmax);
    std::vector<int64_t> idxs(2 * kmax), cand;
    std::vector<TileLists> T(tiles ? kBigWarps : 0);
    for (int64_t row = begin; row < end; ++row) {
      if (!p.mask[row]) continue;
      GtRow r = gt_row_begin(p, row);
      if (tiles) {
        tile_row(p, scores, r, T.data());
        continue;
      }
      // The top-k-first order visits every anchor, and most fail boxes_meet before any score is
      // read: walked directly, not collected and prefetched below (that path loads N scores per
      // row for nothing; W1 TOOD-style: 35 ms that way, 22 ms this way, 2 threads).
      if (p.conv.order == kTopkFirst) {
        for (int64_t a = 0; a < p.N; ++a) gt_row_visit(p, scores, r, vals.data(), idxs.data(), kmax, a);
        gt_row_end(p, scores, r, vals.data(), idxs.data(), kmax);
        continue;
      }
      // Collect the candidates first, then evaluate them with the loads of the candidate
      // kPrefetch places ahead in flight: each reads one class score from the (B, N, C) tensor,
      // a cache miss per anchor that dominated the pass when taken one at a time.
      cand.clear();
      for_each_candidate(p, r.region, [&](int64_t a) { cand.push_back(a); });
      const int64_t nc = static_cast<int64_t>(cand.size());
      for (int64_t q = 0; q < nc; ++q) {
        if (q + kPrefetch < nc) {
          const int64_t ba = r.b * p.N + cand[q + kPrefetch];
          for (int h = 0; h < p.H; ++h) {
            __builtin_prefetch(scores[h] + ba * p.C + r.label);
            __builtin_prefetch(p.boxes[h] + 4 * ba);
          }
        }
        gt_row_visit(p, scores, r, vals.data(), idxs.data(), kmax, cand[q]);
      }
      gt_row_end(p, scores, r, vals.data(), idxs.data(), kmax);
    }
  });
}

// The CPU runs the resolve phases' loops in order, so its member slices arrive sorted. CUDA
// threads fill them in any order; DUALHEAD_CPU_SCRAMBLE=1 makes the CPU visit every phase's
// anchors and ground truths in a scrambled order instead, so the tests show that the results
// do not depend on it (the sort in finish_gt, the order-free atomics).
bool cpu_scramble() {
  const char* e = std::getenv("DUALHEAD_CPU_SCRAMBLE");
  return e != nullptr && e[0] == '1';
}

// i -> the i-th index visited of [0, n): i itself, or i * 7919 mod n (a bijection when n is not
// a multiple of the prime 7919; then the reverse order).
struct VisitOrder {
  bool scramble;
  int64_t operator()(int64_t i, int64_t n) const {
    if (!scramble) return i;
    return n % 7919 != 0 ? (i * 7919) % n : n - 1 - i;
  }
};

// The resolve phases of assign_core.h in turn, for each (head, image) a thread takes. CUDA runs
// every phase over all N anchors (threads are cheap there); here the anchor phases visit only
// the anchors some ground truth claimed (a few percent of N) and the outputs of the others are
// filled in bulk with what write_anchor writes for background. Under DUALHEAD_CPU_SCRAMBLE the
// CPU takes CUDA's loop structure instead (every anchor, any order).
template <typename S>
void pass_anchors(const AssignParams& p, const S* const* scores) {
  const int64_t k2 = std::max(p.head[0].topk2, p.H > 1 ? p.head[1].topk2 : 0);
  const VisitOrder at_{cpu_scramble()};
  torch::stable::parallel_for(0, p.B * p.H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> mf(p.N), of(p.N), mg(p.M), og(p.M), lv(p.M * k2);
    std::vector<int64_t> ga(p.N), li(p.M * k2), claimed;
    std::vector<int> count(p.M), cursor(p.M);
    ImageScratch s{mf.data(), of.data(), ga.data(), count.data(), cursor.data(), mg.data(),
                   og.data(), lv.data(), li.data(), k2,           nullptr,       nullptr};
    for (int64_t hb = begin; hb < end; ++hb) {
      const int h = static_cast<int>(hb / p.B);
      const int64_t b = hb % p.B, base = hb * p.N;
      s.members = image_members(p, h, b);
      s.start = image_member_start(p, h, b);
      std::fill(count.begin(), count.end(), 0);
      claimed.clear();
      if (at_.scramble) {
        for (int64_t i = 0; i < p.N; ++i) claimed.push_back(at_(i, p.N));
      } else {
        for (int64_t a = 0; a < p.N; ++a)
          if (p.claims[base + a] != 0) claimed.push_back(a);
        std::fill(p.fg + base, p.fg + base + p.N, false);
        std::fill(p.gt_idx + base, p.gt_idx + base + p.N, int64_t(0));
        std::fill(p.scores + base, p.scores + base + p.N, 0.f);
      }
      for (const int64_t a : claimed) resolve_anchor(p, scores, h, b, a, s);
      member_offsets(p, s);
      for (const int64_t a : claimed) place_member(a, s);
      for (int64_t i = 0; i < p.M; ++i) finish_gt(p, h, at_(i, p.M), s);
      for (const int64_t a : claimed) write_anchor(p, h, b, a, s);
    }
  });
}

void pass_stats(const AssignParams& p, int64_t* pick, int64_t* rank, float* gap) {
  const VisitOrder at_{cpu_scramble()};
  const int64_t rows = p.B * p.M;
  torch::stable::parallel_for(0, rows, 64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t row = at_(i, rows);
      stats_gt(p, row / p.M, row % p.M, pick, rank, gap);
    }
  });
}

template <typename S>
void run_passes(const AssignParams& p, const AssignCall& call) {
  const S* sp[2] = {ptr<S>(call.scores0), ptr<S>(call.scores1)};
  pass_candidates<S>(p, sp);
  pass_anchors<S>(p, sp);
}

AssignResult assign_cpu(Tensor scores, Tensor bboxes, std::optional<Tensor> scores2, std::optional<Tensor> bboxes2,
                        Tensor anc_points, Tensor gt_labels, Tensor gt_bboxes, Tensor mask_gt,
                        std::vector<double> settings, bool with_stats) {
  AssignCall call =
      prepare_assign(scores, bboxes, scores2, bboxes2, anc_points, gt_labels, gt_bboxes, mask_gt, settings, with_stats);
  host_checks_and_grid(call);
  const AssignParams& p = call.p;
  if (p.B * p.N == 0 || p.M == 0) {
    fill_empty(call);
    return call.result();
  }
  int64_t* ws = workspace(call.workspace_size());
  torch::stable::parallel_for(0, 3 * call.hbn(), 1 << 16,
                              [&](int64_t b, int64_t e) { std::fill(ws + b, ws + e, int64_t(0)); });
  call.set_workspace(ws);
  if (p.iou_type == kCIoU) {
    const AtanCache c = atan_cache(call.hbn());
    call.p.atan_cache = c.data;
    call.p.atan_gen = c.gen;
  }
  switch (call.scores0.scalar_type()) {  // scores are read in their dtype, widened per element
    case ScalarType::Float:
      run_passes<float>(p, call);
      break;
    case ScalarType::Double:
      run_passes<double>(p, call);
      break;
    case ScalarType::Half:
      run_passes<torch::headeronly::Half>(p, call);
      break;
    case ScalarType::BFloat16:
      run_passes<torch::headeronly::BFloat16>(p, call);
      break;
    default:
      DH_CHECK(false, "pd_scores must be fp32, fp16, bf16 or fp64, got ", dtype(call.scores0));
  }
  if (call.stats) pass_stats(p, ptr<int64_t>(call.pick), ptr<int64_t>(call.rank), ptr<float>(call.gap));
  return call.result();
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(dualhead, CPU, m) { m.impl("assign", TORCH_BOX(&assign_cpu)); }

}  // namespace dualhead
