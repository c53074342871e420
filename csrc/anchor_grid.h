// anchor_grid.h — recognising ultralytics' multi-level anchor grid in a list of anchor points
// (no torch types): the assign kernels enumerate a ground truth's candidate cells on it instead
// of scanning all anchors. Used by dualhead::anchor_grid and by both assign backends.
#pragma once

#include <cstdint>
#include <vector>

#include "assign_core.h"

namespace dualhead {

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
