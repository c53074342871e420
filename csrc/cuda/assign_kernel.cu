// CUDA kernels of dualhead::assign: the stages of csrc/assign_core.h.
//   gt_rows_kernel        a thread per ground truth (candidates, metrics, top-k, claims); a
//                         ground truth with more than split_cells candidate cells is queued for
//   gt_rows_split_kernel  a warp per queued ground truth (cells dealt round-robin to the lanes,
//                         partial lists merged by lane 0), so one huge box cannot serialise the
//                         launch; partition and merge are assign_core.h functions the CPU tests
//                         run too (DUALHEAD_CPU_SPLIT_CELLS)
//   resolve_kernel        a block per (head, image): the five resolve phases, threads over
//                         anchors or ground truths, barriers between phases
//   stats_kernel          a thread per ground truth (dual calls with statistics)
// No torch or c10 headers; the host code checks the launches.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cub/block/block_scan.cuh>

#include "../assign_core.h"
#include "launchers.h"

namespace dualhead {
namespace {

constexpr int kThreads = 64;  // gt_rows / stats: each thread runs a serial chain; spread them over SMs
// A block per (head, image) for the resolve phases: W1 has only H * B = 32 of them, so each is
// made as wide as a block goes (8400 anchors = ~8 per thread and phase); 40 registers/thread.
constexpr int kResolveThreads = 1024;
constexpr int kWarpsPerBlock = 2;     // shared memory: 2 x 32 lanes x sizeof(LaneLists) ~ 29 KB
constexpr unsigned kMaxSplitBlocks = 4096;

inline unsigned blocks_for(int64_t n, int threads = kThreads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 65535 ? (b > 0 ? b : 1) : 65535);  // grid-stride loops cover the rest
}

// A thread per ground truth; rows with more than s.split_cells candidate cells are queued for
// gt_rows_split_kernel instead (queue order varies, rows are independent).
template <typename S>
__global__ void gt_rows_kernel(AssignParams p, const S* s0, const S* s1, AssignScratch s) {
  const S* sc[2] = {s0, s1};
  for (int64_t row = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; row < p.B * p.M;
       row += int64_t(gridDim.x) * blockDim.x) {
    if (!p.mask[row]) continue;
    float* vals = s.vals + row * 2 * s.kmax;
    int64_t* idxs = s.idxs + row * 2 * s.kmax;
    GtRow r = gt_row_begin(p, row);
    if (split_row(p, r.region, s.split_cells)) {
      s.split_rows[atomicAdd(s.n_split, 1)] = row;
      continue;
    }
    for_each_candidate(p, r.region, [&](int64_t a) { gt_row_visit(p, sc, r, vals, idxs, s.kmax, a); });
    gt_row_end(p, sc, r, vals, idxs, s.kmax);
  }
}

// One warp per queued row (grid-stride; every lane takes the same rows, so the branches below
// are warp-uniform): cells dealt round-robin to the lanes, lane 0 merges.
template <typename S>
__global__ void gt_rows_split_kernel(AssignParams p, const S* s0, const S* s1, AssignScratch s) {
  __shared__ LaneLists shared[kWarpsPerBlock][kLanes];
  const S* sc[2] = {s0, s1};
  const int lane = threadIdx.x % kLanes, warp = threadIdx.x / kLanes;
  const int64_t warps = int64_t(gridDim.x) * kWarpsPerBlock, queued = *s.n_split;
  for (int64_t q = blockIdx.x * int64_t(kWarpsPerBlock) + warp; q < queued; q += warps) {
    const int64_t row = s.split_rows[q];
    GtRow r = gt_row_begin(p, row);
    LaneLists& mine = shared[warp][lane];
    lane_reset(mine);
    for_each_candidate_slice(p, r.region, lane, kLanes, [&](int64_t a) { lane_visit(p, sc, r, mine, a); });
    __syncwarp();
    if (lane == 0) {
      float* vals = s.vals + row * 2 * s.kmax;
      int64_t* idxs = s.idxs + row * 2 * s.kmax;
      for (int l = 0; l < kLanes; ++l) lane_merge(p, r, shared[warp][l], vals, idxs, s.kmax);
      gt_row_end(p, sc, r, vals, idxs, s.kmax);
    }
    __syncwarp();  // lane 0 has read every lane's lists before they are reused
  }
}

// member_offsets of assign_core.h as a block scan (tiles of blockDim ground truths).
__device__ void block_member_offsets(const AssignParams& p, const ImageScratch& s) {
  using Scan = cub::BlockScan<int, kResolveThreads>;
  __shared__ typename Scan::TempStorage tmp;
  __shared__ int carry;
  if (threadIdx.x == 0) carry = 0;
  __syncthreads();
  for (int64_t base = 0; base < p.M; base += kResolveThreads) {
    const int64_t g = base + threadIdx.x;
    const int c = g < p.M ? s.count[g] : 0;
    int before, total;
    Scan(tmp).ExclusiveSum(c, before, total);
    if (g < p.M) s.start[g] = s.cursor[g] = carry + before;
    __syncthreads();  // every thread has read carry; tmp may be reused
    if (threadIdx.x == 0) carry += total;
    __syncthreads();
  }
  if (threadIdx.x == 0) s.start[p.M] = carry;
}

// A block per (head, image): the five resolve phases of assign_core.h, a barrier between them.
template <typename S>
__global__ void __launch_bounds__(kResolveThreads) resolve_kernel(AssignParams p, const S* s0, const S* s1,
                                                                  AssignScratch s) {
  const S* sc[2] = {s0, s1};
  const int t = threadIdx.x, T = blockDim.x;
  for (int64_t hb = blockIdx.x; hb < p.H * p.B; hb += gridDim.x) {
    const int h = static_cast<int>(hb / p.B);
    const int64_t b = hb % p.B;
    const ImageScratch is{s.mf + hb * p.N, s.of + hb * p.N, s.ga + hb * p.N, s.count + hb * p.M,
                          s.cursor + hb * p.M, s.mg + hb * p.M, s.og + hb * p.M, s.lv + hb * p.M * s.k2,
                          s.li + hb * p.M * s.k2, s.k2, image_members(p, h, b), image_member_start(p, h, b)};
    for (int64_t g = t; g < p.M; g += T) is.count[g] = 0;
    __syncthreads();
    for (int64_t a = t; a < p.N; a += T) resolve_anchor(p, sc, h, b, a, is);
    __syncthreads();
    block_member_offsets(p, is);
    __syncthreads();
    for (int64_t a = t; a < p.N; a += T) place_member(a, is);
    __syncthreads();
    for (int64_t g = t; g < p.M; g += T) finish_gt(p, h, g, is);
    __syncthreads();
    for (int64_t a = t; a < p.N; a += T) write_anchor(p, h, b, a, is);
    __syncthreads();  // the shared scan state is reused by the next (head, image)
  }
}

__global__ void stats_kernel(AssignParams p, AssignScratch s) {
  for (int64_t row = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; row < p.B * p.M;
       row += int64_t(gridDim.x) * blockDim.x)
    stats_gt(p, row / p.M, row % p.M, s.pick, s.rank, s.gap);
}

template <typename S>
void launch_typed(const AssignParams& p, const void* v0, const void* v1, const AssignScratch& s, cudaStream_t st) {
  const S* s0 = static_cast<const S*>(v0);
  const S* s1 = static_cast<const S*>(v1);
  gt_rows_kernel<S><<<blocks_for(p.B * p.M), kThreads, 0, st>>>(p, s0, s1, s);
  const int64_t split_blocks = (p.B * p.M + kWarpsPerBlock - 1) / kWarpsPerBlock;
  gt_rows_split_kernel<S><<<static_cast<unsigned>(split_blocks < kMaxSplitBlocks ? split_blocks : kMaxSplitBlocks),
                            kWarpsPerBlock * kLanes, 0, st>>>(p, s0, s1, s);
  resolve_kernel<S><<<static_cast<unsigned>(p.H * p.B < 65535 ? p.H * p.B : 65535), kResolveThreads, 0, st>>>(
      p, s0, s1, s);
  if (s.pick != nullptr) stats_kernel<<<blocks_for(p.B * p.M), kThreads, 0, st>>>(p, s);
}

}  // namespace

void launch_assign(const AssignParams& p, const void* scores0, const void* scores1, int dtype, const AssignScratch& s,
                   cudaStream_t stream) {
  if (p.B * p.N == 0 || p.M == 0) return;
  switch (dtype) {
    case 0: launch_typed<float>(p, scores0, scores1, s, stream); break;
    case 1: launch_typed<__half>(p, scores0, scores1, s, stream); break;
    case 2: launch_typed<__nv_bfloat16>(p, scores0, scores1, s, stream); break;
    default: launch_typed<double>(p, scores0, scores1, s, stream); break;
  }
}

}  // namespace dualhead
