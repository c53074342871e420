// CUDA kernels of dualhead::assign: the stages of csrc/assign_core.h, one thread per unit of
// work (a ground truth; one head of one image; one image's statistics), except that a ground
// truth with more than kSplitCells candidate cells is walked by a whole warp (its cells dealt
// round-robin to the lanes, partial lists merged by lane 0), so one huge box cannot serialise
// the launch. The partition and merge are assign_core.h functions the CPU tests also run
// (DUALHEAD_CPU_SPLIT_CELLS). No torch or c10 headers; the host code checks the launches.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../assign_core.h"
#include "launchers.h"

namespace dualhead {
namespace {

constexpr int kThreads = 128;
constexpr int64_t kSplitCells = 128;  // rows above this many cells go to the warp kernel
constexpr int kWarpsPerBlock = 2;     // shared memory: 2 x 32 lanes x sizeof(LaneLists) ~ 29 KB

inline unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 65535 ? (b > 0 ? b : 1) : 65535);  // grid-stride loops cover the rest
}

template <typename S>
__global__ void gt_rows_kernel(AssignParams p, const S* s0, const S* s1, AssignScratch s) {
  const S* sc[2] = {s0, s1};
  for (int64_t row = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; row < p.B * p.M;
       row += int64_t(gridDim.x) * blockDim.x) {
    if (!p.mask[row]) continue;
    float* vals = s.vals + row * 2 * s.kmax;
    int64_t* idxs = s.idxs + row * 2 * s.kmax;
    GtRow r = gt_row_begin(p, row);
    if (split_row(p, r.region, kSplitCells)) continue;  // gt_rows_split_kernel's
    for_each_candidate(p, r.region, [&](int64_t a) { gt_row_visit(p, sc, r, vals, idxs, s.kmax, a); });
    gt_row_end(p, sc, r, vals, idxs, s.kmax);
  }
}

// One warp per large row (grid-stride over rows; every lane takes the same rows, so the
// branches below are warp-uniform).
template <typename S>
__global__ void gt_rows_split_kernel(AssignParams p, const S* s0, const S* s1, AssignScratch s) {
  __shared__ LaneLists shared[kWarpsPerBlock][kLanes];
  const S* sc[2] = {s0, s1};
  const int lane = threadIdx.x % kLanes, warp = threadIdx.x / kLanes;
  const int64_t warps = int64_t(gridDim.x) * kWarpsPerBlock;
  for (int64_t row = blockIdx.x * int64_t(kWarpsPerBlock) + warp; row < p.B * p.M; row += warps) {
    if (!p.mask[row]) continue;
    GtRow r = gt_row_begin(p, row);
    if (!split_row(p, r.region, kSplitCells)) continue;
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

template <typename S>
__global__ void resolve_kernel(AssignParams p, const S* s0, const S* s1, AssignScratch s) {
  const S* sc[2] = {s0, s1};
  for (int64_t hb = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; hb < p.H * p.B;
       hb += int64_t(gridDim.x) * blockDim.x) {
    resolve_image(p, sc, static_cast<int>(hb / p.B), hb % p.B, s.mf + hb * p.N, s.of + hb * p.N, s.ga + hb * p.N,
                  s.mg + hb * p.M, s.og + hb * p.M, s.lv + hb * p.M * s.k2, s.li + hb * p.M * s.k2, s.ll + hb * p.M);
  }
}

__global__ void stats_kernel(AssignParams p, AssignScratch s) {
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < p.B; b += int64_t(gridDim.x) * blockDim.x)
    stats_image(p, b, s.tpick + b * p.M, s.omega + b * p.M, s.pick, s.rank, s.gap);
}

template <typename S>
void launch_typed(const AssignParams& p, const void* v0, const void* v1, const AssignScratch& s, cudaStream_t st) {
  const S* s0 = static_cast<const S*>(v0);
  const S* s1 = static_cast<const S*>(v1);
  gt_rows_kernel<S><<<blocks_for(p.B * p.M), kThreads, 0, st>>>(p, s0, s1, s);
  const int64_t split_blocks = (p.B * p.M + kWarpsPerBlock - 1) / kWarpsPerBlock;
  gt_rows_split_kernel<S><<<static_cast<unsigned>(split_blocks < 65535 ? split_blocks : 65535),
                            kWarpsPerBlock * kLanes, 0, st>>>(p, s0, s1, s);
  resolve_kernel<S><<<blocks_for(p.H * p.B), kThreads, 0, st>>>(p, s0, s1, s);
  if (s.pick != nullptr) stats_kernel<<<blocks_for(p.B), kThreads, 0, st>>>(p, s);
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
