// CUDA backend of dualhead::anchor_grid: the recognition assign runs on the device
// (launch_anchor_grid), its result read back (an inspection op: this read is a sync).
#include "../anchor_grid_rows.h"
#include "cuda_host.h"
#include "anchor_grid_launch.h"

namespace dualhead {
namespace {

Tensor anchor_grid_cuda(Tensor anc_points) {
  check_anchor_grid_args(anc_points);
  const int device = anc_points.get_device_index();
  const CudaGuard guard(device);
  const Tensor anc = contiguous_as(anc_points, ScalarType::Float);
  const Tensor grid = empty({(static_cast<int64_t>(sizeof(AnchorGrid)) + 7) / 8}, ScalarType::Long, anc);
  launch_anchor_grid(ptr<float>(anc), anc.size(0), ptr<AnchorGrid>(grid), current_stream(device));
  launch_check("anchor grid kernels");
  const Tensor host = copy_to_host(grid);
  return torch::stable::to(grid_rows(*ptr<AnchorGrid>(host), host), anc.device());
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(DH_LIB, DH_CUDA_BACKEND, m) { m.impl("anchor_grid", TORCH_BOX(&anchor_grid_cuda)); }

}  // namespace dualhead
