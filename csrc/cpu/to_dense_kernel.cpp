// CPU backend of dualhead::to_dense / to_dense_out.
#include <algorithm>

#include "../host.h"
#include "../to_dense_args.h"

namespace dualhead {
namespace {

void to_dense_out_cpu(Tensor labels, Tensor scores, Tensor out) {
  check_to_dense_args(labels, scores, out);
  const int64_t C = out.size(out.dim() - 1), n = labels.numel();
  const Tensor l = torch::stable::contiguous(labels), s = torch::stable::contiguous(scores);
  const int64_t* lp = ptr<int64_t>(l);
  const float* sp = ptr<float>(s);
  float* op = ptr<float>(out);
  // One pass: zero the row and write the one score (a label out of range writes nothing).
  torch::stable::parallel_for(0, n, 2048, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float* row = op + i * C;
      std::fill(row, row + C, 0.f);
      if (lp[i] >= 0 && lp[i] < C) row[lp[i]] = sp[i];
    }
  });
}

Tensor to_dense_cpu(Tensor labels, Tensor scores, int64_t num_classes) {
  return to_dense_new(labels, scores, num_classes, to_dense_out_cpu);
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(dualhead, CPU, m) {
  m.impl("to_dense", TORCH_BOX(&to_dense_cpu));
  m.impl("to_dense_out", TORCH_BOX(&to_dense_out_cpu));
}

}  // namespace dualhead
