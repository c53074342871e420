// CUDA kernel of dualhead::to_dense_out: a thread per output element (zero, or the anchor's
// score on its class), so the (..., C) buffer is written once, coalesced.
#include "launch.h"
#include "to_dense_launch.h"

namespace dualhead {
namespace {

__global__ void to_dense_kernel(ToDenseParams p) {
  const int64_t total = p.n * p.C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / p.C, c = i % p.C;
    p.out[i] = p.labels[row] == c ? p.scores[row] : 0.f;  // a label outside [0, C) writes nothing
  }
}

}  // namespace

void launch_to_dense(const ToDenseParams& p, cudaStream_t stream) {
  const int64_t total = p.n * p.C;
  if (total == 0) return;
  DH_LAUNCH(to_dense_kernel, blocks_for(total, 256), 256, 0, stream)(p);
}

}  // namespace dualhead
