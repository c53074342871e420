// cuda_host.h — the CUDA host code's view of torch, on the stable ABI: the device guard, the
// current stream (the AOTI C shim's aoti_torch_get_current_cuda_stream, stable since before
// 2.10; torch::stable::Stream's native handle arrives only in 2.13), launch checks, and the
// backend the CUDA files register for (DH_CUDA_BACKEND: CUDA; CPU in the emulation library).
#pragma once

#include <cuda_runtime_api.h>

#include "../host.h"
#include "../library.h"

#if defined(DH_CUDA_EMU)
// The CPU execution layer (csrc/cuda/emu): CPU tensors, no device to guard, kernels run to
// completion on the host, so there is no stream to order them on. The guard's scope is the host
// op: the device memory it hands to kernels (ptr) is poisoned from its first launch to its end.
namespace dualhead {
struct CudaGuard {
  explicit CudaGuard(int) { ::dh_emu::enter_host_op(); }
  ~CudaGuard() { ::dh_emu::leave_host_op(); }
  CudaGuard(const CudaGuard&) = delete;
  CudaGuard& operator=(const CudaGuard&) = delete;
};
inline cudaStream_t current_stream(int) { return nullptr; }

// A device tensor's host copy: the one way host code reads device memory.
inline Tensor copy_to_host(const Tensor& t) {
  ::dh_emu::host_copy_begin();
  Tensor c = torch::stable::clone(t);
  ::dh_emu::host_copy_end(c.data_ptr());
  return c;
}
}  // namespace dualhead
#define DH_CUDA_BACKEND CPU
#else
#ifndef USE_CUDA
#error "CUDA host code is built with -DUSE_CUDA (setup.py): it declares the CUDA part of the AOTI C shim"
#endif
#include <torch/csrc/inductor/aoti_torch/c/shim.h>

namespace dualhead {
using CudaGuard = torch::stable::accelerator::DeviceGuard;

// A device tensor's host copy (a sync): the one way host code reads device memory.
inline Tensor copy_to_host(const Tensor& t) { return to_cpu(t); }

inline cudaStream_t current_stream(int device) {
  void* stream = nullptr;
  DH_CHECK(aoti_torch_get_current_cuda_stream(device, &stream) == AOTI_TORCH_SUCCESS,
           "could not get the current CUDA stream of cuda:", device);
  return static_cast<cudaStream_t>(stream);
}
}  // namespace dualhead
#define DH_CUDA_BACKEND CUDA
#endif

namespace dualhead {

inline void cuda_check(cudaError_t e, const char* what) {
  DH_CHECK(e == cudaSuccess, what, ": CUDA error ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
}

// After every launch (STYLE.md): a bad configuration fails here, at its launch.
inline void launch_check(const char* kernel) { cuda_check(cudaGetLastError(), kernel); }

}  // namespace dualhead
