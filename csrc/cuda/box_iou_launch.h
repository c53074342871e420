// box_iou_launch.h — box_iou's launch interface.
// The plain interface between host code (.cpp, with torch) and the CUDA translation units (.cu,
// without torch headers: they compile fast and never break on torch's host-only headers). Host
// code checks tensors and fills these structs; the .cu file launches on them (empty-input early
// return, bounded grid, current stream) and the host code checks the launch (cuda_host.h:
// launch_check) right after.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace dualhead {

struct BoxIouParams {
  const float* boxes1;  // (n, 4)
  const float* boxes2;  // (m, 4)
  float* out;           // (n, m)
  int64_t n, m;
  int kind;
};
void launch_box_iou(const BoxIouParams& p, cudaStream_t stream);

}  // namespace dualhead
