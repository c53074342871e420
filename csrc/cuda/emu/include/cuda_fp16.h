// __half for the CPU execution layer: the storage type of fp16 tensors and the exact widening
// to float that the kernels use (__half2float). Shadows the toolkit's header in that build.
#pragma once

#include <cstdint>
#include <cstring>

struct __half {
  uint16_t bits;
};

// IEEE binary16 -> binary32, exact for every value (subnormals, infinities, NaN payloads).
inline float __half2float(__half h) {
  const uint32_t sign = static_cast<uint32_t>(h.bits & 0x8000u) << 16;
  uint32_t exp = (h.bits >> 10) & 0x1fu, man = h.bits & 0x3ffu, out;
  if (exp == 0x1fu) {
    out = sign | 0x7f800000u | (man << 13);
  } else if (exp != 0) {
    out = sign | ((exp + 112u) << 23) | (man << 13);
  } else if (man == 0) {
    out = sign;
  } else {  // subnormal: normalise
    exp = 113;
    while (!(man & 0x400u)) {
      man <<= 1;
      --exp;
    }
    out = sign | (exp << 23) | ((man & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &out, 4);
  return f;
}
