// to_dense_args.h — dualhead::to_dense / to_dense_out argument checks and the functional
// form's allocation, shared by the CPU and CUDA backends.
#pragma once

#include <vector>

#include "host.h"

namespace dualhead {

inline bool same_sizes(const Tensor& a, const Tensor& b, int64_t dims) {
  if (a.dim() < dims || b.dim() < dims) return false;
  for (int64_t d = 0; d < dims; ++d)
    if (a.size(d) != b.size(d)) return false;
  return true;
}

inline void check_to_dense_args(const Tensor& labels, const Tensor& scores, const Tensor& out) {
  DH_CHECK(labels.scalar_type() == ScalarType::Long, "labels must be int64, got ", dtype(labels));
  DH_CHECK(scores.scalar_type() == ScalarType::Float && scores.dim() == labels.dim() &&
               same_sizes(scores, labels, labels.dim()),
           "scores must be fp32 shaped like labels ", shape(labels), ", got ", dtype(scores), " ", shape(scores));
  DH_CHECK(out.scalar_type() == ScalarType::Float && out.is_contiguous() && out.dim() == labels.dim() + 1 &&
               same_sizes(out, labels, labels.dim()) && out.size(out.dim() - 1) >= 1,
           "out must be a contiguous fp32 tensor of shape labels.shape + (C,) with C >= 1, got ", shape(out));
  DH_CHECK(same_device(labels, out) && same_device(scores, out), "labels, scores and out must be on one device");
}

template <typename OutFn>
Tensor to_dense_new(const Tensor& labels, const Tensor& scores, int64_t num_classes, OutFn out_fn) {
  DH_CHECK(num_classes >= 1, "num_classes must be >= 1, got ", num_classes);
  std::vector<int64_t> sizes;
  for (int64_t d = 0; d < labels.dim(); ++d) sizes.push_back(labels.size(d));
  sizes.push_back(num_classes);
  Tensor out = empty(sizes, ScalarType::Float, scores);
  out_fn(labels, scores, out);
  return out;
}

}  // namespace dualhead
