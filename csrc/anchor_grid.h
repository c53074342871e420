// anchor_grid.h — recognising ultralytics' multi-level anchor grid in a list of anchor points
// (HOST_DEVICE, no torch types), so the assign kernels enumerate a ground truth's candidate cells
// instead of scanning all anchors. Both backends recognise the grid of every call's own anchors:
// the CPU on the host (detect_grid below), CUDA on the device (grid_kernel), with the same search
// and the same verification, so a CUDA call never reads its anchors back to the host and never
// depends on an earlier call's anchors.
//
// The standard grid: consecutive levels, each row-major, anchor start + j * w + i of a level at
// ((i + 0.5) * s, (j + 0.5) * s) in fp32 (make_anchors * stride). A level's stride comes from its
// first anchor, its row length w and row count h from two searches for the first anchor that
// breaks the pattern (kGridLanes probes a round: one round per factor of 32 of the range, a warp
// on CUDA, the lanes in a loop on CPU). The searches only propose a decomposition; it is
// accepted when every anchor sits exactly where it puts it (on_grid). So a match is a proof, and
// anything else takes the general scan, with identical results (the exact in-region test decides
// candidates on both paths).
#pragma once

#include <cstdint>

#include "dualhead_math.h"

namespace dualhead {

constexpr int kMaxLevels = 8;
constexpr int kGridLanes = 32;

// A call's grid: the levels, and whether some anchor is off them (then n_levels is ignored).
struct AnchorGrid {
  GridLevel level[kMaxLevels];
  int n_levels;  // 0: not a grid (the general scan)
  int off_grid;  // set by the verification when an anchor is not where the levels put it
};

DH_HD float grid_coord(int64_t i, float stride) { return (static_cast<float>(i) + 0.5f) * stride; }

// The levels a call enumerates candidates on: 0 when the anchors are not a verified grid.
DH_HD int grid_levels(const AnchorGrid* g) { return g == nullptr || g->off_grid ? 0 : g->n_levels; }

// Whether anchor a sits where the levels put it.
DH_HD bool on_grid(const AnchorGrid& g, const float* anc, int64_t a) {
  for (int l = 0; l < g.n_levels; ++l) {
    const GridLevel& L = g.level[l];
    if (a < L.start || a >= L.start + L.w * L.h) continue;
    const int64_t i = (a - L.start) % L.w, j = (a - L.start) / L.w;
    return anc[2 * a] == grid_coord(i, L.stride) && anc[2 * a + 1] == grid_coord(j, L.stride);
  }
  return false;
}

// The search state (shared memory on CUDA). Phase kRowLength looks for the level's w: the first
// k >= 1 whose anchor start + k is not ((k + 0.5) s, 0.5 s); phase kRows for its h: the first
// j >= 1 whose anchor start + j * w is not (0.5 s, (j + 0.5) s). Each search keeps the answer in
// [lo, hi], hi being a position known to break the pattern (the end of the range).
enum GridPhase : int { kRowLength = 0, kRows = 1, kGridFound = 2, kNoGrid = 3 };

struct GridSearch {
  int64_t start, lo, hi;
  int64_t w;
  float stride;
  int phase;
  bool breaks[kGridLanes];  // this round's probes: the pattern breaks there
};

// Starts a level at g.start (or ends the search): its stride from its first anchor.
DH_HD void grid_level_begin(const float* anc, int64_t N, GridSearch& s, const AnchorGrid& out) {
  if (s.start == N) {
    s.phase = kGridFound;
    return;
  }
  const float x = anc[2 * s.start], y = anc[2 * s.start + 1];
  s.stride = x * 2.f;
  if (!(s.stride > 0.f && s.stride < 1e7f && y == x) || out.n_levels == kMaxLevels) {
    s.phase = kNoGrid;
    return;
  }
  s.phase = kRowLength;
  s.lo = 1;
  s.hi = N - s.start;  // anchor N breaks every pattern
}

DH_HD void grid_search_begin(const float* anc, int64_t N, GridSearch& s, AnchorGrid& out) {
  out.n_levels = 0;
  out.off_grid = 0;
  s.start = 0;
  if (N == 0) {
    s.phase = kNoGrid;
    return;
  }
  grid_level_begin(anc, N, s, out);
}

// Phase 1 of a round, lane's probe: position lo + lane * step of the current search.
DH_HD void grid_probe(const float* anc, int64_t N, GridSearch& s, int lane) {
  const int64_t step = (s.hi - s.lo + kGridLanes - 1) / kGridLanes;
  const int64_t k = s.lo + lane * (step > 0 ? step : 1);
  bool brk = k >= s.hi;
  if (!brk) {
    const int64_t a = s.phase == kRowLength ? s.start + k : s.start + k * s.w;
    brk = s.phase == kRowLength ? !(anc[2 * a] == grid_coord(k, s.stride) && anc[2 * a + 1] == grid_coord(0, s.stride))
                                : !(anc[2 * a] == grid_coord(0, s.stride) && anc[2 * a + 1] == grid_coord(k, s.stride));
  }
  s.breaks[lane] = brk;
}

// Phase 2 of a round (one lane): narrow [lo, hi] to the probes around the first break; when the
// search is done, record w, or the level and start the next one.
DH_HD void grid_narrow(const float* anc, int64_t N, GridSearch& s, AnchorGrid& out) {
  const int64_t raw = (s.hi - s.lo + kGridLanes - 1) / kGridLanes, step = raw > 0 ? raw : 1;
  int f = 0;
  while (f < kGridLanes && !s.breaks[f]) ++f;
  if (f == kGridLanes) {
    s.lo += (kGridLanes - 1) * step + 1;  // every probe held: the break is after the last one
  } else {
    const int64_t at = s.lo + f * step;  // a probe at or past hi breaks by definition
    if (f > 0) s.lo += (f - 1) * step + 1;
    if (at < s.hi) s.hi = at;
  }
  if (s.lo < s.hi) return;
  if (s.phase == kRowLength) {  // w found; the level has at most (N - start) / w full rows
    s.w = s.lo;
    s.phase = kRows;
    s.lo = 1;
    s.hi = (N - s.start) / s.w;
    if (s.lo < s.hi) return;
    s.lo = s.hi;  // a single row
  }
  out.level[out.n_levels++] = GridLevel{s.start, s.w, s.lo, s.stride};
  s.start += s.w * s.lo;
  grid_level_begin(anc, N, s, out);
}

// The CPU's recognition: the search's lanes in loops, then every anchor verified. The CUDA
// backend runs the same functions (grid_kernel: a warp; the verification: a thread per anchor).
inline AnchorGrid detect_grid(const float* anc, int64_t N) {
  AnchorGrid g;
  GridSearch s;
  grid_search_begin(anc, N, s, g);
  while (s.phase < kGridFound) {
    for (int lane = 0; lane < kGridLanes; ++lane) grid_probe(anc, N, s, lane);
    grid_narrow(anc, N, s, g);
  }
  if (s.phase == kNoGrid) g.n_levels = 0;
  for (int64_t a = 0; a < N && g.n_levels > 0; ++a)
    if (!on_grid(g, anc, a)) g.n_levels = 0;
  return g;
}

}  // namespace dualhead
