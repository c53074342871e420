// anchor_grid — the standard multi-level grid recognised in a list of anchor points.
#include "library.h"

STABLE_TORCH_LIBRARY_FRAGMENT(DH_LIB, m) {
  // anc_points (N, 2) -> (L, 4) float64 rows (start, w, h, stride) of the recognised levels, or
  // (0, 4) when the anchors take the general path. For inspection and tests.
  m.def("anchor_grid(Tensor anc_points) -> Tensor");
}
