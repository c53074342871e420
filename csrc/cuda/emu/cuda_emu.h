// cuda_emu.h — the CPU execution layer of dualhead's CUDA kernels: what the kernels of
// csrc/cuda/*.cu and the shared stages of assign_core.h use of CUDA, provided for the host
// compiler. The emulation build (tests/cuda_emu.py) force-includes this header into every
// translation unit and puts include/ (cuda_runtime_api.h, cuda_fp16.h, cuda_bf16.h,
// cub/block/block_scan.cuh) before all other include paths, so the same kernel bodies, the same
// launchers and the same CUDA host code run on CPU tensors.
//
// Each block's threads are real OS threads (a reused pool; several blocks at once, started in
// the order DH_EMU_BLOCK_ORDER picks: index, reverse or shuffle[:SEED]), so AddressSanitizer,
// UndefinedBehaviorSanitizer and ThreadSanitizer see the kernels as they are.
// The layer is stricter than the hardware: a barrier reached from different call sites, by a
// subset of the threads it waits for, or while a thread it waits for has exited, is a fault;
// shared memory is per block, poisoned and fenced by redzones; a block of more than 1024 threads,
// more than the kernel's __launch_bounds__ or more registers than a GPU's register file, and grid
// sizes out of range, fail the launch as CUDA would; device memory is poisoned while no kernel
// runs. Faults and launch errors come back through cudaGetLastError(), like device errors, so the
// host code's launch checks raise them.
#pragma once

#define DH_CUDA_EMU 1

#include <cuda_runtime_api.h>

#include <atomic>
#include <cstdint>
#include <cxxabi.h>
#include <cstdlib>
#include <memory>
#include <source_location>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>

// Memory-space and launch qualifiers. `__shared__` is not defined: the emulation build rewrites
// each `__shared__ T name[dims];` into DH_EMU_SHARED(name, T[dims]); (tests/cuda_emu.py), a
// reference to the block's own copy in its shared-memory arena (runtime.cpp), so blocks in
// flight at once have their own, AddressSanitizer fences every variable with a redzone, and a
// declaration the rewrite missed does not compile.
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __grid_constant__
#define DH_EMU_SHARED(name, ...)                                                        \
  auto& name = ::dh_emu::shared<__VA_ARGS__>(                                           \
      [] {                                                                              \
        static const char key = 0; /* one per declaration and template instantiation */ \
        return &key;                                                                    \
      }(),                                                                              \
      #name)
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

// The calling block's copy of a __shared__ variable (key: the declaration), poison-filled.
void* shared_alloc(const void* key, size_t bytes, size_t align, const char* name);
template <typename T>
T& shared(const void* key, const char* name) {
  static_assert(std::is_trivially_default_constructible_v<std::remove_all_extents_t<T>>,
                "a __shared__ variable cannot have a constructor");
  return *static_cast<T*>(shared_alloc(key, sizeof(T), alignof(T), name));
}

// Device memory (host.h, cuda_host.h): a CUDA host op (a CudaGuard's scope) registers the
// tensors it hands to kernels; from its first launch on they are poisoned while no kernel runs.
void enter_host_op();
void leave_host_op();
void device_memory(const void* p, size_t bytes, std::shared_ptr<void> keep);
void host_copy_begin();                                // an explicit device -> host copy reads them ...
void host_copy_end(const void* copy);                  // ... and its result is host memory
void allocated_like(const void* t, const void* like);  // host.h's empty(): t is where like is
void device_memset(void* p, int value, size_t bytes);

// "float const*, long, ..." : a kernel's parameter types as c++filt prints ptxas' names, so a
// launch finds its kernel's registers in the table of runtime.cpp.
template <typename... P>
std::string parameter_types() {
  std::string out;
  for (const char* mangled : {typeid(P).name()...}) {
    int status = 0;
    char* d = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
    out += (out.empty() ? "" : ", ") + std::string(status == 0 && d ? d : mangled);
    std::free(d);
  }
  return out;
}

// Runs body once per thread of every block of the grid; returns when the grid is done.
// kernel: the launch's kernel expression as written (counted per name, template arguments off).
// params: the kernel's parameter types (parameter_types).
void run_grid_erased(const char* kernel, const char* params, dim3 grid, dim3 block, size_t shared_bytes,
                     cudaStream_t stream, Site site, void (*call)(void*), void* body);
template <typename F>
void run_grid(const char* kernel, const char* params, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
              Site site, F& body) {
  run_grid_erased(
      kernel, params, grid, block, shared_bytes, stream, site, [](void* f) { (*static_cast<F*>(f))(); }, &body);
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
    static const std::string types = parameter_types<P...>();
    run_grid(name, types.c_str(), grid, block, shared_bytes, stream, site, body);
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

// Atomics: relaxed, as CUDA's atomicXxx (no ordering beyond the location itself). These are
// device-scope: one on host-mapped memory (cudaHostAlloc) is a fault, since the host may see it
// out of order with the kernel's other writes there; that memory takes the _system variants.
namespace dh_emu {
extern std::atomic<int> g_mapped_count;
bool host_mapped(const void* a);
[[noreturn]] void device_scope_fault(const void* a, const char* op);
inline void device_scope(const void* a, const char* op) {
  if (g_mapped_count.load(std::memory_order_relaxed) && host_mapped(a)) device_scope_fault(a, op);
}
}  // namespace dh_emu
inline int atomicAdd(int* a, int v) {
  dh_emu::device_scope(a, "atomicAdd");
  return __atomic_fetch_add(a, v, __ATOMIC_RELAXED);
}
inline unsigned atomicAdd(unsigned* a, unsigned v) {
  dh_emu::device_scope(a, "atomicAdd");
  return __atomic_fetch_add(a, v, __ATOMIC_RELAXED);
}
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) {
  dh_emu::device_scope(a, "atomicAdd");
  return __atomic_fetch_add(a, v, __ATOMIC_RELAXED);
}
// The _system variants: on a GPU they order against the host too (the host-mapped error record
// is published with them); on x86 every atomic is already that. The device-scope ones are they
// plus the scope check.
inline int atomicCAS_system(int* a, int expected, int desired) {
  __atomic_compare_exchange_n(a, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return expected;  // the old value
}
inline int atomicExch_system(int* a, int v) { return __atomic_exchange_n(a, v, __ATOMIC_RELAXED); }
inline int atomicCAS(int* a, int expected, int desired) {
  dh_emu::device_scope(a, "atomicCAS");
  return atomicCAS_system(a, expected, desired);
}
inline int atomicExch(int* a, int v) {
  dh_emu::device_scope(a, "atomicExch");
  return atomicExch_system(a, v);
}
inline int atomicOr(int* a, int v) {
  dh_emu::device_scope(a, "atomicOr");
  return __atomic_fetch_or(a, v, __ATOMIC_RELAXED);
}
inline unsigned long long atomicMax(unsigned long long* a, unsigned long long v) {
  dh_emu::device_scope(a, "atomicMax");
  unsigned long long cur = __atomic_load_n(a, __ATOMIC_RELAXED);
  while (v > cur && !__atomic_compare_exchange_n(a, &cur, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return cur;
}
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
