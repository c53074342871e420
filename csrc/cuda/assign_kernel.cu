// CUDA kernels of dualhead::assign: the stages of csrc/assign_core.h, parallel over candidates
// and anchors rather than over ground truths. Before them, the call's anchor grid is recognised
// on the device (anchor_grid_kernel.cu) and check_kernel runs the input value checks.
//   check_kernel      a thread per ground truth and anchor: value checks; a bad row is dropped
//                     and the first error recorded for the host (no sync)
//   gt_tiles_kernel   a warp per ground truth, one candidate cell per lane: prior + IoU +
//                     metric of both heads, then the tile merged into the top-k lists by rank
//                     (shared memory), conflict keys and claims; the tile phases are
//                     assign_core.h functions the CPU tests run lane by lane (DUALHEAD_CPU_TILES)
//   gt_big_kernel     a block of 16 warps per ground truth of more than 256 cells (queued by
//                     gt_tiles_kernel): tiles dealt to the warps, their lists merged pairwise
//   gt_rows_kernel    a thread per ground truth: only for calls the tiles cannot take (a topk
//                     above kTileK = 32)
//   anchors_kernel    a thread per (head, image, anchor): background anchors written at once,
//                     claimed ones resolved (conflicts) and queued for their image
//   image_kernel      a block per (head, image), over its claimed anchors and ground truths
//                     only: member offsets (block scan), member lists, topk2 and maxima, targets
//   stats_kernel      a thread per ground truth (dual calls with statistics)
// No torch or c10 headers; the host code checks the launches.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cub/block/block_scan.cuh>

#include "../assign_core.h"
#include "launch.h"
#include "assign_launch.h"

namespace dualhead {
namespace {

constexpr int kThreads = 128;  // thread-per-item kernels
constexpr int kTileWarps = 4;  // warps (rows in flight) per gt_tiles block: 4 x 2.3 KB shared memory
constexpr int kImageThreads = 256;
constexpr int64_t kMaxBigBlocks = 1024;  // gt_big_kernel: blocks striding over the queued large rows

// The value checks of assign_core.h on every real ground truth and anchor. A rejected row is
// dropped from mask_ok, so the kernels after never index pd_scores with its label; the first
// error is recorded for the host (DeviceErrors: claim, details, fence, publish).
__device__ void report(DeviceErrors* e, int code, int64_t index, int64_t label, const float* v, int nv, int64_t C,
                       int64_t M) {
  if (atomicCAS_system(&e->code, 0, -1) != 0) return;  // an earlier error stays
  e->index = index;
  e->label = label;
  e->C = C;
  e->M = M;
  for (int i = 0; i < 4; ++i) e->v[i] = i < nv ? v[i] : 0.f;
  __threadfence_system();             // the details are visible to the host before the code
  atomicExch_system(&e->code, code);  // host-mapped memory: system scope
}

__global__ void check_kernel(const __grid_constant__ AssignParams p, const bool* mask_in, AssignScratch s) {
  const int64_t rows = p.B * p.M, n = rows > p.N ? rows : p.N;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if (i < rows) {
      bool ok = mask_in[i];
      if (ok) {
        const int code = gt_value_error(p.labels[i], p.gt + 4 * i, p.C);
        if (code != kValueOk) {
          report(s.errors, code, i, p.labels[i], p.gt + 4 * i, 4, p.C, p.M);
          ok = false;
        }
      }
      s.mask_ok[i] = ok;
    }
    if (i < p.N && anchor_value_error(p.anc + 2 * i) != kValueOk)
      report(s.errors, kAnchorNotFinite, i, 0, p.anc + 2 * i, 2, 0, 0);
  }
}

// The merge phases of the staged tile into every list of T, __syncwarp between them (the CPU's
// merge_staged runs the same lane functions in loops). Control flow is warp-uniform: every lane
// reads the same shared lists and lengths.
__device__ void warp_merge_staged(const AssignParams& p, const GtRow& r, TileLists& T, int lane) {
  for (int x = 0; x < kLists; ++x) {
    const int cap = list_cap(p, r, x);
    if (!tile_wants(T, x, cap)) continue;
    tile_merge(T, x, cap, lane);
    const int n = tile_merged_len(T, x, cap);
    __syncwarp();
    tile_commit(T, x, n, lane);
    if (lane == 0) T.len[x] = n;
    __syncwarp();
  }
}

// Warp w's share of a row: tiles first, first + step, ... into T.
template <typename S>
__device__ void warp_tiles(const AssignParams& p, const S* const* sc, const GtRow& r, const RowCells& rc, TileLists& T,
                           int64_t first, int64_t step, int lane) {
  tile_reset(T, lane);
  __syncwarp();
  for (int64_t t = first; t * kTile < rc.total; t += step) {
    tile_stage(p, sc, r, rc, T, t, lane);
    __syncwarp();
    warp_merge_staged(p, r, T, lane);
    __syncwarp();  // a list whose merge was skipped read the staged tile: done before the next stage
  }
}

// A warp per row (grid-stride over rows); rows of more than kBigRowCells cells are queued for
// gt_big_kernel instead.
template <typename S>
__global__ void __launch_bounds__(kTileWarps* kTile)
    gt_tiles_kernel(const __grid_constant__ AssignParams p, const S* s0, const S* s1, AssignScratch s) {
  __shared__ TileLists lists[kTileWarps];
  const S* sc[2] = {s0, s1};
  const int lane = threadIdx.x % kTile, warp = threadIdx.x / kTile;
  TileLists& T = lists[warp];
  const int64_t warps = int64_t(gridDim.x) * kTileWarps;
  for (int64_t row = blockIdx.x * int64_t(kTileWarps) + warp; row < p.B * p.M; row += warps) {
    if (!p.mask[row]) continue;
    const GtRow r = gt_row_begin(p, row);
    const RowCells rc = row_cells(p, r.region);
    if (rc.total > kBigRowCells) {
      if (lane == 0) s.big_rows[atomicAdd(s.n_big, 1)] = row;
      continue;
    }
    warp_tiles(p, sc, r, rc, T, 0, 1, lane);
    tile_finish(p, sc, r, T, lane);
    __syncwarp();  // every lane is done with T before the next row resets it
  }
}

// A block of kBigWarps warps per queued row: tiles dealt round-robin to the warps, their lists
// merged pairwise (lists_stage + the merge phases), warp 0 finishes the row.
template <typename S>
__global__ void __launch_bounds__(kBigWarps* kTile)
    gt_big_kernel(const __grid_constant__ AssignParams p, const S* s0, const S* s1, AssignScratch s) {
  __shared__ TileLists lists[kBigWarps];
  const S* sc[2] = {s0, s1};
  const int lane = threadIdx.x % kTile, warp = threadIdx.x / kTile;
  const int queued = *s.n_big;
  for (int q = blockIdx.x; q < queued; q += gridDim.x) {
    const GtRow r = gt_row_begin(p, s.big_rows[q]);
    const RowCells rc = row_cells(p, r.region);
    warp_tiles(p, sc, r, rc, lists[warp], warp, kBigWarps, lane);
    __syncthreads();
    for (int d = 1; d < kBigWarps; d *= 2) {
      if (warp % (2 * d) == 0 && warp + d < kBigWarps) {
        lists_stage(lists[warp], lists[warp + d], lane);
        __syncwarp();
        warp_merge_staged(p, r, lists[warp], lane);
      }
      __syncthreads();
    }
    if (warp == 0) tile_finish(p, sc, r, lists[0], lane);
    __syncthreads();  // the lists are reused by the next queued row
  }
}

// Fallback: a thread per row, the sequential pass of assign_core.h (the CPU's default path).
template <typename S>
__global__ void gt_rows_kernel(const __grid_constant__ AssignParams p, const S* s0, const S* s1, AssignScratch s) {
  const S* sc[2] = {s0, s1};
  for (int64_t row = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; row < p.B * p.M;
       row += int64_t(gridDim.x) * blockDim.x) {
    if (!p.mask[row]) continue;
    float* vals = s.vals + row * 2 * s.kmax;
    int64_t* idxs = s.idxs + row * 2 * s.kmax;
    GtRow r = gt_row_begin(p, row);
    for_each_candidate(p, r.region, [&](int64_t a) { gt_row_visit(p, sc, r, vals, idxs, s.kmax, a); });
    gt_row_end(p, sc, r, vals, idxs, s.kmax);
  }
}

__device__ ImageScratch image_scratch(const AssignParams& p, const AssignScratch& s, int64_t hb) {
  const int h = static_cast<int>(hb / p.B);
  const int64_t b = hb % p.B;
  return ImageScratch{s.anchor_metric + hb * p.N,
                      s.anchor_overlap + hb * p.N,
                      s.anchor_gt + hb * p.N,
                      s.count + hb * p.M,
                      s.cursor + hb * p.M,
                      s.gt_max_metric + hb * p.M,
                      s.gt_max_overlap + hb * p.M,
                      s.topk2_vals + hb * p.M * s.k2,
                      s.topk2_idxs + hb * p.M * s.k2,
                      s.k2,
                      image_members(p, h, b),
                      image_member_start(p, h, b)};
}

// A thread per (head, image, anchor): what the CPU's pass_anchors does before its loops (bulk
// background fill, the list of claimed anchors), then resolve_anchor for the claimed ones.
template <typename S>
__global__ void anchors_kernel(const __grid_constant__ AssignParams p, const S* s0, const S* s1, AssignScratch s) {
  const S* sc[2] = {s0, s1};
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < p.H * p.B * p.N;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t hb = i / p.N, a = i % p.N;
    if (p.claims[i] == 0) {  // what write_anchor writes for background
      p.fg[i] = false;
      p.gt_idx[i] = 0;
      p.scores[i] = 0.f;
      continue;
    }
    const ImageScratch is = image_scratch(p, s, hb);
    resolve_anchor(p, sc, static_cast<int>(hb / p.B), hb % p.B, a, is);
    s.claimed[hb * p.N + atomicAdd(s.n_claimed + hb, 1)] = static_cast<int>(a);
  }
}

// member_offsets of assign_core.h as a block scan (tiles of blockDim ground truths).
__device__ void block_member_offsets(const AssignParams& p, const ImageScratch& s) {
  using Scan = cub::BlockScan<int, kImageThreads>;
  __shared__ typename Scan::TempStorage tmp;
  __shared__ int carry;
  if (threadIdx.x == 0) carry = 0;
  __syncthreads();
  for (int64_t base = 0; base < p.M; base += kImageThreads) {
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

// A block per (head, image): phases 2-5 of assign_core.h over the image's claimed anchors (a
// few per ground truth) and its ground truths, a barrier between phases.
__global__ void __launch_bounds__(kImageThreads) image_kernel(const __grid_constant__ AssignParams p, AssignScratch s) {
  const int t = threadIdx.x, T = blockDim.x;
  for (int64_t hb = blockIdx.x; hb < p.H * p.B; hb += gridDim.x) {
    const int h = static_cast<int>(hb / p.B);
    const int64_t b = hb % p.B;
    const ImageScratch is = image_scratch(p, s, hb);
    const int* claimed = s.claimed + hb * p.N;
    const int n = s.n_claimed[hb];
    block_member_offsets(p, is);
    __syncthreads();
    for (int i = t; i < n; i += T) place_member(claimed[i], is);
    __syncthreads();
    for (int64_t g = t; g < p.M; g += T) finish_gt(p, h, g, is);
    __syncthreads();
    for (int i = t; i < n; i += T) write_anchor(p, h, b, claimed[i], is);
    __syncthreads();  // the shared scan state is reused by the next (head, image)
  }
}

__global__ void stats_kernel(const __grid_constant__ AssignParams p, AssignScratch s) {
  for (int64_t row = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; row < p.B * p.M;
       row += int64_t(gridDim.x) * blockDim.x)
    stats_gt(p, row / p.M, row % p.M, s.pick, s.rank, s.gap);
}

template <typename S>
void launch_typed(const AssignParams& p, const void* v0, const void* v1, const AssignScratch& s, cudaStream_t st) {
  const S* s0 = static_cast<const S*>(v0);
  const S* s1 = static_cast<const S*>(v1);
  if (tile_path(p)) {
    DH_LAUNCH(gt_tiles_kernel<S>, blocks_for(p.B * p.M, kTileWarps), kTileWarps * kTile, 0, st)(p, s0, s1, s);
    // The queue length is known on the device only: enough blocks for every row, most exit at once.
    DH_LAUNCH(gt_big_kernel<S>, static_cast<unsigned>(p.B * p.M < kMaxBigBlocks ? p.B * p.M : kMaxBigBlocks),
              kBigWarps * kTile, 0, st)(p, s0, s1, s);
  } else
    DH_LAUNCH(gt_rows_kernel<S>, blocks_for(p.B * p.M, kThreads), kThreads, 0, st)(p, s0, s1, s);
  DH_LAUNCH(anchors_kernel<S>, blocks_for(p.H * p.B * p.N, kThreads), kThreads, 0, st)(p, s0, s1, s);
  DH_LAUNCH(image_kernel, static_cast<unsigned>(p.H * p.B < 65535 ? p.H * p.B : 65535), kImageThreads, 0, st)(p, s);
  if (s.pick != nullptr) DH_LAUNCH(stats_kernel, blocks_for(p.B * p.M, kThreads), kThreads, 0, st)(p, s);
}

}  // namespace

void launch_value_check(const AssignParams& p, const AssignScratch& s, cudaStream_t stream) {
  const bool* mask_in = p.mask;
  DH_LAUNCH(check_kernel, blocks_for(p.B * p.M > p.N ? p.B * p.M : p.N, kThreads), kThreads, 0, stream)(p, mask_in, s);
}

void launch_assign(const AssignParams& p, const void* scores0, const void* scores1, int dtype, const AssignScratch& s,
                   cudaStream_t stream) {
  if (p.B * p.N == 0 || p.M == 0) return;
  switch (dtype) {
    case 0:
      launch_typed<float>(p, scores0, scores1, s, stream);
      break;
    case 1:
      launch_typed<__half>(p, scores0, scores1, s, stream);
      break;
    case 2:
      launch_typed<__nv_bfloat16>(p, scores0, scores1, s, stream);
      break;
    default:
      launch_typed<double>(p, scores0, scores1, s, stream);
      break;
  }
}

}  // namespace dualhead
