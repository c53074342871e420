// CPU backend of dualhead::anchor_grid (an inspection op: the assign backends recognise the
// grid themselves, csrc/anchor_grid.h).
#include "../anchor_grid_rows.h"
#include "../host.h"

namespace dualhead {
namespace {

Tensor anchor_grid_cpu(Tensor anc_points) {
  check_anchor_grid_args(anc_points);
  const Tensor anc = contiguous_as(anc_points, ScalarType::Float);
  return grid_rows(detect_grid(ptr<float>(anc), anc.size(0)), anc);
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(dualhead, CPU, m) { m.impl("anchor_grid", TORCH_BOX(&anchor_grid_cpu)); }

}  // namespace dualhead
