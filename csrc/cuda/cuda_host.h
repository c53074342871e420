// cuda_host.h — the CUDA host code's view of torch, on the stable ABI: the device guard, the
// current stream (the AOTI C shim's aoti_torch_get_current_cuda_stream, stable since before
// 2.10; torch::stable::Stream's native handle arrives only in 2.13) and launch checks.
#pragma once

#ifndef USE_CUDA
#error "CUDA host code is built with -DUSE_CUDA (setup.py): it declares the CUDA part of the AOTI C shim"
#endif
#include <cuda_runtime_api.h>
#include <torch/csrc/inductor/aoti_torch/c/shim.h>

#include "../host.h"

namespace dualhead {

using CudaGuard = torch::stable::accelerator::DeviceGuard;

inline cudaStream_t current_stream(int device) {
  void* stream = nullptr;
  DH_CHECK(aoti_torch_get_current_cuda_stream(device, &stream) == AOTI_TORCH_SUCCESS,
           "could not get the current CUDA stream of cuda:", device);
  return static_cast<cudaStream_t>(stream);
}

inline void cuda_check(cudaError_t e, const char* what) {
  DH_CHECK(e == cudaSuccess, what, ": CUDA error ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
}

// After every launch (STYLE.md): a bad configuration fails here, at its launch.
inline void launch_check(const char* kernel) { cuda_check(cudaGetLastError(), kernel); }

}  // namespace dualhead
