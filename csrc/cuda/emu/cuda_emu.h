// cuda_emu.h — the CPU execution layer of dualhead's CUDA kernels: what the kernels of
// csrc/cuda/*.cu and the shared stages of assign_core.h use of CUDA, provided for the host
// compiler. The emulation build (tests/cuda_emu.py) force-includes this header into every
// translation unit and puts include/ (cuda_runtime_api.h, cuda_fp16.h, cuda_bf16.h,
// cub/block/block_scan.cuh) before all other include paths, so the same kernel bodies, the same
// launchers and the same CUDA host code run on CPU tensors.
//
// Each block's threads are real OS threads (a reused pool; blocks run one after another, in the
// order DH_EMU_BLOCK_ORDER picks: index, reverse or shuffle[:SEED]), so AddressSanitizer,
// UndefinedBehaviorSanitizer and ThreadSanitizer see the kernels as they are.
// The layer is stricter than the hardware: a barrier reached from different call sites, by a
// subset of the threads it waits for, or while a thread it waits for has exited, is a fault;
// shared memory is poisoned before each block; a block of more than 1024 threads or more than
// the kernel's __launch_bounds__, and grid sizes out of range, fail the launch as CUDA would.
// Faults and launch errors come back through cudaGetLastError(), like device errors, so the
// host code's launch checks raise them.
#pragma once

#define DH_CUDA_EMU 1

#include <cuda_runtime_api.h>

#include <cstdint>
#include <source_location>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

// Memory-space and launch qualifiers. Shared variables are statics in one linker section: a
// block's threads share them, blocks run one at a time, and the runtime poisons the whole
// section before each block.
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __grid_constant__
#define __shared__ static __attribute__((section("dh_emu_shared")))
// The emulation build moves each __launch_bounds__(n) into a check at the kernel's entry
// (DH_EMU_LAUNCH_BOUNDS, inserted by tests/cuda_emu.py), where n can be evaluated.
#define __launch_bounds__(...)
#define DH_EMU_LAUNCH_BOUNDS(...) ::dh_emu::check_launch_bounds((__VA_ARGS__), __func__)

constexpr int warpSize = 32;

// The built-in indices, per thread.
extern thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace dh_emu {

using Site = std::source_location;

void syncthreads(Site site);
void syncwarp(unsigned mask, Site site);
void check_launch_bounds(long long max_threads, const char* kernel);
void require_block_dim_x(int n, const char* what);

// Runs body once per thread of every block of the grid; returns when the grid is done.
// kernel: the launch's kernel expression as written (counted per name, template arguments off).
void run_grid_erased(const char* kernel, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream, Site site,
                     void (*call)(void*), void* body);
template <typename F>
void run_grid(const char* kernel, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream, Site site, F& body) {
  run_grid_erased(kernel, grid, block, shared_bytes, stream, site, [](void* f) { (*static_cast<F*>(f))(); }, &body);
}

// A launch: kernel<<<grid, block, shared, stream>>>(args...). The arguments are converted to
// the kernel's parameter types and copied once, as CUDA copies them into parameter space; each
// thread then receives its own copy of that (by value, as in CUDA).
template <typename... P>
struct Launch {
  void (*kernel)(P...);
  const char* name;
  dim3 grid, block;
  size_t shared_bytes;
  cudaStream_t stream;
  Site site;

  template <typename... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
    auto body = [&] { std::apply(kernel, params); };
    run_grid(name, grid, block, shared_bytes, stream, site, body);
  }
};

template <typename... P>
Launch<P...> launch(void (*kernel)(P...), const char* name, dim3 grid, dim3 block, size_t shared_bytes,
                    cudaStream_t stream, Site site = Site::current()) {
  return Launch<P...>{kernel, name, grid, block, shared_bytes, stream, site};
}

// What the tests read back (tests/cuda_emu.py): launches per kernel name ("name=count;...")
// and the host synchronisations (cudaStreamSynchronize) since the library was loaded.
std::string launch_counts();
long long host_syncs();

}  // namespace dh_emu

inline void __syncthreads(dh_emu::Site site = dh_emu::Site::current()) { dh_emu::syncthreads(site); }
inline void __syncwarp(unsigned mask = 0xffffffffu, dh_emu::Site site = dh_emu::Site::current()) {
  dh_emu::syncwarp(mask, site);
}

// Atomics: relaxed, as CUDA's atomicXxx (no ordering beyond the location itself).
inline int atomicAdd(int* a, int v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }
inline unsigned atomicAdd(unsigned* a, unsigned v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) {
  return __atomic_fetch_add(a, v, __ATOMIC_RELAXED);
}
inline int atomicCAS(int* a, int expected, int desired) {
  __atomic_compare_exchange_n(a, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return expected;  // the old value
}
inline int atomicExch(int* a, int v) { return __atomic_exchange_n(a, v, __ATOMIC_RELAXED); }
inline int atomicOr(int* a, int v) { return __atomic_fetch_or(a, v, __ATOMIC_RELAXED); }
inline unsigned long long atomicMax(unsigned long long* a, unsigned long long v) {
  unsigned long long cur = __atomic_load_n(a, __ATOMIC_RELAXED);
  while (v > cur && !__atomic_compare_exchange_n(a, &cur, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return cur;
}
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
