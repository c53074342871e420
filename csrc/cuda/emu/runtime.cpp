// runtime.cpp — the CPU execution layer's runtime (see cuda_emu.h): the thread pool that runs
// a block's threads, the barriers and their checks, launches (limits, launch bounds, shared
// memory poisoning, counts) and the CUDA runtime calls the host code makes.
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <string>
#include <vector>

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

// Every __shared__ variable lives in this section (cuda_emu.h); weak: a build whose kernels
// declare none has no such section.
extern "C" char __start_dh_emu_shared[] __attribute__((weak));
extern "C" char __stop_dh_emu_shared[] __attribute__((weak));

namespace dh_emu {
namespace {

std::string where(const Site& s) { return std::string(s.file_name()) + ":" + std::to_string(s.line()); }
bool same_site(const Site& a, const Site& b) {
  return a.line() == b.line() && a.column() == b.column() && std::strcmp(a.file_name(), b.file_name()) == 0;
}

struct Abort {};  // unwinds a thread out of a block that has faulted

// A thread's state, read by the barrier checks of other threads.
enum State : int { kRunning = 0, kAtSyncthreads = 1, kAtSyncwarp = 2, kExited = 3 };

// One barrier: __syncthreads' of a block, or __syncwarp's of a warp (then mask: the lanes it
// waits for). The first arrival fixes the call site (and mask) the others must match.
struct Barrier {
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  int first = 0;  // the first thread to arrive
  unsigned mask = 0;
  Site site;
  unsigned long long gen = 0;
};

// One block in flight. Per-warp barriers have their own mutex, so __syncwarp orders a warp's
// lanes and nothing else: ThreadSanitizer still sees races between warps that only a
// __syncthreads would order.
struct Block {
  int nthreads = 0;
  Barrier all;  // __syncthreads; all.mu also guards exited
  int exited = 0;
  std::vector<std::unique_ptr<Barrier>> warps;
  std::unique_ptr<std::atomic<int>[]> state;
  std::atomic<bool> aborted{false};
  std::mutex fault_mu;
  std::string fault;
  cudaError_t fault_code = cudaSuccess;
};

thread_local Block* t_block = nullptr;
thread_local int t_linear = 0;

long long hang_limit_s() {
  const char* e = std::getenv("DH_EMU_HANG_S");
  return e ? std::atoll(e) : 600;
}

// Records the block's first fault and wakes every thread waiting at a barrier (they unwind).
void record_fault(Block& b, cudaError_t code, const std::string& msg) {
  {
    std::lock_guard<std::mutex> lk(b.fault_mu);
    if (b.fault.empty()) {
      b.fault = msg;
      b.fault_code = code;
    }
  }
  b.aborted.store(true);
  for (auto& w : b.warps) {
    std::lock_guard<std::mutex> lk(w->mu);
    w->cv.notify_all();
  }
  std::lock_guard<std::mutex> lk(b.all.mu);
  b.all.cv.notify_all();
}

[[noreturn]] void fail(Block& b, const std::string& msg, cudaError_t code = cudaErrorLaunchFailure) {
  record_fault(b, code, msg);
  throw Abort{};
}

Block& current_block(const char* what) {
  if (t_block == nullptr) {
    std::fprintf(stderr, "dh_emu: %s called outside a kernel\n", what);
    std::abort();
  }
  return *t_block;
}

std::string thread_name(int t) {
  return "thread " + std::to_string(t) + " (warp " + std::to_string(t / warpSize) + ", lane " +
         std::to_string(t % warpSize) + ")";
}

// Thread t arrives at bar (lk holds bar.mu) as one of `expected`: __syncthreads' (all threads)
// or the __syncwarp of the warp starting at thread w0 (the lanes in mask). The last arrival sets
// the waiters' states back to running and releases them; the others wait, unwinding if the block
// faults. A wait longer than the hang limit is a fault that names the barrier (a deadlock the
// checks did not see, or a spinning thread).
void arrive(Block& b, Barrier& bar, std::unique_lock<std::mutex>& lk, int t, int expected, int w0, unsigned mask,
            State waiting, const Site& site, const char* name) {
  if (bar.arrived == 0) {
    bar.site = site;
    bar.first = t;
    bar.mask = mask;
  }
  if (++bar.arrived == expected) {
    bar.arrived = 0;
    if (waiting == kAtSyncthreads) {
      for (int i = 0; i < b.nthreads; ++i) b.state[i].store(kRunning, std::memory_order_relaxed);
    } else {
      for (int l = 0; l < warpSize && w0 + l < b.nthreads; ++l)
        if ((mask >> l) & 1u) b.state[w0 + l].store(kRunning, std::memory_order_relaxed);
    }
    ++bar.gen;
    bar.cv.notify_all();
    return;
  }
  b.state[t].store(waiting, std::memory_order_relaxed);
  const unsigned long long mine = bar.gen;
  const auto start = std::chrono::steady_clock::now();
  while (bar.gen == mine && !b.aborted.load()) {
    bar.cv.wait_for(lk, std::chrono::seconds(1));
    if (bar.gen == mine && std::chrono::steady_clock::now() - start > std::chrono::seconds(hang_limit_s())) {
      lk.unlock();
      fail(b, std::string(name) + " at " + where(site) + ": no progress for " + std::to_string(hang_limit_s()) +
                  " s (" + thread_name(t) + " waits; a thread it waits for never arrives)");
    }
  }
  if (bar.gen == mine) {
    lk.unlock();
    throw Abort{};
  }
}

}  // namespace

void syncthreads(Site site) {
  Block& b = current_block("__syncthreads");
  const int t = t_linear;
  std::string problem;
  {
    std::unique_lock<std::mutex> lk(b.all.mu);
    if (b.aborted.load()) throw Abort{};
    const int w0 = t - t % warpSize, w1 = std::min(w0 + warpSize, b.nthreads);
    if (b.exited > 0) {
      problem = "__syncthreads at " + where(site) + " reached by " + thread_name(t) + " after " +
                std::to_string(b.exited) + " thread(s) of the block exited: not every thread reaches it";
    } else if (b.all.arrived > 0 && !same_site(site, b.all.site)) {
      problem = "__syncthreads reached from two call sites: " + where(b.all.site) + " (" + thread_name(b.all.first) +
                ") and " + where(site) + " (" + thread_name(t) + ")";
    } else {
      for (int l = w0; l < w1 && problem.empty(); ++l)
        if (b.state[l].load(std::memory_order_relaxed) == kAtSyncwarp)
          problem = "__syncthreads at " + where(site) + " reached by " + thread_name(t) + " while " + thread_name(l) +
                    " of its warp waits at __syncwarp at " + where(b.warps[t / warpSize]->site);
    }
    if (problem.empty()) return arrive(b, b.all, lk, t, b.nthreads, 0, ~0u, kAtSyncthreads, site, "__syncthreads");
  }
  fail(b, problem);
}

void syncwarp(unsigned mask, Site site) {
  Block& b = current_block("__syncwarp");
  const int t = t_linear, lane = t % warpSize, w0 = t - lane;
  const int lanes = std::min(warpSize, b.nthreads - w0);
  Barrier& w = *b.warps[t / warpSize];
  std::string problem;
  {
    std::unique_lock<std::mutex> lk(w.mu);
    if (b.aborted.load()) throw Abort{};
    const unsigned exist = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
    if (!((mask >> lane) & 1u)) {
      problem = "__syncwarp(" + std::to_string(mask) + ") at " + where(site) + " called by " + thread_name(t) +
                ", which is not in the mask";
    } else if (mask & ~exist) {
      problem = "__syncwarp mask at " + where(site) + " names lanes the block does not have (" + std::to_string(lanes) +
                " lanes in this warp)";
    } else if (w.arrived > 0 && (mask != w.mask || !same_site(site, w.site))) {
      problem = "__syncwarp reached with different call sites or masks: " + where(w.site) + " (" +
                thread_name(w.first) + ") and " + where(site) + " (" + thread_name(t) + ")";
    } else {
      for (int l = 0; l < lanes && problem.empty(); ++l) {
        if (!((mask >> l) & 1u)) continue;
        const int s = b.state[w0 + l].load(std::memory_order_relaxed);
        if (s == kExited)
          problem = "__syncwarp at " + where(site) + " waits for " + thread_name(w0 + l) + ", which has exited";
        else if (s == kAtSyncthreads)
          problem = "__syncwarp at " + where(site) + " waits for " + thread_name(w0 + l) +
                    ", which waits at __syncthreads at " + where(b.all.site);
      }
    }
    if (problem.empty())
      return arrive(b, w, lk, t, __builtin_popcount(mask), w0, mask, kAtSyncwarp, site, "__syncwarp");
  }
  fail(b, problem);
}

namespace {

// A thread leaving the kernel: stricter than the hardware, leaving while others wait for it at a
// barrier is a fault.
void thread_exit(Block& b, int t) {
  std::string problem;
  {
    std::lock_guard<std::mutex> lk(b.all.mu);
    ++b.exited;
    b.state[t].store(kExited, std::memory_order_relaxed);
    if (b.all.arrived > 0)
      problem = thread_name(t) + " exited while " + std::to_string(b.all.arrived) +
                " thread(s) wait at __syncthreads at " + where(b.all.site);
  }
  Barrier& w = *b.warps[t / warpSize];
  {
    std::lock_guard<std::mutex> lk(w.mu);
    if (problem.empty() && w.arrived > 0 && ((w.mask >> (t % warpSize)) & 1u))
      problem = thread_name(t) + " exited while lanes of its warp wait for it at __syncwarp at " + where(w.site);
  }
  if (!problem.empty()) record_fault(b, cudaErrorLaunchFailure, problem);
}

struct LaunchBoundsExceeded {
  std::string msg;
};

// The pool: worker i runs thread i of the block in flight.
class Pool {
 public:
  void run_block(Block& b, dim3 block_idx, dim3 block_dim, dim3 grid_dim, void (*call)(void*), void* body) {
    grow(b.nthreads);
    {
      std::lock_guard<std::mutex> lk(done_mu_);
      remaining_ = b.nthreads;
    }
    job_ = Job{&b, block_idx, block_dim, grid_dim, call, body};
    for (int i = 0; i < b.nthreads; ++i) {
      Worker& w = *workers_[i];
      std::lock_guard<std::mutex> lk(w.mu);
      w.go = true;
      w.cv.notify_one();
    }
    std::unique_lock<std::mutex> lk(done_mu_);
    done_cv_.wait(lk, [&] { return remaining_ == 0; });
  }

 private:
  struct Job {
    Block* block;
    dim3 block_idx, block_dim, grid_dim;
    void (*call)(void*);
    void* body;
  };
  struct Worker {
    Pool* pool;
    int index;
    std::mutex mu;
    std::condition_variable cv;
    bool go = false;
  };

  void grow(int n) {
    while (static_cast<int>(workers_.size()) < n) {
      workers_.push_back(std::make_unique<Worker>());
      Worker* w = workers_.back().get();
      w->pool = this;
      w->index = static_cast<int>(workers_.size()) - 1;
      pthread_attr_t attr;
      pthread_attr_init(&attr);
      pthread_attr_setstacksize(&attr, 1 << 20);
      pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);  // parked until the process ends
      pthread_t th;
      if (pthread_create(&th, &attr, &Pool::main, w) != 0) {
        std::fprintf(stderr, "dh_emu: could not start emulation thread %d\n", w->index);
        std::abort();
      }
      pthread_attr_destroy(&attr);
    }
  }

  static void* main(void* arg) {
    Worker& w = *static_cast<Worker*>(arg);
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(w.mu);
        w.cv.wait(lk, [&] { return w.go; });
        w.go = false;
      }
      w.pool->run_thread(w.index);
      std::lock_guard<std::mutex> lk(w.pool->done_mu_);
      if (--w.pool->remaining_ == 0) w.pool->done_cv_.notify_one();
    }
    return nullptr;
  }

  void run_thread(int i) {
    const Job& j = job_;
    Block& b = *j.block;
    const unsigned bx = j.block_dim.x, by = j.block_dim.y;
    threadIdx = dim3(i % bx, (i / bx) % by, i / (bx * by));
    blockIdx = j.block_idx;
    blockDim = j.block_dim;
    gridDim = j.grid_dim;
    t_block = &b;
    t_linear = i;
    bool finished = false;
    try {
      j.call(j.body);
      finished = true;
    } catch (const Abort&) {
    } catch (const LaunchBoundsExceeded& e) {
      record_fault(b, cudaErrorLaunchOutOfResources, e.msg);
    } catch (const std::exception& e) {
      record_fault(b, cudaErrorLaunchFailure, std::string("exception in a kernel: ") + e.what());
    }
    if (finished) thread_exit(b, i);
    t_block = nullptr;
  }

  std::vector<std::unique_ptr<Worker>> workers_;
  Job job_{};
  std::mutex done_mu_;
  std::condition_variable done_cv_;
  int remaining_ = 0;
};

// Never destroyed: its parked threads outlive every static destructor.
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

// Errors reported by cudaGetLastError: per host thread, as in CUDA; the message of the last one
// is kept for cudaGetErrorString.
thread_local cudaError_t t_last_error = cudaSuccess;
thread_local std::string t_last_message;
thread_local cudaError_t t_last_message_code = cudaSuccess;

void set_error(cudaError_t code, const std::string& msg) {
  if (t_last_error == cudaSuccess) t_last_error = code;
  t_last_message = msg;
  t_last_message_code = code;
  std::fprintf(stderr, "dh_emu: %s\n", msg.c_str());
}

std::mutex g_counts_mu;
std::map<std::string, long long> g_counts;
std::atomic<long long> g_syncs{0};

std::string base_name(const char* kernel) {
  std::string s(kernel);
  const size_t lt = s.find('<');
  return lt == std::string::npos ? s : s.substr(0, lt);
}

// Shared memory is not zeroed on a GPU: fill it with a pattern a kernel must not rely on,
// alternating so that a read before write shows up under one of them (0x7f: huge finite floats
// and indices; 0xff: NaN and -1).
void poison_shared(unsigned long long block) {
  if (__start_dh_emu_shared != nullptr && __stop_dh_emu_shared != nullptr)
    std::memset(__start_dh_emu_shared, block % 2 ? 0xff : 0x7f, __stop_dh_emu_shared - __start_dh_emu_shared);
}

std::mutex g_launch_mu;  // one grid at a time (the shared memory section is one)

}  // namespace

void check_launch_bounds(long long max_threads, const char* kernel) {
  const long long n = static_cast<long long>(blockDim.x) * blockDim.y * blockDim.z;
  if (n > max_threads)
    throw LaunchBoundsExceeded{std::string(kernel) + " launched with " + std::to_string(n) +
                               " threads per block, more than its __launch_bounds__(" + std::to_string(max_threads) +
                               ") (cudaErrorLaunchOutOfResources on a GPU)"};
}

void require_block_dim_x(int n, const char* what) {
  if (static_cast<int>(blockDim.x) != n || blockDim.y != 1 || blockDim.z != 1) {
    Block& b = current_block(what);
    fail(b, std::string(what) + " declared for " + std::to_string(n) + " threads, used in a block of (" +
                std::to_string(blockDim.x) + ", " + std::to_string(blockDim.y) + ", " + std::to_string(blockDim.z) +
                ")");
  }
}

// The order the blocks of a launch run in (DH_EMU_BLOCK_ORDER): "index" (the default), "reverse",
// or "shuffle[:SEED]" (a fresh seed, logged once, when none is given). A GPU promises no order
// among blocks, so a kernel whose result depends on it is wrong there; running them in another
// order here makes such a dependence a wrong result.
struct BlockOrder {
  enum Kind { kIndex, kReverse, kShuffle } kind = kIndex;
  std::mt19937_64 rng;
  BlockOrder() {
    const char* v = std::getenv("DH_EMU_BLOCK_ORDER");
    const std::string s = v ? v : "index";
    if (s == "reverse") {
      kind = kReverse;
    } else if (s.rfind("shuffle", 0) == 0) {
      kind = kShuffle;
      unsigned long long seed = s.size() > 8 ? std::strtoull(s.c_str() + 8, nullptr, 10) : std::random_device{}();
      rng.seed(seed);
      std::fprintf(stderr, "dh_emu: blocks run shuffled, DH_EMU_BLOCK_ORDER=shuffle:%llu replays the order\n", seed);
    } else if (s != "index") {
      std::fprintf(stderr, "dh_emu: DH_EMU_BLOCK_ORDER=%s is not index, reverse or shuffle[:SEED]; index\n", s.c_str());
    }
  }
  std::vector<unsigned long long> order(unsigned long long n) {
    std::vector<unsigned long long> o(n);
    std::iota(o.begin(), o.end(), 0ull);
    if (kind == kReverse) std::reverse(o.begin(), o.end());
    if (kind == kShuffle) std::shuffle(o.begin(), o.end(), rng);
    return o;
  }
};

void run_grid_erased(const char* kernel, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t, Site site,
                     void (*call)(void*), void* body) {
  const std::string at = std::string(kernel) + " launched at " + where(site);
  const long long threads = static_cast<long long>(block.x) * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0)
    return set_error(cudaErrorInvalidConfiguration, at + ": empty grid or block");
  if (threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64)
    return set_error(cudaErrorInvalidConfiguration, at + ": block (" + std::to_string(block.x) + ", " +
                                                        std::to_string(block.y) + ", " + std::to_string(block.z) +
                                                        ") exceeds 1024 threads / (1024, 1024, 64)");
  if (grid.x > 2147483647u || grid.y > 65535u || grid.z > 65535u)
    return set_error(cudaErrorInvalidConfiguration, at + ": grid (" + std::to_string(grid.x) + ", " +
                                                        std::to_string(grid.y) + ", " + std::to_string(grid.z) +
                                                        ") exceeds (2^31 - 1, 65535, 65535)");
  if (shared_bytes != 0)  // no dualhead kernel declares extern __shared__
    return set_error(cudaErrorInvalidValue, at + ": dynamic shared memory is not emulated (" +
                                                std::to_string(shared_bytes) + " bytes requested)");
  {
    std::lock_guard<std::mutex> lk(g_counts_mu);
    ++g_counts[base_name(kernel)];
  }
  std::lock_guard<std::mutex> lk(g_launch_mu);
  const auto start = std::chrono::steady_clock::now();
  struct Trace {  // DH_EMU_TRACE=1: each launch's shape and wall time on stderr
    const std::string& at;
    dim3 grid, block;
    std::chrono::steady_clock::time_point start;
    ~Trace() {
      static const bool on = std::getenv("DH_EMU_TRACE") != nullptr;
      if (on)
        std::fprintf(stderr, "dh_emu: %s grid %u block %u: %.3f s\n", at.c_str(), grid.x * grid.y * grid.z,
                     block.x * block.y * block.z,
                     std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
  } trace{at, grid, block, start};
  static BlockOrder block_order;  // under g_launch_mu
  const unsigned long long nblocks = static_cast<unsigned long long>(grid.x) * grid.y * grid.z;
  for (const unsigned long long n : block_order.order(nblocks)) {
    const unsigned x = static_cast<unsigned>(n % grid.x), y = static_cast<unsigned>(n / grid.x % grid.y),
                   z = static_cast<unsigned>(n / grid.x / grid.y);
    Block b;
    b.nthreads = static_cast<int>(threads);
    b.state.reset(new std::atomic<int>[threads]);
    for (long long i = 0; i < threads; ++i) b.state[i].store(kRunning);
    for (long long w = 0; w < (threads + warpSize - 1) / warpSize; ++w) b.warps.push_back(std::make_unique<Barrier>());
    poison_shared(n);
    pool().run_block(b, dim3(x, y, z), block, grid, call, body);
    if (b.aborted.load()) {  // a fault ends the grid, as a device fault ends a kernel
      return set_error(b.fault_code, at + ", block (" + std::to_string(x) + ", " + std::to_string(y) + ", " +
                                         std::to_string(z) + "): " + b.fault);
    }
  }
}

std::string launch_counts() {
  std::lock_guard<std::mutex> lk(g_counts_mu);
  std::string out;
  for (const auto& [name, count] : g_counts) out += name + "=" + std::to_string(count) + ";";
  return out;
}

long long host_syncs() { return g_syncs.load(); }

}  // namespace dh_emu

// --- The CUDA runtime calls of the host code. Launches run to completion, so a stream is always
// idle and an asynchronous call is a synchronous one.
cudaError_t cudaGetLastError() {
  const cudaError_t e = dh_emu::t_last_error;
  dh_emu::t_last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() { return dh_emu::t_last_error; }

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorLaunchOutOfResources:
      return "cudaErrorLaunchOutOfResources";
    case cudaErrorLaunchFailure:
      return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t e) {
  if (e == dh_emu::t_last_message_code && !dh_emu::t_last_message.empty()) return dh_emu::t_last_message.c_str();
  return e == cudaSuccess ? "no error" : "emulated CUDA error";
}

cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t) {
  std::memset(p, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) {
  ++dh_emu::g_syncs;
  return cudaSuccess;
}

cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned) {
  *p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}

cudaError_t cudaFreeHost(void* p) {
  std::free(p);
  return cudaSuccess;
}
