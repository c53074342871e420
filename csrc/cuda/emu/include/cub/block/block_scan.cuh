// cub::BlockScan for the CPU execution layer: the subset dualhead uses (ExclusiveSum with the
// block aggregate), with CUB's contract made strict. One barrier between writing the inputs and
// reading them, none after: like CUB, the caller must __syncthreads() before it reuses the
// TempStorage, and a kernel that does not shows up as a race under ThreadSanitizer.
#pragma once

namespace cub {

template <typename T, int BLOCK_DIM_X>
class BlockScan {
 public:
  struct TempStorage {
    T in[BLOCK_DIM_X];
  };

  explicit BlockScan(TempStorage& storage) : s_(storage) {
    ::dh_emu::require_block_dim_x(BLOCK_DIM_X, "cub::BlockScan");
  }

  void ExclusiveSum(T input, T& output, T& block_aggregate) {
    const unsigned t = threadIdx.x;
    s_.in[t] = input;
    __syncthreads();
    T before{}, total{};
    for (int i = 0; i < BLOCK_DIM_X; ++i) {
      if (static_cast<unsigned>(i) < t) before += s_.in[i];
      total += s_.in[i];
    }
    output = before;
    block_aggregate = total;
  }

 private:
  TempStorage& s_;
};

}  // namespace cub
