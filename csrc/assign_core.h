// assign_core.h — the fused assignment's stages as plain HOST_DEVICE functions, shared by the
// CPU backend (csrc/cpu/assign_kernel.cpp) and the CUDA backend (csrc/cuda/assign_kernel.cu).
// Each function does one unit of parallel work (one ground truth's candidates; one anchor or one
// ground truth of one image's resolve phases; one ground truth's statistics); the backends only
// decide who runs which unit. So the CPU backend's tests execute every line the GPU runs, except
// the atomics below (CUDA atomicMax/atomicAdd; their CPU twins) and CUDA's block scan
// (member_offsets is its serial twin); those run, with the kernels themselves, in the CPU
// execution layer of the CUDA code (csrc/cuda/emu, tests/test_cuda.py).
#pragma once

#include <cstdint>

#include "anchor_grid.h"
#include "dualhead_math.h"

// CUDA code: compiled by nvcc, or by the host compiler in the CPU execution layer of the CUDA
// kernels (csrc/cuda/emu/cuda_emu.h: DH_CUDA_EMU), which provides CUDA's types and atomics.
#if defined(__CUDACC__) || defined(DH_CUDA_EMU)
#define DH_CUDA_CODE 1
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif
#if defined(__CUDA_ARCH__) || defined(DH_CUDA_EMU)
#define DH_CUDA_ATOMICS 1
#endif

namespace dualhead {

// Class scores are read in their own dtype and widened here (fp16/bf16 computed in fp32).
// torch builds CUDA with the implicit __half conversions disabled: convert explicitly.
template <typename S>
DH_HD float score_to_float(S x) {
  return static_cast<float>(x);
}
#if defined(DH_CUDA_CODE)
DH_HD float score_to_float(__half x) { return __half2float(x); }
DH_HD float score_to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
#endif

// One head's assignment settings (dualhead/settings.py HeadSettings, the same names): topk
// candidates per ground truth by metric, topk2 positives kept per ground truth after conflicts,
// the metric's exponents m = p^alpha * IoU^beta.
struct HeadSettings {
  int64_t topk = 1, topk2 = 1;
  float alpha = 0.f, beta = 0.f;
};
enum Head : int { kO2M = 0, kO2O = 1 };  // a single-head call is head kO2M

// How a codebase's task-aligned assigner picks (dualhead/conventions.py Convention, the same
// names). Which anchors a ground truth's top-k runs over:
//   kInBoxFirst (ultralytics, YOLOv9, mmyolo): its candidates (anchors inside its region), then
//     the top-k of them by metric;
//   kTopkFirst (mmdetection's TOOD): the top-k of all N anchors by metric (the metric of every
//     pair), then those of them inside the box with a metric > 0.
enum CandidateOrder : int { kInBoxFirst = 0, kTopkFirst = 1 };
// Which overlaps decide an anchor claimed by several ground truths (the largest wins, the
// smaller index on ties):
//   kConflictAll (ultralytics): every ground truth of the image, the overlap counting only where
//     the anchor is its candidate (0 elsewhere; index 0 when all are 0);
//   kConflictClaimants (TOOD): the claiming ground truths only;
//   kConflictAllPairs (YOLOv9, mmyolo): every ground truth of the image with the overlap of every
//     pair, so a ground truth whose box does not hold the anchor can win it (computed only for
//     contested anchors, against the image's ground truths: no (B, M, N) buffer).
enum ConflictRule : int { kConflictAll = 0, kConflictClaimants = 1, kConflictAllPairs = 2 };

struct Convention {
  int order = kInBoxFirst;  // CandidateOrder
  int conflict = kConflictAll;
  float floor_below = 0.f, floor_to = 0.f;  // candidate_region's small-box floor (round_trip only)
  bool round_trip = true;                   // candidate_region: ultralytics 8.4's xywh round trip
  float margin = kInBoxEps;                 // in_region's strict margin, px
};

// Everything one call needs, as raw pointers (no torch types). Workspace layouts:
// claims / claim_key / all_key (H, B, N) int64, zeroed; rank_m / rank_a (B, M, kRankDepth).
struct AssignParams {
  int64_t B = 0, N = 0, C = 0, M = 0;
  int H = 1;
  HeadSettings head[2];
  Convention conv;
  float eps = 1e-9f;     // target score normalisation, t = m * Og / (Mg + eps)
  int iou_type = kCIoU;  // IouKind
  // The call's anchor grid (anchor_grid.h), recognised on its own anchors: on the host for the
  // CPU, on the device for CUDA (then in device memory, written by grid_kernel); null or no
  // levels: the general scan.
  const AnchorGrid* grid = nullptr;
  const float* boxes[2] = {nullptr, nullptr};
  const float* anc = nullptr;
  const int64_t* labels = nullptr;
  const float* gt = nullptr;
  const bool* mask = nullptr;
  int64_t* claims = nullptr;
  int64_t* claim_key = nullptr;
  int64_t* all_key = nullptr;
  float* rank_m = nullptr;  // null: no statistics
  int64_t* rank_a = nullptr;
  int* members = nullptr;          // (H, B, N) anchors grouped by final ground truth (see finish_gt)
  int* member_start = nullptr;     // (H, B, M + 1) each ground truth's slice of members
  uint64_t* atan_cache = nullptr;  // CPU only: (H, B, N) entries of pred_atan, valid when tagged atan_gen
  uint32_t atan_gen = 0;
  bool* fg = nullptr;
  int64_t* gt_idx = nullptr;
  float* scores = nullptr;
};

// The grid levels the candidate enumeration uses (0: the general scan).
DH_HD int grid_levels(const AssignParams& p) { return grid_levels(p.grid); }

// --- the only backend-specific pieces: atomics (max and add commute, so results are deterministic);
// CUDA's in CUDA code (the GPU and its CPU execution layer), the __atomic builtins on CPU ---
DH_HD void atomic_max_u64(int64_t* slot, uint64_t v) {
#if defined(DH_CUDA_ATOMICS)
  atomicMax(reinterpret_cast<unsigned long long*>(slot), static_cast<unsigned long long>(v));
#else
  uint64_t* p = reinterpret_cast<uint64_t*>(slot);
  uint64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (v > cur && !__atomic_compare_exchange_n(p, &cur, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
#endif
}

DH_HD void atomic_add_i64(int64_t* slot, int64_t v) {
#if defined(DH_CUDA_ATOMICS)
  atomicAdd(reinterpret_cast<unsigned long long*>(slot), static_cast<unsigned long long>(v));
#else
  __atomic_fetch_add(slot, v, __ATOMIC_RELAXED);
#endif
}

DH_HD int atomic_add_i32(int* slot, int v) {  // returns the old value
#if defined(DH_CUDA_ATOMICS)
  return atomicAdd(slot, v);
#else
  return __atomic_fetch_add(slot, v, __ATOMIC_RELAXED);
#endif
}

// --- Input value checks, written once: the CPU checks its host data with them before any work,
// CUDA's check_kernel runs them on the device (no copy, no sync). 0: fine; else what is wrong.
enum InputError : int { kValueOk = 0, kBadLabel = 1, kBoxNotFinite = 2, kBoxInverted = 3, kAnchorNotFinite = 4 };

DH_HD bool dh_finite(float x) { return x - x == 0.f; }  // false for NaN and +-inf

// A real ground truth: label in [0, C) (else it would index outside pd_scores), a finite box
// with x2 >= x1 and y2 >= y1 (NaN-safe comparisons).
DH_HD int gt_value_error(int64_t label, const float* q, int64_t C) {
  if (!(label >= 0 && label < C)) return kBadLabel;
  if (!(dh_finite(q[0]) && dh_finite(q[1]) && dh_finite(q[2]) && dh_finite(q[3]))) return kBoxNotFinite;
  if (!(q[2] >= q[0] && q[3] >= q[1])) return kBoxInverted;
  return kValueOk;
}

DH_HD int anchor_value_error(const float* q) {
  return dh_finite(q[0]) && dh_finite(q[1]) ? kValueOk : kAnchorNotFinite;
}

DH_HD Box gt_region(const AssignParams& p, const Box& gb) {
  return candidate_region(gb, p.conv.floor_below, p.conv.floor_to, p.conv.round_trip);
}
DH_HD bool anchor_in(const AssignParams& p, int64_t a, const Box& region) {
  return in_region(p.anc[2 * a], p.anc[2 * a + 1], region, p.conv.margin);
}

// Visit the candidate anchors of a region in increasing anchor order: the grid cells under it
// (then the exact in_region test), or a scan of all anchors when no grid was recognised. The
// top-k-first order visits every anchor (its top-k runs over all of them).
template <typename F>
DH_HD void for_each_candidate(const AssignParams& p, const Box& r, F&& f) {
  const int levels = p.conv.order == kTopkFirst ? 0 : grid_levels(p);
  if (levels == 0) {
    for (int64_t a = 0; a < p.N; ++a)
      if (p.conv.order == kTopkFirst || anchor_in(p, a, r)) f(a);
    return;
  }
  for (int l = 0; l < levels; ++l) {
    const GridLevel& L = p.grid->level[l];
    int64_t i0, i1, j0, j1;
    grid_cells(r.x1, r.x2, L.stride, L.w, &i0, &i1);
    grid_cells(r.y1, r.y2, L.stride, L.h, &j0, &j1);
    for (int64_t j = j0; j <= j1; ++j)
      for (int64_t i = i0; i <= i1; ++i) {
        const int64_t a = L.start + j * L.w + i;
        if (anchor_in(p, a, r)) f(a);
      }
  }
}

// atan(w / h) of head h's predicted box ba (CIoU's aspect term). On CPU a call-wide cache holds
// it per (head, image, anchor): an anchor is a candidate of several ground truths (W1: 139k pairs
// over 77k anchors; W2: 1.5M over 134k) and atanf was a fifth of the CPU time. An entry is
// (generation << 32 | float bits) in one 64-bit word, so threads racing on it store the same
// value and a reader never sees half of one. CUDA computes it per pair (p.atan_cache is null).
DH_HD float pred_atan(const AssignParams& p, int h, int64_t ba, const Box& pb) {
#if !defined(__CUDA_ARCH__)
  if (p.atan_cache != nullptr) {
    uint64_t* slot = p.atan_cache + h * p.B * p.N + ba;
    const uint64_t e = __atomic_load_n(slot, __ATOMIC_RELAXED);
    union {
      float f;
      uint32_t u;
    } c;
    if (static_cast<uint32_t>(e >> 32) == p.atan_gen) {
      c.u = static_cast<uint32_t>(e);
      return c.f;
    }
    c.f = aspect_atan(pb);
    __atomic_store_n(slot, (static_cast<uint64_t>(p.atan_gen) << 32) | c.u, __ATOMIC_RELAXED);
    return c.f;
  }
#endif
  return aspect_atan(pb);
}

// Overlap and metric of (ground truth gb of image b, anchor a) for head h.
template <typename S>
DH_HD void eval_pair(const AssignParams& p, const S* scores, int h, int64_t b, const Box& gb, float gt_atan,
                     int64_t label, int64_t a, float* o, float* m) {
  const int64_t ba = b * p.N + a;
  const Box pb = load_box(p.boxes[h] + 4 * ba);
  *o = sanitize_overlap(box_iou_pre(gb, gt_atan, pb, p.iou_type == kCIoU ? pred_atan(p, h, ba, pb) : 0.f, p.iou_type));
  *m = align_metric(score_to_float(scores[ba * p.C + label]), *o, p.head[h].alpha, p.head[h].beta);
}

// Whether two boxes overlap with a positive area (NaN-safe: false). When they do not, every IoU
// kind clamped at 0 is 0, so with beta > 0 the metric is 0.
DH_HD bool boxes_meet(const Box& a, const Box& b) {
  return dh_min(a.x2, b.x2) - dh_max(a.x1, b.x1) > 0.f && dh_min(a.y2, b.y2) - dh_max(a.y1, b.y1) > 0.f;
}

// One ground truth's pass: its top-k lists (vals/idxs: H lists of kmax entries of scratch),
// the all-candidate conflict keys, then the claims of the kept entries.
struct GtRow {
  int64_t row, b, g, label;
  Box gb, region;
  float gt_atan;
  int len[2];
  int rank_len;
  bool own_rank;  // statistics need a deeper o2m ordering than head 0's top-k list
};

DH_HD GtRow gt_row_begin(const AssignParams& p, int64_t row) {
  GtRow r;
  r.row = row;
  r.b = row / p.M;
  r.g = row % p.M;
  r.label = p.labels[row];
  r.gb = load_box(p.gt + 4 * row);
  r.region = gt_region(p, r.gb);
  r.gt_atan = aspect_atan(r.gb);
  r.len[0] = r.len[1] = 0;
  r.rank_len = 0;
  r.own_rank = p.rank_m != nullptr && p.head[0].topk < kRankDepth;
  return r;
}

// Evaluate visited anchor a for head h: its overlap and metric, its conflict key (rule 'all':
// candidates only), and whether it enters the head's top-k list. In the in-box-first order every
// visited anchor is a candidate and enters (zero metrics too: topk_keep_count decides them). In
// the top-k-first order every anchor is visited and only a positive metric enters: a zero-metric
// entry is never a positive there and ranks after every positive one, so leaving it out changes
// no pick; a predicted box that does not meet the ground truth has metric 0 (beta > 0), so its
// IoU is not computed.
template <typename S>
DH_HD bool visit_pair(const AssignParams& p, const S* const* scores, const GtRow& r, int h, int64_t a, float* o,
                      float* m) {
  const bool topk_first = p.conv.order == kTopkFirst;
  if (topk_first && p.head[h].beta > 0.f && !boxes_meet(r.gb, load_box(p.boxes[h] + 4 * (r.b * p.N + a)))) return false;
  eval_pair(p, scores[h], h, r.b, r.gb, r.gt_atan, r.label, a, o, m);
  if (p.conv.conflict == kConflictAll && *o > 0.f && (!topk_first || anchor_in(p, a, r.region)))
    atomic_max_u64(p.all_key + (h * p.B + r.b) * p.N + a, pack_overlap_key(*o, r.g));
  return !topk_first || *m > 0.f;
}

// Which entries of a head's sorted top-k list are positive claims: the leading keep_count()
// entries (in the in-box-first order topk_keep_count's zero-metric rule; in the top-k-first
// order all, every entry having a positive metric), and of those, in the top-k-first order, only
// the ones whose anchor lies inside the region (claims_anchor).
template <typename I>
DH_HD int keep_count(const AssignParams& p, const float* vals, const I* idxs, int len, int h) {
  return p.conv.order == kInBoxFirst ? topk_keep_count(vals, idxs, len, static_cast<int>(p.head[h].topk)) : len;
}
DH_HD bool claims_anchor(const AssignParams& p, const GtRow& r, int64_t a) {
  return p.conv.order == kInBoxFirst || anchor_in(p, a, r.region);
}

// Evaluate anchor a for every head and insert it into the given top-k lists (one per head,
// capacity kcap each) and, when the row keeps its own o2m ordering for the statistics, into the
// rank list. Used for a whole row and for one lane of a split row alike.
template <typename S>
DH_HD void visit_into(const AssignParams& p, const S* const* scores, const GtRow& r, float* vals, int64_t* idxs,
                      int64_t kcap, int* len, float* rank_v, int64_t* rank_i, int* rank_len, int64_t a) {
  for (int h = 0; h < p.H; ++h) {
    float o, m;
    if (!visit_pair(p, scores, r, h, a, &o, &m)) continue;
    topk_insert(vals + h * kcap, idxs + h * kcap, &len[h], static_cast<int>(p.head[h].topk), m, a);
    if (h == 0 && r.own_rank) topk_insert(rank_v, rank_i, rank_len, kRankDepth, m, a);
  }
}

template <typename S>
DH_HD void gt_row_visit(const AssignParams& p, const S* const* scores, GtRow& r, float* vals, int64_t* idxs,
                        int64_t kmax, int64_t a) {
  float* rv = r.own_rank ? p.rank_m + r.row * kRankDepth : nullptr;
  int64_t* ri = r.own_rank ? p.rank_a + r.row * kRankDepth : nullptr;
  visit_into(p, scores, r, vals, idxs, kmax, r.len, rv, ri, &r.rank_len, a);
}

// --- Tiles: a ground truth's candidate cells taken kTile at a time, one cell per lane (a warp on
// CUDA: every (ground truth, cell) pair gets its own thread), each tile's candidates merged into
// the row's top-k lists by rank: a candidate's new position is the number of list entries and
// tile candidates that rank before it (ranks_before is a total order and anchors are distinct,
// so positions are unique and the lists equal those of one sequential pass, whatever the tiling).
// The lists and the staged tile live in a TileLists (shared memory on CUDA); every function
// below is one lane's share of a phase, so the CPU twin (DUALHEAD_CPU_TILES=1) runs the lanes
// of a phase in a loop and the tests compare it bitwise with the sequential pass.
constexpr int kTile = 32;   // lanes (a warp)
constexpr int kTileK = 32;  // list capacity: the tile path takes calls whose every topk <= kTileK
constexpr int kLists = 3;   // head 0, head 1, and head 0's kRankDepth-deep ordering (statistics)

struct TileLists {
  float v[kLists][kTileK];  // the lists, sorted by ranks_before
  int a[kLists][kTileK];
  int len[kLists];
  float cv[kLists][kTile];  // the tile's candidates, one per lane (ca = -1: none)
  int ca[kLists][kTile];
  float nv[kLists][kTileK];  // merge output
  int na[kLists][kTileK];
};

// A row's cells: level by level, row-major inside each level's cell rectangle (the order of
// for_each_candidate); with no grid, cell c is anchor c.
struct RowCells {
  int i0[kMaxLevels], j0[kMaxLevels], wi[kMaxLevels];
  int64_t cells[kMaxLevels];
  int64_t total;
  int levels;  // grid_levels(p): 0, the general scan
};

DH_HD bool tile_path(const AssignParams& p) {
  for (int h = 0; h < p.H; ++h)
    if (p.head[h].topk > kTileK) return false;
  return true;
}

DH_HD RowCells row_cells(const AssignParams& p, const Box& r) {
  RowCells rc;
  rc.levels = p.conv.order == kTopkFirst ? 0 : grid_levels(p);  // top-k first: every anchor
  if (rc.levels == 0) {
    rc.total = p.N;
    return rc;
  }
  rc.total = 0;
  for (int l = 0; l < rc.levels; ++l) {
    int64_t i0, i1, j0, j1;
    const GridLevel& L = p.grid->level[l];
    grid_cells(r.x1, r.x2, L.stride, L.w, &i0, &i1);
    grid_cells(r.y1, r.y2, L.stride, L.h, &j0, &j1);
    rc.i0[l] = static_cast<int>(i0);
    rc.j0[l] = static_cast<int>(j0);
    rc.wi[l] = static_cast<int>(i1 - i0 + 1);
    rc.cells[l] = (i1 >= i0 && j1 >= j0) ? (i1 - i0 + 1) * (j1 - j0 + 1) : 0;
    rc.total += rc.cells[l];
  }
  return rc;
}

// The anchor of cell c (0 <= c < rc.total).
DH_HD int64_t cell_anchor(const AssignParams& p, const RowCells& rc, int64_t c) {
  if (rc.levels == 0) return c;
  int l = 0;
  while (c >= rc.cells[l]) c -= rc.cells[l++];
  const GridLevel& L = p.grid->level[l];
  return L.start + (rc.j0[l] + c / rc.wi[l]) * L.w + rc.i0[l] + c % rc.wi[l];
}

DH_HD int list_cap(const AssignParams& p, const GtRow& r, int x) {
  return x < p.H ? static_cast<int>(p.head[x].topk) : (x == 2 && r.own_rank ? kRankDepth : 0);
}

DH_HD void tile_reset(TileLists& T, int lane) {
  if (lane < kLists) T.len[lane] = 0;
}

// Phase 1, lane's cell of tile t: evaluate it for every head (conflict keys as in visit_into)
// and stage it.
template <typename S>
DH_HD void tile_stage(const AssignParams& p, const S* const* scores, const GtRow& r, const RowCells& rc, TileLists& T,
                      int64_t t, int lane) {
  const int64_t c = t * kTile + lane;
  int64_t a = c < rc.total ? cell_anchor(p, rc, c) : -1;
  if (a >= 0 && p.conv.order == kInBoxFirst && !anchor_in(p, a, r.region)) a = -1;
  for (int x = 0; x < kLists; ++x) T.ca[x][lane] = -1;
  if (a < 0) return;
  for (int h = 0; h < p.H; ++h) {
    float o, m;
    if (!visit_pair(p, scores, r, h, a, &o, &m)) continue;
    T.cv[h][lane] = m;
    T.ca[h][lane] = static_cast<int>(a);
    if (h == 0 && r.own_rank) {
      T.cv[2][lane] = m;
      T.ca[2][lane] = static_cast<int>(a);
    }
  }
}

// Whether list x must merge this tile: some candidate would enter it (the test is only a
// shortcut: merging a tile that changes nothing gives the same list).
DH_HD bool tile_wants(const TileLists& T, int x, int cap) {
  const int n = T.len[x];
  if (cap == 0) return false;
  for (int l = 0; l < kTile; ++l)
    if (T.ca[x][l] >= 0 && (n < cap || ranks_before(T.cv[x][l], T.ca[x][l], T.v[x][n - 1], T.a[x][n - 1]))) return true;
  return false;
}

// Phase 2, lane's share of merging list x (capacity cap): its candidate and its list entry go to
// their rank in the union, if inside the capacity.
DH_HD void tile_merge(TileLists& T, int x, int cap, int lane) {
  const int n = T.len[x];
  if (T.ca[x][lane] >= 0) {
    const float m = T.cv[x][lane];
    const int a = T.ca[x][lane];
    int rank = 0;
    for (int j = 0; j < n; ++j) rank += ranks_before(T.v[x][j], T.a[x][j], m, a);
    for (int l = 0; l < kTile; ++l) rank += T.ca[x][l] >= 0 && ranks_before(T.cv[x][l], T.ca[x][l], m, a);
    if (rank < cap) {
      T.nv[x][rank] = m;
      T.na[x][rank] = a;
    }
  }
  if (lane < n) {
    int rank = lane;
    for (int l = 0; l < kTile; ++l)
      rank += T.ca[x][l] >= 0 && ranks_before(T.cv[x][l], T.ca[x][l], T.v[x][lane], T.a[x][lane]);
    if (rank < cap) {
      T.nv[x][rank] = T.v[x][lane];
      T.na[x][rank] = T.a[x][lane];
    }
  }
}

// The list's length after merging (every lane computes it).
DH_HD int tile_merged_len(const TileLists& T, int x, int cap) {
  int n = T.len[x];
  for (int l = 0; l < kTile; ++l) n += T.ca[x][l] >= 0;
  return n < cap ? n : cap;
}

// Phase 3, lane's share: copy the merged entry back (then lane 0 stores the new length).
DH_HD void tile_commit(TileLists& T, int x, int new_len, int lane) {
  if (lane < new_len) {
    T.v[x][lane] = T.nv[x][lane];
    T.a[x][lane] = T.na[x][lane];
  }
}

// Large ground truths: a row with more than kBigRowCells cells is shared by kBigWarps warps
// (a block on CUDA; one warp would walk its tiles one after another: a whole-image box has
// hundreds), warp w taking tiles w, w + kBigWarps, ...; their lists are then merged pairwise in
// log2(kBigWarps) rounds, a list's entries staged as the tile candidates of the list it joins.
// Exact for the same reason as the tiles: a merge by rank in a total order.
constexpr int64_t kBigRowCells = 8 * kTile;
constexpr int kBigWarps = 16;

DH_HD void lists_stage(TileLists& into, const TileLists& from, int lane) {
  for (int x = 0; x < kLists; ++x) {
    into.ca[x][lane] = lane < from.len[x] ? from.a[x][lane] : -1;
    into.cv[x][lane] = lane < from.len[x] ? from.v[x][lane] : 0.f;
  }
}

// Last phase, lane's share: the statistics' ordering (lane j < kRankDepth writes entry j) and the
// claims of kept entry 'lane' of every head (what gt_row_end does for a sequential row).
template <typename S>
DH_HD void tile_finish(const AssignParams& p, const S* const* scores, const GtRow& r, const TileLists& T, int lane) {
  if (p.rank_m && lane < kRankDepth) {
    const int x = r.own_rank ? 2 : 0;  // else head 0's list is at least as deep: its prefix
    const int n = T.len[x] < kRankDepth ? T.len[x] : kRankDepth;
    p.rank_m[r.row * kRankDepth + lane] = lane < n ? T.v[x][lane] : 0.f;
    p.rank_a[r.row * kRankDepth + lane] = lane < n ? T.a[x][lane] : -1;  // -1 never matches
  }
  for (int h = 0; h < p.H; ++h) {
    const int keep = keep_count(p, T.v[h], T.a[h], T.len[h], h);
    if (lane >= keep || !claims_anchor(p, r, T.a[h][lane])) continue;
    const int64_t a = T.a[h][lane];
    const int64_t slot = (h * p.B + r.b) * p.N + a;
    float o, m;
    eval_pair(p, scores[h], h, r.b, r.gb, r.gt_atan, r.label, a, &o, &m);
    atomic_add_i64(p.claims + slot, 1);
    atomic_max_u64(p.claim_key + slot, pack_overlap_key(o, r.g));
  }
}

template <typename S>
DH_HD void gt_row_end(const AssignParams& p, const S* const* scores, GtRow& r, const float* vals, const int64_t* idxs,
                      int64_t kmax) {
  if (p.rank_m) {
    if (!r.own_rank)  // head 0's top-k list is at least as deep: its prefix is the ordering
      for (r.rank_len = 0; r.rank_len < (r.len[0] < kRankDepth ? r.len[0] : kRankDepth); ++r.rank_len) {
        p.rank_m[r.row * kRankDepth + r.rank_len] = vals[r.rank_len];
        p.rank_a[r.row * kRankDepth + r.rank_len] = idxs[r.rank_len];
      }
    for (int j = r.rank_len; j < kRankDepth; ++j) p.rank_a[r.row * kRankDepth + j] = -1;  // never matches
  }
  for (int h = 0; h < p.H; ++h) {
    const int64_t* ix = idxs + h * kmax;
    const int keep = keep_count(p, vals + h * kmax, ix, r.len[h], h);
    for (int j = 0; j < keep; ++j) {
      if (!claims_anchor(p, r, ix[j])) continue;
      const int64_t slot = (h * p.B + r.b) * p.N + ix[j];
      float o, m;
      eval_pair(p, scores[h], h, r.b, r.gb, r.gt_atan, r.label, ix[j], &o, &m);
      atomic_add_i64(p.claims + slot, 1);
      atomic_max_u64(p.claim_key + slot, pack_overlap_key(o, r.g));
    }
  }
}

// --- One image of one head after all claims are in, in five phases, each a loop over anchors
// or over ground truths whose iterations are independent (CUDA: a block per (head, image),
// threads striding the loop, a barrier between phases; CPU: the same loops in turn):
//   1 resolve_anchor  (anchors) the anchor's ground truth: single claimant or conflict winner;
//                     the final pair re-evaluated with the same math (0 if it is not a
//                     candidate: the 'all' rule can hand an anchor to a ground truth that does
//                     not contain it); counts anchors per ground truth
//   2 member_offsets  (serial; a block scan on CUDA) each ground truth's slice of members
//   3 place_member    (anchors) the anchor into its ground truth's slice (any order)
//   4 finish_gt       (ground truths) slice sorted by anchor, topk2, per-ground-truth maxima
//   5 write_anchor    (anchors) the compact targets
// Members (anchors grouped by ground truth, ascending) stay for the statistics.
struct ImageScratch {
  float* anchor_metric;   // (N) final metric per anchor
  float* anchor_overlap;  // (N) final overlap
  int64_t* anchor_gt;     // (N) final ground truth, -1 background
  int* count;             // (M) anchors per ground truth, zeroed before phase 1
  int* cursor;            // (M) fill positions of phase 3
  float* gt_max_metric;   // (M) per ground truth max metric
  float* gt_max_overlap;  // (M) per ground truth max overlap
  float* topk2_vals;      // (M * k2) topk2 lists (k2: the largest topk2 of the call)
  int64_t* topk2_idxs;    // (M * k2)
  int64_t k2;
  int* members;  // (N) this image's slice of AssignParams::members
  int* start;    // (M + 1) this image's slice of AssignParams::member_start
};

DH_HD int* image_members(const AssignParams& p, int h, int64_t b) { return p.members + (h * p.B + b) * p.N; }
DH_HD int* image_member_start(const AssignParams& p, int h, int64_t b) {
  return p.member_start + (h * p.B + b) * (p.M + 1);
}

// Rule 'all_pairs' for a contested anchor: the ground truth of image b with the largest overlap
// with the anchor's predicted box among all of the image's real ground truths (first index on
// ties, 0 when every overlap is 0; padding slots count as 0), O(M) per contested anchor. A
// ground truth whose box does not meet the prediction has overlap 0 and is skipped.
DH_HD int64_t all_pairs_winner(const AssignParams& p, int h, int64_t b, int64_t a) {
  const Box pb = load_box(p.boxes[h] + 4 * (b * p.N + a));
  const float pa = p.iou_type == kCIoU ? aspect_atan(pb) : 0.f;
  float best = 0.f;
  int64_t g = 0;
  for (int64_t j = 0; j < p.M; ++j) {
    const int64_t row = b * p.M + j;
    if (!p.mask[row]) continue;
    const Box gb = load_box(p.gt + 4 * row);
    if (!boxes_meet(gb, pb)) continue;
    const float o = sanitize_overlap(box_iou_pre(gb, p.iou_type == kCIoU ? aspect_atan(gb) : 0.f, pb, pa, p.iou_type));
    if (o > best) {
      best = o;
      g = j;
    }
  }
  return g;
}

template <typename S>
DH_HD void resolve_anchor(const AssignParams& p, const S* const* scores, int h, int64_t b, int64_t a,
                          const ImageScratch& s) {
  const int64_t base = (h * p.B + b) * p.N;
  const int64_t n = p.claims[base + a];
  s.anchor_metric[a] = s.anchor_overlap[a] = 0.f;
  if (n == 0) {
    s.anchor_gt[a] = -1;
    return;
  }
  int64_t g;
  if (n == 1 || p.conv.conflict == kConflictClaimants) {
    g = key_gt(static_cast<uint64_t>(p.claim_key[base + a]));
  } else if (p.conv.conflict == kConflictAll) {
    // ultralytics: argmax of o over all ground truths, index 0 when all are 0
    const uint64_t k = static_cast<uint64_t>(p.all_key[base + a]);
    g = key_overlap(k) > 0.f ? key_gt(k) : 0;
  } else {
    g = all_pairs_winner(p, h, b, a);
  }
  s.anchor_gt[a] = g;
  atomic_add_i32(s.count + g, 1);
  const int64_t row = b * p.M + g;
  const Box gb = load_box(p.gt + 4 * row);
  // The final pair's metric and overlap: 0 when the anchor is not the ground truth's candidate
  // (rule 'all' can hand it one that does not hold it, and then its metric was 0), except under
  // 'all_pairs', whose metric is that of every pair.
  if (p.mask[row] && (p.conv.conflict == kConflictAllPairs || anchor_in(p, a, gt_region(p, gb))))
    eval_pair(p, scores[h], h, b, gb, aspect_atan(gb), p.labels[row], a, &s.anchor_overlap[a], &s.anchor_metric[a]);
}

// Exclusive prefix sum of the counts (serial: the CPU's, and the reference for CUDA's block scan).
DH_HD void member_offsets(const AssignParams& p, const ImageScratch& s) {
  int acc = 0;
  for (int64_t g = 0; g < p.M; ++g) {
    s.start[g] = s.cursor[g] = acc;
    acc += s.count[g];
  }
  s.start[p.M] = acc;
}

DH_HD void place_member(int64_t a, const ImageScratch& s) {
  if (s.anchor_gt[a] >= 0) s.members[atomic_add_i32(s.cursor + s.anchor_gt[a], 1)] = static_cast<int>(a);
}

DH_HD void finish_gt(const AssignParams& p, int h, int64_t g, const ImageScratch& s) {
  int* mem = s.members + s.start[g];
  const int n = s.start[g + 1] - s.start[g];
  // Phase 3 filled the slice in arrival order (any order on CUDA): sort it by anchor, so that
  // everything below, and the statistics' float sums, run in the serial order.
  for (int i = 1; i < n; ++i) {
    const int v = mem[i];
    int j = i;
    for (; j > 0 && mem[j - 1] > v; --j) mem[j] = mem[j - 1];
    mem[j] = v;
  }
  if (p.head[h].topk2 != p.head[h].topk) {  // the ground truth keeps its topk2 best remaining positives
    const int k2 = static_cast<int>(p.head[h].topk2);
    float* lv = s.topk2_vals + g * s.k2;
    int64_t* li = s.topk2_idxs + g * s.k2;
    int len = 0;
    for (int i = 0; i < n; ++i) topk_insert(lv, li, &len, k2, s.anchor_metric[mem[i]], mem[i]);
    const int keep = topk_keep_count(lv, li, len, k2);
    for (int i = 0; i < n; ++i) {
      bool kept = false;
      for (int j = 0; j < keep && !kept; ++j) kept = li[j] == mem[i];
      if (!kept) s.anchor_gt[mem[i]] = -1;  // members stay listed; anchor_gt says who was dropped
    }
  }
  float mg = 0.f, og = 0.f;
  for (int i = 0; i < n; ++i)
    if (s.anchor_gt[mem[i]] >= 0) {
      mg = dh_max(mg, s.anchor_metric[mem[i]]);
      og = dh_max(og, s.anchor_overlap[mem[i]]);
    }
  s.gt_max_metric[g] = mg;
  s.gt_max_overlap[g] = og;
}

DH_HD void write_anchor(const AssignParams& p, int h, int64_t b, int64_t a, const ImageScratch& s) {
  const int64_t base = (h * p.B + b) * p.N;
  const bool fg = s.anchor_gt[a] >= 0;
  const int64_t g = fg ? s.anchor_gt[a] : 0;
  p.fg[base + a] = fg;
  p.gt_idx[base + a] = g;
  p.scores[base + a] = fg ? target_score(s.anchor_metric[a], s.gt_max_overlap[g], s.gt_max_metric[g], p.eps) : 0.f;
}

// One ground truth's consistency statistics (dual calls, after both heads): the o2o pick
// (largest o2o target, smaller anchor on ties), its rank in the o2m ordering (position in the
// kRankDepth-deep list; kRankDepth when deeper or not a candidate) and the supervision gap
// A = t_o2o,i - 1[i in O] t_o2m,i + sum_{O \ i} t_o2m. Walks the ground truth's member slices
// (ascending anchors, so the sum has the serial order).
DH_HD void stats_gt(const AssignParams& p, int64_t b, int64_t g, int64_t* pick, int64_t* rank, float* gap) {
  const int64_t o2m = b * p.N, o2o = (p.B + b) * p.N, row = b * p.M + g;
  const int* m1 = image_members(p, 1, b);
  const int* s1 = image_member_start(p, 1, b);
  float tpick = -1.f;
  int64_t i = -1;
  for (int j = s1[g]; j < s1[g + 1]; ++j) {
    const int a = m1[j];
    if (p.fg[o2o + a] && p.scores[o2o + a] > tpick) {  // anchors ascend: '>' keeps the smaller on ties
      tpick = p.scores[o2o + a];
      i = a;
    }
  }
  const int* m0 = image_members(p, 0, b);
  const int* s0 = image_member_start(p, 0, b);
  float omega = 0.f;
  for (int j = s0[g]; j < s0[g + 1]; ++j)
    if (p.fg[o2m + m0[j]]) omega += p.scores[o2m + m0[j]];
  pick[row] = i;
  if (!p.mask[row] || i < 0) {
    rank[row] = -1;
    gap[row] = p.mask[row] ? omega : 0.f;  // padding: 0, not NaN (outputs compare bitwise)
    return;
  }
  int j = 0;
  while (j < kRankDepth && p.rank_a[row * kRankDepth + j] != i) ++j;
  rank[row] = j;
  const float ti = (p.fg[o2m + i] && p.gt_idx[o2m + i] == g) ? p.scores[o2m + i] : 0.f;
  gap[row] = tpick - ti + (omega - ti);
}

}  // namespace dualhead
