// launchers.h — the plain interface between host code (.cpp, with torch) and the CUDA
// translation units (.cu, without torch headers: they compile fast and never break on torch's
// host-only headers; STYLE.md "CUDA files stay light"). Host code checks tensors and fills
// these structs; the .cu files launch on them (empty-input early return, bounded grid, current
// stream) and the host code checks the launch (C10_CUDA_KERNEL_LAUNCH_CHECK) right after.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace dualhead {

struct BoxIouParams {
  const float* boxes1;  // (n, 4)
  const float* boxes2;  // (m, 4)
  float* out;           // (n, m)
  int64_t n, m;
  int kind;
};
void launch_box_iou(const BoxIouParams& p, cudaStream_t stream);

}  // namespace dualhead

namespace dualhead {

struct AssignParams;

// Scratch of the CUDA assign kernels (global memory, sized by the host code).
struct AssignScratch {
  float* vals;         // (B*M, 2*kmax) top-k metrics per ground truth and head
  int64_t* idxs;       // (B*M, 2*kmax) their anchors
  int64_t kmax;
  int64_t* split_rows; // (B*M) rows queued for the warp kernel
  int* n_split;        // queue length, zeroed by the host
  int64_t split_cells; // rows with more candidate cells than this go to the warp kernel
  float* mf;           // (H*B, N) final metric per anchor
  float* of;           // (H*B, N) final overlap
  int64_t* ga;         // (H*B, N) final ground truth (-1: background)
  int* count;          // (H*B, M) anchors per ground truth
  int* cursor;         // (H*B, M)
  float* mg;           // (H*B, M) per ground truth max metric
  float* og;           // (H*B, M) per ground truth max overlap
  float* lv;           // (H*B, M*k2) topk2 lists
  int64_t* li;         // (H*B, M*k2)
  int64_t k2;
  int64_t* pick;       // (B, M) outputs of the statistics (null: none)
  int64_t* rank;
  float* gap;
};

// dtype: 0 fp32, 1 fp16, 2 bf16, 3 fp64 (the scores' element type).
void launch_assign(const AssignParams& p, const void* scores0, const void* scores1, int dtype, const AssignScratch& s,
                   cudaStream_t stream);

}  // namespace dualhead
