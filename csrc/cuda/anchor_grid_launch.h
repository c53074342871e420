// anchor_grid_launch.h — the anchor grid search's launch interface (used by anchor_grid and by assign).
// The plain interface between host code (.cpp, with torch) and the CUDA translation units (.cu,
// without torch headers: they compile fast and never break on torch's host-only headers). Host
// code checks tensors and fills these structs; the .cu file launches on them (empty-input early
// return, bounded grid, current stream) and the host code checks the launch (cuda_host.h:
// launch_check) right after.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace dualhead {

struct AnchorGrid;

// The anchor grid of anc (N, 2) recognised on the device into *out (anchor_grid.h): grid_kernel
// (one warp: the search) then grid_verify_kernel (a thread per anchor). For assign and for
// dualhead::anchor_grid.
void launch_anchor_grid(const float* anc, int64_t N, AnchorGrid* out, cudaStream_t stream);

}  // namespace dualhead
