// to_dense_launch.h — to_dense's launch interface.
// The plain interface between host code (.cpp, with torch) and the CUDA translation units (.cu,
// without torch headers: they compile fast and never break on torch's host-only headers). Host
// code checks tensors and fills these structs; the .cu file launches on them (empty-input early
// return, bounded grid, current stream) and the host code checks the launch (cuda_host.h:
// launch_check) right after.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace dualhead {

struct ToDenseParams {
  const int64_t* labels;  // (n)
  const float* scores;    // (n)
  float* out;             // (n, C)
  int64_t n, C;
};
void launch_to_dense(const ToDenseParams& p, cudaStream_t stream);

}  // namespace dualhead
