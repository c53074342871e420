// dualhead_math.h — the per-element math of the assignment, written once.
//
// Every formula here is shared by the CPU loops (csrc/cpu/*.cpp) and the CUDA kernels
// (csrc/cuda/*.cu), so the CPU tests exercise the same code the GPU runs (STYLE.md:
// "Kernel math written once"). No torch types: plain floats, ints and pointers only.
//
// Float evaluation order follows ultralytics 8.4.190 operation by operation (see the
// comments), because the assignment is compared with ultralytics to 1e-5 and a different
// rounding order can flip a top-k pick between two near-equal candidates.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define DH_HD __host__ __device__ __forceinline__
#else
#define DH_HD inline
#endif

namespace dualhead {

// Overlap kinds, in the order of the `iou_type` strings accepted by the Python layer.
enum IouKind : int { kIoU = 0, kGIoU = 1, kDIoU = 2, kCIoU = 3 };

// ultralytics bbox_iou(eps=1e-7); the in-box test and metric normalisation use 1e-9.
constexpr float kIouEps = 1e-7f;
constexpr float kInBoxEps = 1e-9f;
// 4 / pi^2 evaluated in double by Python, then rounded to fp32 by the tensor multiply.
constexpr float kFourOverPiSq = static_cast<float>(4.0 / (3.14159265358979323846 * 3.14159265358979323846));

struct Box {
  float x1, y1, x2, y2;
};

DH_HD Box load_box(const float* p) { return Box{p[0], p[1], p[2], p[3]}; }

DH_HD float dh_max(float a, float b) { return a > b ? a : b; }
DH_HD float dh_min(float a, float b) { return a < b ? a : b; }

DH_HD float dh_atan(float x) {
#if defined(__CUDA_ARCH__)
  return atanf(x);
#else
  return std::atan(x);
#endif
}

// atan(w / h) of a box as CIoU uses it (eps on the height only). A ground truth's value is
// computed once and reused for all its candidates (box_iou_pre).
DH_HD float aspect_atan(const Box& a, float eps = kIouEps) { return dh_atan((a.x2 - a.x1) / ((a.y2 - a.y1) + eps)); }

// bbox_iou(box1=a, box2=b, xywh=False, ...) from ultralytics/utils/metrics.py, operation by
// operation: eps is added to the heights only, to the union and to c2; the CIoU alpha is
// v / (1 - iou + v + eps) (ultralytics 8.4 ordering, not the yolov10 fork's).
// atan_a = aspect_atan(a), atan_b = aspect_atan(b), used by CIoU only: precomputed by the
// callers (a ground truth's once for all its candidates; a predicted box's, on CPU, once per
// anchor from a cache).
DH_HD float box_iou_pre(const Box& a, float atan_a, const Box& b, float atan_b, int kind, float eps = kIouEps) {
  const float w1 = a.x2 - a.x1, h1 = (a.y2 - a.y1) + eps;
  const float w2 = b.x2 - b.x1, h2 = (b.y2 - b.y1) + eps;
  float iw = dh_min(a.x2, b.x2) - dh_max(a.x1, b.x1);
  float ih = dh_min(a.y2, b.y2) - dh_max(a.y1, b.y1);
  iw = iw > 0.f ? iw : 0.f;  // clamp_(0); NaN becomes 0 here, the caller sanitises anyway
  ih = ih > 0.f ? ih : 0.f;
  const float inter = iw * ih;
  const float uni = ((w1 * h1 + w2 * h2) - inter) + eps;
  const float iou = inter / uni;
  if (kind == kIoU) return iou;
  const float cw = dh_max(a.x2, b.x2) - dh_min(a.x1, b.x1);
  const float ch = dh_max(a.y2, b.y2) - dh_min(a.y1, b.y1);
  if (kind == kGIoU) {
    const float c_area = cw * ch + eps;
    return iou - (c_area - uni) / c_area;
  }
  const float c2 = (cw * cw + ch * ch) + eps;
  const float dx = ((b.x1 + b.x2) - a.x1) - a.x2;
  const float dy = ((b.y1 + b.y2) - a.y1) - a.y2;
  const float rho2 = (dx * dx + dy * dy) / 4.f;
  if (kind == kDIoU) return iou - rho2 / c2;
  const float da = atan_b - atan_a;  // atan_b = atan(w2 / h2)
  const float v = kFourOverPiSq * (da * da);
  const float alpha = v / (((1.f - iou) + v) + eps);
  return iou - (rho2 / c2 + v * alpha);
}

DH_HD float box_iou(const Box& a, const Box& b, int kind, float eps = kIouEps) {
  const bool ciou = kind == kCIoU;
  return box_iou_pre(a, ciou ? aspect_atan(a, eps) : 0.f, b, ciou ? aspect_atan(b, eps) : 0.f, kind, eps);
}

// The region a ground truth's candidate anchors must lie in. round_trip (ultralytics 8.4): each
// side shorter than floor_below is widened to floor_to about the box centre, via ultralytics'
// xyxy -> xywh -> xyxy round trip (select_candidates_in_gts), which rounds even boxes that are
// not widened (8.4.128 on: floor_below = floor_to = stride_val; 8.4.0-8.4.127: stride[0] and
// stride[1]). Without it (every other codebase, and ultralytics before 8.4) the box itself.
DH_HD Box candidate_region(const Box& g, float floor_below, float floor_to, bool round_trip) {
  if (!round_trip) return g;
  const float cx = (g.x1 + g.x2) / 2.f, cy = (g.y1 + g.y2) / 2.f;
  float w = g.x2 - g.x1, h = g.y2 - g.y1;
  if (w < floor_below) w = floor_to;
  if (h < floor_below) h = floor_to;
  const float hw = w / 2.f, hh = h / 2.f;
  return Box{cx - hw, cy - hh, cx + hw, cy + hh};
}

// Strictly more than margin px inside all four sides (fp32 differences, as torch computes them):
// 1e-9 in ultralytics, YOLOv9 and mmyolo, 0.01 in mmdetection's TOOD.
DH_HD bool in_region(float ax, float ay, const Box& r, float margin = kInBoxEps) {
  return (ax - r.x1 > margin) && (ay - r.y1 > margin) && (r.x2 - ax > margin) && (r.y2 - ay > margin);
}

// One level of the standard anchor grid (ultralytics make_anchors * stride): anchor
// start + j*w + i sits at ((i + 0.5) * stride, (j + 0.5) * stride), fp32.
struct GridLevel {
  int64_t start, w, h;
  float stride;
};

// Cells [*i0, *i1] of a level whose centres can lie strictly inside [lo, hi]: a superset by up
// to one cell each side (computed in double, clamped before the int conversion so any finite
// box is safe); the caller applies the exact in_region test to each, so the grid path and the
// general scan select identical anchors.
DH_HD void grid_cells(float lo, float hi, float stride, int64_t n, int64_t* i0, int64_t* i1) {
  double a = floor(static_cast<double>(lo) / stride - 0.5);
  double b = ceil(static_cast<double>(hi) / stride - 0.5);
  a = a < 0.0 ? 0.0 : (a > static_cast<double>(n) ? static_cast<double>(n) : a);
  b = b < -1.0 ? -1.0 : (b > static_cast<double>(n - 1) ? static_cast<double>(n - 1) : b);
  *i0 = static_cast<int64_t>(a);
  *i1 = static_cast<int64_t>(b);
}

// x^e with fast paths for the exponents the method uses (alpha 0.5/1, beta 2/6, r = 1).
// torch's pow special-cases 0.5, 1, 2 and 3 the same way; 6 = (x^3)^2 is within 2 ulp of powf.
DH_HD float fast_pow(float x, float e) {
  if (e == 1.f) return x;
  if (e == 0.5f) return sqrtf(x);
  if (e == 2.f) return x * x;
  if (e == 3.f) return x * x * x;
  if (e == 6.f) {
    const float x3 = x * x * x;
    return x3 * x3;
  }
  if (e == 0.f) return 1.f;
  return powf(x, e);
}

// Overlap used by the assigner: max(IoU, 0); a non-finite value (diverging predictions) is 0.
DH_HD float sanitize_overlap(float o) { return (o > 0.f && o <= 3.402823466e38f) ? o : 0.f; }

// m = p^alpha * o^beta (ultralytics get_box_metrics); non-finite or negative results are 0 so a
// diverging run never produces non-finite targets (contract §4).
DH_HD float align_metric(float p, float o, float alpha, float beta) {
  const float m = fast_pow(p, alpha) * fast_pow(o, beta);
  return (m >= 0.f && m <= 3.402823466e38f) ? m : 0.f;
}

// Candidate order for top-k: larger metric first, the smaller anchor index on equal metrics.
DH_HD bool ranks_before(float m1, int64_t a1, float m2, int64_t a2) { return m1 > m2 || (m1 == m2 && a1 < a2); }

// Insert (m, a) into the sorted list (vals, idxs) of length *len holding at most k entries.
// Returns false when it did not make the cut. O(k) per insertion; k is 1..~13 in practice.
DH_HD bool topk_insert(float* vals, int64_t* idxs, int* len, int k, float m, int64_t a) {
  int n = *len;
  if (n == k && !ranks_before(m, a, vals[n - 1], idxs[n - 1])) return false;
  int pos = n < k ? n : k - 1;
  while (pos > 0 && ranks_before(m, a, vals[pos - 1], idxs[pos - 1])) {
    vals[pos] = vals[pos - 1];
    idxs[pos] = idxs[pos - 1];
    --pos;
  }
  vals[pos] = m;
  idxs[pos] = a;
  if (n < k) *len = n + 1;
  return true;
}

// torch.topk over all N anchors of a ground truth whose non-candidates all have metric 0:
// a zero-metric entry (sorted list, anchor a) is inside the top-k only when fewer than k
// anchors rank before it, i.e. n_pos (entries with m > 0) plus the zero-metric anchors with a
// smaller index (a minus the positive-metric entries with a smaller index) is below k.
// Returns how many leading entries of the sorted list survive (zero entries are sorted by
// index, so survivors are a prefix).
template <typename I>
DH_HD int topk_keep_count(const float* vals, const I* idxs, int len, int k) {
  int n_pos = 0;
  while (n_pos < len && vals[n_pos] > 0.f) ++n_pos;
  int keep = n_pos;
  for (int j = n_pos; j < len; ++j) {
    int64_t before = 0;  // positive-metric entries with a smaller anchor index
    for (int i = 0; i < n_pos; ++i) before += idxs[i] < idxs[j];
    if (n_pos + (idxs[j] - before) < k)
      keep = j + 1;
    else
      break;
  }
  return keep;
}

// Packed conflict keys: the high word is the overlap's bit pattern (non-negative floats order
// like their bits), the low word is ~g so the smaller ground-truth index wins equal overlaps.
// max() over keys is order-independent, hence deterministic under atomics.
DH_HD uint64_t pack_overlap_key(float o, int64_t g) {
  union {
    float f;
    uint32_t u;
  } c;
  c.f = o;
  return (static_cast<uint64_t>(c.u) << 32) | static_cast<uint64_t>(0xFFFFFFFFu - static_cast<uint32_t>(g));
}
DH_HD int64_t key_gt(uint64_t key) {
  return static_cast<int64_t>(0xFFFFFFFFu - static_cast<uint32_t>(key & 0xFFFFFFFFu));
}
DH_HD float key_overlap(uint64_t key) {
  union {
    float f;
    uint32_t u;
  } c;
  c.u = static_cast<uint32_t>(key >> 32);
  return c.f;
}

// Depth of the o2m ordering kept per ground truth for the consistency statistics: the rank of
// the o2o pick is exact below it (top-1/5/10 hit rates) and reported as kRankDepth beyond.
constexpr int kRankDepth = 10;

// Target score of an anchor: m * Og / (Mg + eps), multiply first then divide (ultralytics).
DH_HD float target_score(float m, float og, float mg, float eps) { return (m * og) / (mg + eps); }

}  // namespace dualhead
