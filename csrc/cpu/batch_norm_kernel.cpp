// CPU backend of dualhead::batch_norm_train: aten's native_batch_norm (training, float32) to the
// bit, statistics pass several channels at a time.
//
// What "to the bit" takes, from aten (batch_norm_kernel.cpp / Normalization.cpp, torch 2.10-2.14):
//   mean    = float(sum_double(x) / N), the sum in (n, h, w) order;
//   var_sum = float(sum_double(float((x - mean) * (x - mean)))), same order;
//   invstd  = float(1 / sqrt(double(var_sum / float(N)) + eps));
//   running_mean = m * mean + (1 - m) * running_mean            (float, m = float(momentum));
//   running_var  = double(m) * double(var_sum / float(N - 1)) + double((1 - m) * running_var);
//   out = fma(x, alpha, beta), alpha = invstd * weight, beta = fma(-mean, alpha, bias) (aten's
//   vectorised AVX2/AVX-512 kernels are compiled with FMA contraction).
// The statistics keep aten's order of additions per channel: each channel has its own double
// accumulator, fed in (n, h, w) order; only several channels advance together. For a
// channels-last input the order is the same (n, h, w), so the statistics equal the NCHW ones
// (aten's own channels-last kernel accumulates in float instead).
// dualhead.nn.batchnorm checks the result against aten once per process before using it.
#include <algorithm>
#include <cmath>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#endif

#include "../host.h"

namespace dualhead {
namespace {

constexpr int64_t kLanes = 8;  // channels whose chains run together (independent dependency chains)

// Whether t's dims, in the order `order` (outermost first), are laid out densely; a dim of size 1
// may have any stride (as in torch's is_contiguous).
bool dense_in_order(const Tensor& t, const int (&order)[4]) {
  int64_t expect = 1;
  for (int k = 3; k >= 0; --k) {
    const int d = order[k];
    if (t.size(d) != 1 && t.stride(d) != expect) return false;
    expect *= t.size(d);
  }
  return true;
}

bool is_channels_last(const Tensor& t) { return dense_in_order(t, {0, 2, 3, 1}); }

bool is_nchw(const Tensor& t) { return dense_in_order(t, {0, 1, 2, 3}); }

void check_vec(const Tensor& t, const char* name, int64_t C) {
  DH_CHECK(t.is_cpu() && t.scalar_type() == ScalarType::Float && t.dim() == 1 && t.size(0) == C &&
               t.stride(0) == 1,
           "batch_norm_train: ", name, " must be a contiguous float32 CPU vector of ", C, " channels, got ",
           dtype(t), " ", shape(t), " on ", device_str(t));
}

// Sums of channels [c0, c0 + NC) in aten's order; x(n, c, i) = base[n * sn + c * sc + i * si]. NC is
// a compile-time count so the NC accumulators live in registers (independent chains in flight).
template <int NC, typename F>
void channel_sums(const float* base, int64_t B, int64_t HW, int64_t sn, int64_t sc, int64_t si, int64_t c0,
                  double* acc_out, F term) {
  double acc[NC];
  for (int j = 0; j < NC; ++j) acc[j] = 0.0;
  for (int64_t n = 0; n < B; ++n) {
    const float* p = base + n * sn + c0 * sc;
    for (int64_t i = 0; i < HW; ++i) {
      const float* q = p + i * si;
#pragma GCC unroll 8
      for (int j = 0; j < NC; ++j) acc[j] += term(q[j * sc], j);
    }
  }
  for (int j = 0; j < NC; ++j) acc_out[j] = acc[j];
}

#if defined(__GNUC__) && defined(__x86_64__)
// The same per-channel sums for a block of 8 channels with AVX2: lane j of two 4-double
// accumulators is channel j's chain, fed in the scalar loop's order (only the lanes run
// together), so the bits are the scalar loop's. mean == nullptr: sums of x; else sums of
// float((x - mean) * (x - mean)).
__attribute__((target("avx2"))) inline void add8(__m256d& lo, __m256d& hi, __m128 a, __m128 b, bool centre,
                                                 __m128 m_lo, __m128 m_hi) {  // channels 0-3, 4-7 of one pixel
  if (centre) {
    a = _mm_sub_ps(a, m_lo);
    a = _mm_mul_ps(a, a);
    b = _mm_sub_ps(b, m_hi);
    b = _mm_mul_ps(b, b);
  }
  lo = _mm256_add_pd(lo, _mm256_cvtps_pd(a));
  hi = _mm256_add_pd(hi, _mm256_cvtps_pd(b));
}

__attribute__((target("avx2"))) void sums8_avx2(const float* base, int64_t B, int64_t HW, int64_t sn, int64_t sc,
                                                int64_t si, const float* mean, double* out) {
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  const bool c = mean != nullptr;
  const __m128 m_lo = c ? _mm_loadu_ps(mean) : _mm_setzero_ps(), m_hi = c ? _mm_loadu_ps(mean + 4) : _mm_setzero_ps();
#define DH_ADD8(a, b) add8(lo, hi, a, b, c, m_lo, m_hi)
  for (int64_t n = 0; n < B; ++n) {
    const float* p = base + n * sn;
    if (sc == 1) {  // channels last: the 8 channels of a pixel are adjacent
      for (int64_t i = 0; i < HW; ++i) DH_ADD8(_mm_loadu_ps(p + i * si), _mm_loadu_ps(p + i * si + 4));
      continue;
    }
    int64_t i = 0;  // NCHW (si == 1): 4 pixels of each channel, transposed to 4 pixels' channel vectors
    for (; i + 4 <= HW; i += 4) {
      __m128 r0 = _mm_loadu_ps(p + i), r1 = _mm_loadu_ps(p + sc + i), r2 = _mm_loadu_ps(p + 2 * sc + i),
             r3 = _mm_loadu_ps(p + 3 * sc + i);
      __m128 r4 = _mm_loadu_ps(p + 4 * sc + i), r5 = _mm_loadu_ps(p + 5 * sc + i), r6 = _mm_loadu_ps(p + 6 * sc + i),
             r7 = _mm_loadu_ps(p + 7 * sc + i);
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
      _MM_TRANSPOSE4_PS(r4, r5, r6, r7);
      DH_ADD8(r0, r4);
      DH_ADD8(r1, r5);
      DH_ADD8(r2, r6);
      DH_ADD8(r3, r7);
    }
    for (; i < HW; ++i)
      DH_ADD8(_mm_setr_ps(p[i], p[sc + i], p[2 * sc + i], p[3 * sc + i]),
          _mm_setr_ps(p[4 * sc + i], p[5 * sc + i], p[6 * sc + i], p[7 * sc + i]));
  }
#undef DH_ADD8
  _mm256_storeu_pd(out, lo);
  _mm256_storeu_pd(out + 4, hi);
}
bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}
#else
void sums8_avx2(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, const float*, double*) {}
bool has_avx2() { return false; }
#endif

template <typename F>
void channel_sums_n(int64_t nc, const float* base, int64_t B, int64_t HW, int64_t sn, int64_t sc, int64_t si,
                    int64_t c0, double* acc, F term) {
  switch (nc) {  // the last block of a channel count that is not a multiple of kLanes
    case 8: return channel_sums<8>(base, B, HW, sn, sc, si, c0, acc, term);
    case 7: return channel_sums<7>(base, B, HW, sn, sc, si, c0, acc, term);
    case 6: return channel_sums<6>(base, B, HW, sn, sc, si, c0, acc, term);
    case 5: return channel_sums<5>(base, B, HW, sn, sc, si, c0, acc, term);
    case 4: return channel_sums<4>(base, B, HW, sn, sc, si, c0, acc, term);
    case 3: return channel_sums<3>(base, B, HW, sn, sc, si, c0, acc, term);
    case 2: return channel_sums<2>(base, B, HW, sn, sc, si, c0, acc, term);
    default: return channel_sums<1>(base, B, HW, sn, sc, si, c0, acc, term);
  }
}

// y[i] = fma(x[i], a, b): one rounding, as aten's FMA-contracted kernels. Where the CPU has FMA the
// loop is compiled for it (vectorised); elsewhere std::fma gives the same bits, slowly (and aten
// itself does not contract there: the once-per-process check in dualhead.nn.batchnorm then
// finds a mismatch and keeps aten's batch norm).
#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target("avx2,fma"))) void fma_rows_avx2(const float* x, float* y, int64_t n, float a, float b) {
  for (int64_t i = 0; i < n; ++i) y[i] = __builtin_fmaf(x[i], a, b);
}
__attribute__((target("avx2,fma"))) void fma_channels_avx2(const float* x, float* y, int64_t C, const float* a,
                                                           const float* b) {
  for (int64_t c = 0; c < C; ++c) y[c] = __builtin_fmaf(x[c], a[c], b[c]);
}
bool has_fma() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}
#else
void fma_rows_avx2(const float*, float*, int64_t, float, float) {}
void fma_channels_avx2(const float*, float*, int64_t, const float*, const float*) {}
bool has_fma() { return false; }
#endif

void fma_rows(const float* x, float* y, int64_t n, float a, float b) {
  if (has_fma()) return fma_rows_avx2(x, y, n, a, b);
  for (int64_t i = 0; i < n; ++i) y[i] = std::fma(x[i], a, b);
}

void fma_channels(const float* x, float* y, int64_t C, const float* a, const float* b) {
  if (has_fma()) return fma_channels_avx2(x, y, C, a, b);
  for (int64_t c = 0; c < C; ++c) y[c] = std::fma(x[c], a[c], b[c]);
}

void batch_norm_train_cpu(Tensor input, Tensor weight, Tensor bias, Tensor running_mean, Tensor running_var,
                          Tensor out, Tensor save_mean, Tensor save_invstd, double momentum, double eps) {
  DH_CHECK(input.is_cpu() && input.scalar_type() == ScalarType::Float && input.dim() == 4,
           "batch_norm_train: input must be a 4-d float32 CPU tensor, got ", dtype(input), " ", shape(input), " on ",
           device_str(input));
  const int64_t B = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3), HW = H * W;
  const bool cl = is_channels_last(input) && !is_nchw(input);
  DH_CHECK(cl || is_nchw(input), "batch_norm_train: input must be NCHW-contiguous or channels-last");
  DH_CHECK(B * HW > 1, "batch_norm_train: need more than one value per channel, got input ", shape(input));
  for (auto [t, name] : {std::pair{&weight, "weight"}, {&bias, "bias"}, {&running_mean, "running_mean"},
                         {&running_var, "running_var"}, {&save_mean, "save_mean"}, {&save_invstd, "save_invstd"}})
    check_vec(*t, name, C);
  DH_CHECK(out.is_cpu() && out.scalar_type() == ScalarType::Float && out.dim() == 4 && out.size(0) == B &&
               out.size(1) == C && out.size(2) == H && out.size(3) == W && (cl ? is_channels_last(out) : is_nchw(out)),
           "batch_norm_train: out must have input's shape, dtype and layout, got ", shape(out));

  const int64_t N = B * HW;
  const float* x = ptr<float>(input);
  float* y = ptr<float>(out);
  const float *w = ptr<float>(weight), *b = ptr<float>(bias);
  float *rm = ptr<float>(running_mean), *rv = ptr<float>(running_var);
  float *sm = ptr<float>(save_mean), *si = ptr<float>(save_invstd);
  const int64_t sn = C * HW, sc = cl ? 1 : HW, sp = cl ? C : 1;  // from the layout: a size-1 dim's stride is free
  const float m = static_cast<float>(momentum);

  // Statistics and running averages, a block of kLanes channels per task.
  const int64_t blocks = (C + kLanes - 1) / kLanes;
  torch::stable::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t c0 = blk * kLanes, nc = std::min(kLanes, C - c0);
      double acc[kLanes];
      float mean[kLanes] = {};
      const bool vec = nc == kLanes && has_avx2();
      if (vec) {
        sums8_avx2(x + c0 * sc, B, HW, sn, sc, sp, nullptr, acc);
      } else {
        channel_sums_n(nc, x, B, HW, sn, sc, sp, c0, acc, [](float v, int) { return static_cast<double>(v); });
      }
      for (int64_t j = 0; j < nc; ++j) mean[j] = static_cast<float>(acc[j] / N);
      if (vec) {
        sums8_avx2(x + c0 * sc, B, HW, sn, sc, sp, mean, acc);
      } else {
        channel_sums_n(nc, x, B, HW, sn, sc, sp, c0, acc, [&mean](float v, int j) {
          const float d = v - mean[j];
          return static_cast<double>(d * d);
        });
      }
      for (int64_t j = 0; j < nc; ++j) {
        const int64_t c = c0 + j;
        const float var_sum = static_cast<float>(acc[j]);
        const double var = static_cast<double>(var_sum / static_cast<float>(N));
        sm[c] = mean[j];
        si[c] = (var != 0.0 || eps != 0.0) ? static_cast<float>(1.0 / std::sqrt(var + eps)) : 0.f;
        rm[c] = m * mean[j] + (1.f - m) * rm[c];
        const double unbiased = static_cast<double>(var_sum / static_cast<float>(N - 1));
        rv[c] = static_cast<float>(static_cast<double>(m) * unbiased + static_cast<double>((1.f - m) * rv[c]));
      }
    }
  });

  // out = x * alpha + beta per channel, one fused multiply-add as aten's vectorised kernel.
  std::vector<float> alpha(C), beta(C);
  for (int64_t c = 0; c < C; ++c) {
    alpha[c] = si[c] * w[c];
    beta[c] = std::fma(-sm[c], alpha[c], b[c]);
  }
  const float *al = alpha.data(), *be = beta.data();
  if (cl) {
    torch::stable::parallel_for(0, N, 256, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) fma_channels(x + r * C, y + r * C, C, al, be);
    });
  } else {
    torch::stable::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t c = p % C;
        fma_rows(x + p * HW, y + p * HW, HW, al[c], be[c]);
      }
    });
  }
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(dualhead, CPU, m) { m.impl("batch_norm_train", TORCH_BOX(&batch_norm_train_cpu)); }

}  // namespace dualhead
