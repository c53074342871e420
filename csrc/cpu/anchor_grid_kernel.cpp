// CPU backend of dualhead::anchor_grid (an inspection op: the assign backends recognise the
// grid themselves, csrc/anchor_grid.h).
#include "../anchor_grid.h"
#include "../host.h"

namespace dualhead {
namespace {

Tensor anchor_grid_cpu(Tensor anc_points) {
  DH_CHECK(anc_points.dim() == 2 && anc_points.size(1) == 2, "anc_points must be (N, 2), got ", shape(anc_points));
  DH_CHECK(is_float(anc_points.scalar_type()), "anc_points must be a float tensor, got ", dtype(anc_points));
  const Tensor anc = contiguous_as(anc_points, ScalarType::Float);
  const std::vector<GridLevel> grid = detect_grid(ptr<float>(anc), anc.size(0));
  Tensor out = empty({static_cast<int64_t>(grid.size()), 4}, ScalarType::Double, anc);
  double* r = ptr<double>(out);
  for (const GridLevel& g : grid) {
    *r++ = static_cast<double>(g.start);
    *r++ = static_cast<double>(g.w);
    *r++ = static_cast<double>(g.h);
    *r++ = g.stride;
  }
  return out;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(dualhead, CPU, m) { m.impl("anchor_grid", TORCH_BOX(&anchor_grid_cpu)); }

}  // namespace dualhead
