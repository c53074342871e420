// anchor_grid_rows.h — dualhead::anchor_grid's output, shared by its backends: a recognised grid
// as (L, 4) float64 rows (start, w, h, stride), (0, 4) when the anchors are not a grid.
#pragma once

#include "anchor_grid.h"
#include "host.h"

namespace dualhead {

inline void check_anchor_grid_args(const Tensor& anc_points) {
  DH_CHECK(anc_points.dim() == 2 && anc_points.size(1) == 2, "anc_points must be (N, 2), got ", shape(anc_points));
  DH_CHECK(is_float(anc_points.scalar_type()), "anc_points must be a float tensor, got ", dtype(anc_points));
}

// The rows on the CPU (the CUDA backend moves them to its device).
inline Tensor grid_rows(const AnchorGrid& g, const Tensor& like_cpu) {
  const int L = grid_levels(&g);
  Tensor out = empty({L, 4}, ScalarType::Double, like_cpu);
  double* r = ptr<double>(out);
  for (int l = 0; l < L; ++l) {
    *r++ = static_cast<double>(g.level[l].start);
    *r++ = static_cast<double>(g.level[l].w);
    *r++ = static_cast<double>(g.level[l].h);
    *r++ = g.level[l].stride;
  }
  return out;
}

}  // namespace dualhead
