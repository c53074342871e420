// launch.h — DH_LAUNCH(kernel, grid, block, shared_bytes, stream)(args...): one spelling of a
// kernel launch for both builds. Under nvcc it is kernel<<<grid, block, shared_bytes,
// stream>>>(args...); in the CPU execution layer (csrc/cuda/emu) the same launch runs the kernel
// on CPU threads. So the host code that picks grid, block and shared sizes is the same code in
// both, and the emulated tests exercise it too.
#pragma once

#include <cstdint>

#if defined(DH_CUDA_EMU)
#define DH_LAUNCH(kernel, grid, block, shared_bytes, stream) \
  ::dh_emu::launch(kernel, #kernel, grid, block, shared_bytes, stream)
#else
#define DH_LAUNCH(kernel, grid, block, shared_bytes, stream) kernel<<<grid, block, shared_bytes, stream>>>
#endif

namespace dualhead {

// Blocks of `threads` for n items, at least one, at most 65535: grid-stride loops cover the rest.
inline unsigned blocks_for(int64_t n, int threads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 65535 ? (b > 0 ? b : 1) : 65535);
}

}  // namespace dualhead
