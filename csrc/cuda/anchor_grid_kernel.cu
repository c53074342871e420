// CUDA kernels of the anchor-grid recognition (csrc/anchor_grid.h), run by every assign call on
// its own anchors and by dualhead::anchor_grid:
//   grid_kernel         one warp: the search for each level's w and h, a probe per lane, the
//                       narrowing on lane 0 (the CPU's detect_grid runs the same lane functions)
//   grid_verify_kernel  a thread per anchor: marks the grid off when an anchor is not where the
//                       levels put it (then the general scan, with the same results)
// No torch or c10 headers; the host code checks the launches.
#include "../anchor_grid.h"
#include "launch.h"
#include "anchor_grid_launch.h"

namespace dualhead {
namespace {

constexpr int kVerifyThreads = 256;

__global__ void __launch_bounds__(kGridLanes) grid_kernel(const float* anc, int64_t N, AnchorGrid* out) {
  __shared__ GridSearch s;
  const int lane = threadIdx.x;
  if (lane == 0) grid_search_begin(anc, N, s, *out);
  __syncwarp();
  while (s.phase < kGridFound) {  // warp-uniform: s.phase changes only between the barriers
    grid_probe(anc, N, s, lane);
    __syncwarp();
    if (lane == 0) grid_narrow(anc, N, s, *out);
    __syncwarp();
  }
  if (lane == 0 && s.phase == kNoGrid) out->n_levels = 0;
}

__global__ void grid_verify_kernel(const float* anc, int64_t N, AnchorGrid* g) {
  if (g->n_levels == 0) return;
  for (int64_t a = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; a < N; a += int64_t(gridDim.x) * blockDim.x)
    if (!on_grid(*g, anc, a)) {
      atomicOr(&g->off_grid, 1);
      return;
    }
}

}  // namespace

void launch_anchor_grid(const float* anc, int64_t N, AnchorGrid* out, cudaStream_t stream) {
  DH_LAUNCH(grid_kernel, 1, kGridLanes, 0, stream)(anc, N, out);
  DH_LAUNCH(grid_verify_kernel, blocks_for(N, kVerifyThreads), kVerifyThreads, 0, stream)(anc, N, out);
}

}  // namespace dualhead
