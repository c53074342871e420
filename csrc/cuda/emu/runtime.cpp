// runtime.cpp — the CPU execution layer's runtime (see cuda_emu.h): the thread pool that runs
// blocks (several at once), the barriers and their checks, each block's shared memory, launches
// (limits, launch bounds, the register file and static shared memory of the GPUs the kernels are
// built for, counts), device memory that host code may not read, and the CUDA runtime calls.
//
// Under ThreadSanitizer this file is not instrumented (tests/cuda_emu.py): its own bookkeeping
// is not the kernels' business. Its mutexes are intercepted all the same, so every lock it takes
// is wrapped in IgnoreSync, and the only happens-before edges the kernels' threads get are the
// ones CUDA gives: the launch (host -> every thread), a barrier's completion (every waiter's
// work before it -> every waiter's work after it) and the grid's end (every thread -> host).
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

// The sanitizers' interfaces: weak, so each is null unless its runtime is loaded.
extern "C" {
void __tsan_acquire(void* addr) __attribute__((weak));
void __tsan_release(void* addr) __attribute__((weak));
void AnnotateIgnoreSyncBegin(const char* file, int line) __attribute__((weak));
void AnnotateIgnoreSyncEnd(const char* file, int line) __attribute__((weak));
void __asan_poison_memory_region(const volatile void* addr, size_t size) __attribute__((weak));
void __asan_unpoison_memory_region(const volatile void* addr, size_t size) __attribute__((weak));
}

namespace dh_emu {
namespace {

// ThreadSanitizer: the runtime's own locks order nothing (see the top of the file).
struct IgnoreSync {
  IgnoreSync() {
    if (AnnotateIgnoreSyncBegin) AnnotateIgnoreSyncBegin(__FILE__, __LINE__);
  }
  ~IgnoreSync() {
    if (AnnotateIgnoreSyncEnd) AnnotateIgnoreSyncEnd(__FILE__, __LINE__);
  }
  IgnoreSync(const IgnoreSync&) = delete;
  IgnoreSync& operator=(const IgnoreSync&) = delete;
};
// The edges CUDA does give (outside any IgnoreSync: ThreadSanitizer drops them inside one).
void hb_release(void* obj) {
  if (__tsan_release) __tsan_release(obj);
}
void hb_acquire(void* obj) {
  if (__tsan_acquire) __tsan_acquire(obj);
}
void asan_poison(const void* p, size_t n) {
  if (__asan_poison_memory_region && n) __asan_poison_memory_region(p, n);
}
void asan_unpoison(const void* p, size_t n) {
  if (__asan_unpoison_memory_region && n) __asan_unpoison_memory_region(p, n);
}

std::string where(const Site& s) { return std::string(s.file_name()) + ":" + std::to_string(s.line()); }
bool same_site(const Site& a, const Site& b) {
  return a.line() == b.line() && a.column() == b.column() && std::strcmp(a.file_name(), b.file_name()) == 0;
}

struct Abort {};  // unwinds a thread out of a block that has faulted

// A thread's state, read by the barrier checks of other threads.
enum State : int { kRunning = 0, kAtSyncthreads = 1, kAtSyncwarp = 2, kExited = 3 };

// One barrier: __syncthreads' of a block, or __syncwarp's of a warp (then mask: the lanes it
// waits for). The first arrival fixes the call site (and mask) the others must match. hb[gen % 2]
// is the generation's happens-before object: every arrival releases it, every thread leaving
// acquires it. Two suffice: generation g + 2 is released only after every thread of g has left.
struct Barrier {
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  int first = 0;  // the first thread to arrive
  unsigned mask = 0;
  Site site;
  std::atomic<unsigned long long> gen{0};
  char* hb = nullptr;
};

// A block's __shared__ variables: carved from its slot's arena on first use (any thread of the
// block; the others get the same address), each followed by a redzone that AddressSanitizer
// reports. The whole arena is filled with the block's poison byte and poisoned before the block.
constexpr size_t kStaticSharedLimit = 48 * 1024;  // per block, static (CUDA C++ Programming Guide, technical specs)
constexpr size_t kRedzone = 64;
constexpr size_t kArenaBytes = 2 * kStaticSharedLimit;
constexpr int kMaxThreads = 1024, kMaxWarps = kMaxThreads / 32;

struct SharedVar {
  const void* key;
  size_t offset, bytes;
};

// The block in flight on a slot. Made once per slot and reset for each block: its mutexes are
// never destroyed while a thread of an earlier block might still be seen using them (under
// ThreadSanitizer no edge orders an earlier block's threads before the next block's set-up). The
// barriers' happens-before objects are fresh memory per block, so nothing carries over.
// Per-warp barriers have their own mutex, so __syncwarp orders a warp's lanes and nothing else.
struct Block {
  int nthreads = 0;
  Barrier all;  // __syncthreads; all.mu also guards exited
  int exited = 0;
  std::vector<std::unique_ptr<Barrier>> warps;
  std::unique_ptr<std::atomic<int>[]> state{new std::atomic<int>[kMaxThreads]};
  std::unique_ptr<char[]> hb;
  std::atomic<bool> aborted{false};
  std::mutex fault_mu;
  std::string fault;
  cudaError_t fault_code = cudaSuccess;
  char* arena = nullptr;
  std::mutex shared_mu;
  std::vector<SharedVar> shared;
  size_t shared_used = 0, shared_bytes = 0;

  Block() {
    for (int w = 0; w < kMaxWarps; ++w) warps.push_back(std::make_unique<Barrier>());
  }
  void reset(int n, char* arena_) {
    nthreads = n;
    exited = 0;
    for (int i = 0; i < n; ++i) state[i].store(kRunning);
    hb.reset(new char[2 * (kMaxWarps + 1)]);
    const auto fresh = [](Barrier& bar, char* hb_pair) {
      bar.hb = hb_pair;
      bar.arrived = 0;
      bar.gen = 0;
    };
    fresh(all, hb.get());
    for (int w = 0; w < kMaxWarps; ++w) fresh(*warps[w], hb.get() + 2 * (w + 1));
    aborted = false;
    fault.clear();
    fault_code = cudaSuccess;
    arena = arena_;
    shared.clear();
    shared_used = shared_bytes = 0;
  }
};

thread_local Block* t_block = nullptr;
thread_local int t_linear = 0;

long long hang_limit_s() {
  const char* e = std::getenv("DH_EMU_HANG_S");
  return e ? std::atoll(e) : 600;
}

// Records the block's first fault and wakes every thread waiting at a barrier (they unwind).
void record_fault(Block& b, cudaError_t code, const std::string& msg) {
  IgnoreSync quiet;
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

// The barrier's only happens-before edge: released on arrival, acquired on leaving. The
// generation cannot move on before this thread arrives, so reading it first is safe.
template <typename F>
void pass(Barrier& bar, F&& wait) {
  char* hb = bar.hb + bar.gen.load() % 2;
  hb_release(hb);
  {
    IgnoreSync quiet;
    wait();
  }
  hb_acquire(hb);
}

}  // namespace

void syncthreads(Site site) {
  Block& b = current_block("__syncthreads");
  const int t = t_linear;
  std::string problem;
  pass(b.all, [&] {
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
    if (problem.empty()) arrive(b, b.all, lk, t, b.nthreads, 0, ~0u, kAtSyncthreads, site, "__syncthreads");
  });
  if (!problem.empty()) fail(b, problem);
}

void syncwarp(unsigned mask, Site site) {
  Block& b = current_block("__syncwarp");
  const int t = t_linear, lane = t % warpSize, w0 = t - lane;
  const int lanes = std::min(warpSize, b.nthreads - w0);
  Barrier& w = *b.warps[t / warpSize];
  std::string problem;
  pass(w, [&] {
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
    if (problem.empty()) arrive(b, w, lk, t, __builtin_popcount(mask), w0, mask, kAtSyncwarp, site, "__syncwarp");
  });
  if (!problem.empty()) fail(b, problem);
}

void* shared_alloc(const void* key, size_t bytes, size_t align, const char* name) {
  Block& b = current_block("a __shared__ declaration");
  std::string problem;
  void* at = nullptr;
  {
    IgnoreSync quiet;
    std::lock_guard<std::mutex> lk(b.shared_mu);
    for (const SharedVar& v : b.shared)
      if (v.key == key) return b.arena + v.offset;
    const size_t a = std::max<size_t>(align, 16);
    const size_t offset = (b.shared_used + a - 1) / a * a;
    if (b.shared_bytes + bytes > kStaticSharedLimit || offset + bytes + kRedzone > kArenaBytes) {
      problem = std::string("__shared__ ") + name + " (" + std::to_string(bytes) + " bytes) takes the block's static " +
                "shared memory to " + std::to_string(b.shared_bytes + bytes) + " bytes, over the 48 KB a block may " +
                "declare statically";
    } else {
      b.shared.push_back({key, offset, bytes});
      b.shared_used = offset + bytes + kRedzone;
      b.shared_bytes += bytes;
      at = b.arena + offset;
      asan_unpoison(at, bytes);
    }
  }
  if (!problem.empty()) fail(b, problem, cudaErrorLaunchOutOfResources);
  return at;
}

namespace {

// A thread leaving the kernel: stricter than the hardware, leaving while others wait for it at a
// barrier is a fault.
void thread_exit(Block& b, int t) {
  std::string problem;
  {
    IgnoreSync quiet;
    {
      std::lock_guard<std::mutex> lk(b.all.mu);
      ++b.exited;
      b.state[t].store(kExited, std::memory_order_relaxed);
      if (b.all.arrived > 0)
        problem = thread_name(t) + " exited while " + std::to_string(b.all.arrived) +
                  " thread(s) wait at __syncthreads at " + where(b.all.site);
    }
    Barrier& w = *b.warps[t / warpSize];
    std::lock_guard<std::mutex> lk(w.mu);
    if (problem.empty() && w.arrived > 0 && ((w.mask >> (t % warpSize)) & 1u))
      problem = thread_name(t) + " exited while lanes of its warp wait for it at __syncwarp at " + where(w.site);
  }
  if (!problem.empty()) record_fault(b, cudaErrorLaunchFailure, problem);
}

struct LaunchBoundsExceeded {
  std::string msg;
};

// What every block of a launch shares: the kernel's body, the shape, the first fault (in the
// blocks' run order), and the launch's happens-before object `begin`, which the host releases
// before each block and its threads acquire. So a block happens after the host's work and after
// the blocks that had finished when it started (on a GPU too a block may start only when an
// earlier one has left its SM), and blocks in flight together are unordered: a race between
// them is a ThreadSanitizer report.
struct Grid {
  dim3 block_dim, grid_dim;
  void (*call)(void*);
  void* body;
  char begin = 0;
  size_t fault_pos = ~size_t{0};  // under the pool's mutex
  dim3 fault_block;
  std::string fault;
  cudaError_t fault_code = cudaSuccess;
};

// The pool: slots of workers, a block in flight per slot; worker i of a slot runs thread i of
// its block. Each slot has its block's shared-memory arena.
class Pool {
 public:
  explicit Pool(int slots) {
    for (int i = 0; i < slots; ++i) slots_.push_back(std::make_unique<Slot>());
  }

  // Starts the block at position pos of the run order on a free slot (waiting for one) and
  // returns at once; false, starting nothing, once a block of the grid has faulted. The slot's
  // arena is filled with poison byte `fill` and poisoned (AddressSanitizer) before the block.
  bool start(Grid& g, size_t pos, dim3 block_idx, int nthreads, int fill) {
    Slot* s = nullptr;
    {
      IgnoreSync quiet;
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return free_slot() != nullptr; });
      if (g.fault_pos != ~size_t{0}) return false;
      s = free_slot();
      s->busy = true;
      s->remaining = nthreads;
    }
    hb_acquire(&s->done);  // the slot's last block is over: its arena and block are ours
    grow(*s, nthreads);
    asan_unpoison(s->arena.get(), kArenaBytes);
    std::memset(s->arena.get(), fill, kArenaBytes);
    asan_poison(s->arena.get(), kArenaBytes);
    s->block.reset(nthreads, s->arena.get());
    hb_release(&g.begin);
    s->job = Job{&g, pos, block_idx};
    IgnoreSync quiet;
    for (int i = 0; i < nthreads; ++i) {
      Worker& w = *s->workers[i];
      std::lock_guard<std::mutex> lk(w.mu);
      w.go = true;
      w.cv.notify_one();
    }
    return true;
  }

  // Waits until no block is in flight; everything they did happens before what follows.
  void drain() {
    {
      IgnoreSync quiet;
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] {
        for (auto& x : slots_)
          if (x->busy) return false;
        return true;
      });
    }
    for (auto& x : slots_) hb_acquire(&x->done);
  }

 private:
  struct Job {
    Grid* grid;
    size_t pos;
    dim3 block_idx;
  };
  struct Slot;
  struct Worker {
    Pool* pool;
    Slot* slot;
    int index;
    std::mutex mu;
    std::condition_variable cv;
    bool go = false;
  };
  struct Slot {
    std::vector<std::unique_ptr<Worker>> workers;
    std::unique_ptr<char[]> arena{new char[kArenaBytes]};
    Block block;
    Job job{};
    char done = 0;  // happens-before object: released by each thread of the slot's block as it leaves
    bool busy = false;
    int remaining = 0;
  };

  Slot* free_slot() {
    for (auto& x : slots_)
      if (!x->busy) return x.get();
    return nullptr;
  }

  void grow(Slot& s, int n) {
    while (static_cast<int>(s.workers.size()) < n) {
      s.workers.push_back(std::make_unique<Worker>());
      Worker* w = s.workers.back().get();
      w->pool = this;
      w->slot = &s;
      w->index = static_cast<int>(s.workers.size()) - 1;
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
    Slot& s = *w.slot;
    for (;;) {
      {
        IgnoreSync quiet;
        std::unique_lock<std::mutex> lk(w.mu);
        w.cv.wait(lk, [&] { return w.go; });
        w.go = false;
      }
      Grid& g = *s.job.grid;
      hb_acquire(&g.begin);
      run_thread(g, s.job.block_idx, s.block, w.index);
      hb_release(&s.done);
      IgnoreSync quiet;
      std::lock_guard<std::mutex> lk(w.pool->mu_);
      if (--s.remaining == 0) {
        Block& b = s.block;
        if (b.aborted.load() && s.job.pos < g.fault_pos) {  // a fault ends the grid, as a device fault ends a kernel
          g.fault_pos = s.job.pos;
          g.fault_block = s.job.block_idx;
          g.fault = b.fault;
          g.fault_code = b.fault_code;
        }
        s.busy = false;
        w.pool->cv_.notify_all();
      }
    }
    return nullptr;
  }

  static void run_thread(const Grid& g, dim3 block_idx, Block& b, int i) {
    const unsigned bx = g.block_dim.x, by = g.block_dim.y;
    threadIdx = dim3(i % bx, (i / bx) % by, i / (bx * by));
    blockIdx = block_idx;
    blockDim = g.block_dim;
    gridDim = g.grid_dim;
    t_block = &b;
    t_linear = i;
    bool finished = false;
    try {
      g.call(g.body);
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

  std::vector<std::unique_ptr<Slot>> slots_;
  std::mutex mu_;
  std::condition_variable cv_;
};

// DH_EMU_BLOCKS_IN_FLIGHT (default 4): how many blocks of a launch run at once.
int blocks_in_flight() {
  const char* e = std::getenv("DH_EMU_BLOCKS_IN_FLIGHT");
  const int n = e ? std::atoi(e) : 4;
  return n >= 1 ? std::min(n, 64) : 1;
}

// Never destroyed: its parked threads outlive every static destructor.
Pool& pool() {
  static Pool* p = new Pool(blocks_in_flight());
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
std::atomic<unsigned long long> g_blocks{0};  // blocks run so far: picks each block's poison byte

std::string base_name(const char* kernel) {
  std::string s(kernel);
  const size_t lt = s.find('<');
  return lt == std::string::npos ? s : s.substr(0, lt);
}

std::mutex g_launch_mu;  // one grid at a time: launches on any stream run to completion in order

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

namespace {

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

// --- The register file and static shared memory of the GPUs the kernels are built for.
// DH_EMU_RESOURCES names a table written by tests/cuda_emu.py from ptxas' report (nvcc
// --resource-usage of every csrc/cuda/*.cu, each arch the wheel is built for): a line per kernel
// instantiation and arch, "arch<TAB>name(parameter types)<TAB>registers<TAB>static shared bytes".
// The limits are those of sm_80 and sm_90 alike (CUDA C++ Programming Guide, technical
// specifications per compute capability): 64K 32-bit registers per block, allocated per warp in
// units of 256 (the CUDA occupancy calculator's register allocation unit), and 48 KB of static
// shared memory per block.
constexpr long long kRegistersPerBlock = 65536;
constexpr long long kRegisterUnit = 256;

struct Resources {
  std::string arch;
  long long registers, shared_bytes;
};

struct ResourceTable {
  bool loaded = false;
  std::string path;
  std::multimap<std::string, Resources> rows;
  ResourceTable() {
    const char* e = std::getenv("DH_EMU_RESOURCES");
    if (e == nullptr || !*e) return;
    path = e;
    std::ifstream f(path);
    if (!f) {
      std::fprintf(stderr, "dh_emu: DH_EMU_RESOURCES=%s cannot be read; the register check is off\n", e);
      return;
    }
    std::string line;
    while (std::getline(f, line)) {
      if (line.empty() || line[0] == '#') continue;
      std::istringstream in(line);
      std::string arch, sig, regs, smem;
      if (std::getline(in, arch, '\t') && std::getline(in, sig, '\t') && std::getline(in, regs, '\t') &&
          std::getline(in, smem))
        rows.emplace(sig, Resources{arch, std::atoll(regs.c_str()), std::atoll(smem.c_str())});
    }
    loaded = true;
  }
};

// Why a block of `threads` threads of kernel `sig` cannot launch on some GPU of the table ("" if it can).
std::string resources_problem(const std::string& sig, long long threads) {
  static ResourceTable table;  // under g_launch_mu
  if (!table.loaded) return "";
  const auto [lo, hi] = table.rows.equal_range(sig);
  if (lo == hi)
    return "no entry for " + sig + " in the register table " + table.path +
           " (the table is older than the kernels: rebuild it with tests/cuda_emu.py build)";
  for (auto it = lo; it != hi; ++it) {
    const Resources& r = it->second;
    const long long per_warp = (r.registers * warpSize + kRegisterUnit - 1) / kRegisterUnit * kRegisterUnit;
    const long long need = (threads + warpSize - 1) / warpSize * per_warp;
    if (need > kRegistersPerBlock)
      return std::to_string(threads) + " threads of " + std::to_string(r.registers) + " registers (ptxas, " + r.arch +
             ") need " + std::to_string(need) + " registers, more than the " + std::to_string(kRegistersPerBlock) +
             " of a block (cudaErrorLaunchOutOfResources on a GPU; declare __launch_bounds__ or launch fewer threads)";
    if (r.shared_bytes > static_cast<long long>(kStaticSharedLimit))
      return std::to_string(r.shared_bytes) + " bytes of static shared memory (ptxas, " + r.arch +
             "), more than the 48 KB of a block";
  }
  return "";
}

// --- Device memory: the CPU tensors the CUDA host code hands to its kernels (host.h's ptr()
// registers each while a host op, a CudaGuard's scope, runs). From the op's first launch on they
// are poisoned whenever no kernel runs: host code may reach them only through a kernel, a
// cudaMemsetAsync or an explicit copy (copy_to_host), as on a GPU. The registry keeps each
// tensor alive until the op ends, so nothing is freed while poisoned.
struct DeviceRegion {
  const char* p;
  size_t bytes;
  std::shared_ptr<void> keep;
};
struct HostOp {
  std::vector<DeviceRegion> regions;
  std::vector<const void*> host_tensors;
  bool launched = false;
};
thread_local std::vector<HostOp> t_ops;

void poison_regions(bool on) {
  if (t_ops.empty()) return;
  for (const DeviceRegion& r : t_ops.back().regions) on ? asan_poison(r.p, r.bytes) : asan_unpoison(r.p, r.bytes);
}

}  // namespace

void enter_host_op() { t_ops.emplace_back(); }

void leave_host_op() {
  poison_regions(false);
  t_ops.pop_back();
}

void device_memory(const void* p, size_t bytes, std::shared_ptr<void> keep) {
  if (t_ops.empty() || p == nullptr || bytes == 0) return;
  HostOp& op = t_ops.back();
  if (std::find(op.host_tensors.begin(), op.host_tensors.end(), p) != op.host_tensors.end()) return;
  op.regions.push_back({static_cast<const char*>(p), bytes, std::move(keep)});
  if (op.launched) asan_poison(p, bytes);
}

void host_copy_begin() { poison_regions(false); }

void host_copy_end(const void* copy) {
  if (t_ops.empty()) return;
  t_ops.back().host_tensors.push_back(copy);
  if (t_ops.back().launched) poison_regions(true);
}

void allocated_like(const void* t, const void* like) {
  if (t_ops.empty() || t == nullptr) return;
  std::vector<const void*>& host = t_ops.back().host_tensors;
  if (std::find(host.begin(), host.end(), like) != host.end()) host.push_back(t);
}

// cudaMemsetAsync: a device operation on device memory.
void device_memset(void* p, int value, size_t bytes) {
  poison_regions(false);
  std::memset(p, value, bytes);
  if (!t_ops.empty() && t_ops.back().launched) poison_regions(true);
}

namespace {

void run_blocks(const std::string& at, dim3 grid, dim3 block, void (*call)(void*), void* body) {
  static BlockOrder block_order;  // under g_launch_mu
  const int threads = static_cast<int>(block.x * block.y * block.z);
  Grid g{block, grid, call, body};
  const unsigned long long nblocks = static_cast<unsigned long long>(grid.x) * grid.y * grid.z;
  const std::vector<unsigned long long> order = block_order.order(nblocks);
  for (size_t k = 0; k < order.size(); ++k) {
    const unsigned long long n = order[k];
    const dim3 idx(static_cast<unsigned>(n % grid.x), static_cast<unsigned>(n / grid.x % grid.y),
                   static_cast<unsigned>(n / grid.x / grid.y));
    if (!pool().start(g, k, idx, threads, g_blocks++ % 2 ? 0xff : 0x7f)) break;
  }
  pool().drain();
  if (g.fault_pos != ~size_t{0})
    set_error(g.fault_code, at + ", block (" + std::to_string(g.fault_block.x) + ", " +
                                std::to_string(g.fault_block.y) + ", " + std::to_string(g.fault_block.z) +
                                "): " + g.fault);
}

}  // namespace

void run_grid_erased(const char* kernel, const char* params, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t,
                     Site site, void (*call)(void*), void* body) {
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
  std::lock_guard<std::mutex> lk(g_launch_mu);
  const std::string name = base_name(kernel);
  const std::string problem = resources_problem(name + "(" + params + ")", threads);
  if (!problem.empty()) return set_error(cudaErrorLaunchOutOfResources, at + ": " + problem);
  {
    std::lock_guard<std::mutex> c(g_counts_mu);
    ++g_counts[name];
  }
  const auto start = std::chrono::steady_clock::now();
  poison_regions(false);
  if (!t_ops.empty()) t_ops.back().launched = true;
  run_blocks(at, grid, block, call, body);
  poison_regions(true);
  static const bool trace = std::getenv("DH_EMU_TRACE") != nullptr;  // each launch's shape and wall time
  if (trace)
    std::fprintf(stderr, "dh_emu: %s grid %u block %lld: %.3f s\n", at.c_str(), grid.x * grid.y * grid.z, threads,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

// Host-mapped allocations (cudaHostAlloc): a fixed table, read without a lock by every atomic.
constexpr int kMaxMapped = 64;
std::atomic<int> g_mapped_count{0};
std::atomic<const char*> g_mapped_at[kMaxMapped];
std::atomic<size_t> g_mapped_bytes[kMaxMapped];

bool host_mapped(const void* a) {
  const char* p = static_cast<const char*>(a);
  const int n = std::min(g_mapped_count.load(), kMaxMapped);
  for (int i = 0; i < n; ++i) {
    const char* at = g_mapped_at[i].load();
    if (at && p >= at && p < at + g_mapped_bytes[i].load()) return true;
  }
  return false;
}

void device_scope_fault(const void* a, const char* op) {
  Block& b = current_block(op);
  char addr[32];
  std::snprintf(addr, sizeof addr, "%p", a);
  fail(b, std::string(op) + " on host-mapped memory (" + addr + ", cudaHostAlloc): a device-scope atomic, which " +
              "the host may see out of order; host-mapped memory takes " + op + "_system");
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
  dh_emu::device_memset(p, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) {
  ++dh_emu::g_syncs;
  return cudaSuccess;
}

cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned) {
  *p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  const int i = dh_emu::g_mapped_count.load();
  if (*p && i < dh_emu::kMaxMapped) {
    dh_emu::g_mapped_at[i].store(static_cast<const char*>(*p));
    dh_emu::g_mapped_bytes[i].store(bytes);
    ++dh_emu::g_mapped_count;
  }
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}

cudaError_t cudaFreeHost(void* p) {
  for (int i = 0; i < std::min(dh_emu::g_mapped_count.load(), dh_emu::kMaxMapped); ++i)
    if (dh_emu::g_mapped_at[i].load() == p) dh_emu::g_mapped_at[i].store(nullptr);
  std::free(p);
  return cudaSuccess;
}
