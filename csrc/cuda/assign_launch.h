// assign_launch.h — assign's launch interface: device error records, scratch, launches.
// The plain interface between host code (.cpp, with torch) and the CUDA translation units (.cu,
// without torch headers: they compile fast and never break on torch's host-only headers). Host
// code checks tensors and fills these structs; the .cu file launches on them (empty-input early
// return, bounded grid, current stream) and the host code checks the launch (cuda_host.h:
// launch_check) right after.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace dualhead {

struct AssignParams;
struct AnchorGrid;

// Input value errors found on the device (check_kernel): one record per device in host-mapped
// pinned memory, so kernels write it and the host reads it with no copy and no sync. The first
// error wins: a thread claims the record (code 0 -> -1), writes the details, fences, then
// publishes the code (an InputError of assign_core.h); the host reads code with acquire order
// before the details, reports it at the next assign call on the device and clears it.
struct DeviceErrors {
  int code;       // 0 none, -1 being written, else the error; accessed atomically only
  int64_t index;  // ground-truth row (b * M + g) or anchor
  int64_t label, C, M;
  float v[4];
};
DeviceErrors* device_errors(int device);  // allocated on first use, never freed

// Scratch of the CUDA assign kernels (global memory, sized by the host code).
struct AssignScratch {
  float* vals;    // (B*M, 2*kmax) top-k lists of the thread-per-row fallback (topk > kTileK)
  int64_t* idxs;  // (B*M, 2*kmax)
  int64_t kmax;
  int64_t* big_rows;      // (B*M) rows of more than kBigRowCells cells, queued for gt_big_kernel
  int* n_big;             // their number, zeroed by the host
  float* anchor_metric;   // (H*B, N) final metric per anchor
  float* anchor_overlap;  // (H*B, N) final overlap
  int64_t* anchor_gt;     // (H*B, N) final ground truth (-1: background)
  int* claimed;           // (H*B, N) each image's claimed anchors, in arrival order
  int* n_claimed;         // (H*B) their number, zeroed by the host
  int* count;             // (H*B, M) anchors per ground truth, zeroed by the host
  int* cursor;            // (H*B, M)
  float* gt_max_metric;   // (H*B, M) per ground truth max metric
  float* gt_max_overlap;  // (H*B, M) per ground truth max overlap
  float* topk2_vals;      // (H*B, M*k2) topk2 lists
  int64_t* topk2_idxs;    // (H*B, M*k2)
  int64_t k2;
  bool* mask_ok;     // (B*M) mask_gt without the rows check_kernel rejected (what the kernels read)
  AnchorGrid* grid;  // the call's anchor grid, recognised on the device (launch_anchor_grid)
  DeviceErrors* errors;
  int64_t* pick;  // (B, M) outputs of the statistics (null: none)
  int64_t* rank;
  float* gap;
};

// Value checks on the device (before launch_assign, same stream).
void launch_value_check(const AssignParams& p, const AssignScratch& s, cudaStream_t stream);

// dtype: 0 fp32, 1 fp16, 2 bf16, 3 fp64 (the scores' element type).
void launch_assign(const AssignParams& p, const void* scores0, const void* scores1, int dtype, const AssignScratch& s,
                   cudaStream_t stream);

}  // namespace dualhead
