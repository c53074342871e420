// box_iou — pairwise overlap matrix of two box sets, the IoU family of ultralytics' bbox_iou.
#include "library.h"

STABLE_TORCH_LIBRARY_FRAGMENT(DH_LIB, m) {
  // boxes1 (N, 4) and boxes2 (M, 4) xyxy, any float dtype; kind 0 IoU, 1 GIoU, 2 DIoU, 3 CIoU.
  // Returns (N, M) fp32: out[i, j] = iou(boxes1[i], boxes2[j]) with eps = 1e-7.
  m.def("box_iou(Tensor boxes1, Tensor boxes2, int kind) -> Tensor");
}
