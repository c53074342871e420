// to_dense — compact targets (label, score per anchor) to ultralytics' dense (..., C) scores.
#include "library.h"

STABLE_TORCH_LIBRARY_FRAGMENT(DH_LIB, m) {
  // Dense (..., C) fp32 target scores: score on class `labels`, 0 elsewhere (ultralytics layout).
  m.def("to_dense(Tensor labels, Tensor scores, int num_classes) -> Tensor");
  // The same into a caller-owned buffer (reused across steps: first touch of fresh pages is
  // what a dense write costs on small machines).
  m.def("to_dense_out(Tensor labels, Tensor scores, Tensor(a!) out) -> ()");
}
