// CUDA kernel of dualhead::box_iou: one thread per output element, the shared math header.
// No torch or c10 headers: the caller (box_iou_cuda.cpp) checks the launch.
#include "../dualhead_math.h"
#include "launch.h"
#include "box_iou_launch.h"

namespace dualhead {
namespace {

__global__ void box_iou_kernel(BoxIouParams p) {
  const int64_t total = p.n * p.m;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = t / p.m, j = t % p.m;
    p.out[t] = box_iou(load_box(p.boxes1 + 4 * i), load_box(p.boxes2 + 4 * j), p.kind);
  }
}

}  // namespace

void launch_box_iou(const BoxIouParams& p, cudaStream_t stream) {
  const int64_t total = p.n * p.m;
  if (total == 0) return;
  DH_LAUNCH(box_iou_kernel, blocks_for(total, 256), 256, 0, stream)(p);
}

}  // namespace dualhead
