// host.h — what the host code (.cpp) uses of torch: the LibTorch stable ABI only
// (torch/csrc/stable, torch/headeronly), so one binary loads under every torch from the target
// version on (setup.py: TORCH_TARGET_VERSION = 2.10, the first release with the stable ops,
// parallel_for and std::vector / std::string arguments that dualhead needs). No ATen or c10 type
// appears in dualhead's sources (tests/test_build.py checks).
//
// Errors: the stable checks throw std::runtime_error, which Python sees as RuntimeError. A bad
// input *value* (contract §4: ValueError) is thrown with the kValueErrorTag prefix; dualhead.ops
// re-raises those as ValueError without the tag (dualhead/_ext.py: value_errors).
#pragma once

#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/Exception.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace dualhead {

using Tensor = torch::stable::Tensor;
using ScalarType = torch::headeronly::ScalarType;
using Device = torch::stable::Device;
using DeviceType = torch::headeronly::DeviceType;

constexpr const char* kValueErrorTag = "ValueError: ";

// Message pieces, streamed (numbers, strings, shapes below).
inline void str_into(std::ostringstream&) {}
template <typename T, typename... R>
void str_into(std::ostringstream& os, const T& x, const R&... rest) {
  os << x;
  str_into(os, rest...);
}
template <typename... A>
std::string str(const A&... a) {
  std::ostringstream os;
  str_into(os, a...);
  return os.str();
}

// "[2, 8400, 80]", as torch prints sizes.
inline std::string shape(const Tensor& t) {
  std::ostringstream os;
  os << "[";
  for (int64_t d = 0; d < t.dim(); ++d) os << (d ? ", " : "") << t.size(d);
  os << "]";
  return os.str();
}

inline const char* dtype(const Tensor& t) { return torch::headeronly::toString(t.scalar_type()); }

inline bool is_float(ScalarType s) {
  return s == ScalarType::Float || s == ScalarType::Half || s == ScalarType::BFloat16 || s == ScalarType::Double;
}

inline std::string device_str(const Tensor& t) {
  return t.is_cuda() ? str("cuda:", static_cast<int>(t.get_device_index())) : (t.is_cpu() ? "cpu" : "other device");
}

inline bool same_device(const Tensor& a, const Tensor& b) {
  return a.is_cuda() == b.is_cuda() && a.is_cpu() == b.is_cpu() && a.get_device_index() == b.get_device_index();
}

}  // namespace dualhead

// Argument checks: RuntimeError naming the argument and the offending value or shape.
#define DH_CHECK(cond, ...)                                              \
  do {                                                                   \
    if (!(cond)) throw std::runtime_error(::dualhead::str(__VA_ARGS__)); \
  } while (0)

// Input value checks (contract §4): ValueError in Python (dualhead.ops strips the tag).
#define DH_CHECK_VALUE(cond, ...)                                                                    \
  do {                                                                                               \
    if (!(cond)) throw std::runtime_error(::dualhead::str(::dualhead::kValueErrorTag, __VA_ARGS__)); \
  } while (0)

namespace dualhead {

inline Tensor empty(std::vector<int64_t> sizes, ScalarType dtype, const Tensor& like) {
  Tensor t = torch::stable::empty(sizes, dtype, std::nullopt, like.device());
#if defined(DH_CUDA_EMU)
  ::dh_emu::allocated_like(t.data_ptr(), like.data_ptr());  // where `like` is, the new tensor is
#endif
  return t;
}

// t as a contiguous tensor of dtype (no copy when it already is one).
inline Tensor contiguous_as(const Tensor& t, ScalarType dtype) {
  return torch::stable::contiguous(t.scalar_type() == dtype ? t : torch::stable::to(t, dtype));
}

inline Tensor to_cpu(const Tensor& t) { return t.is_cpu() ? t : torch::stable::to(t, Device(DeviceType::CPU)); }

// A tensor's data for a kernel. In the CUDA emulation (csrc/cuda/emu) the CUDA host code's
// tensors are device memory: registered here, poisoned while no kernel runs.
template <typename T>
T* ptr(const Tensor& t) {
#if defined(DH_CUDA_EMU)
  ::dh_emu::device_memory(t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size(), std::make_shared<Tensor>(t));
#endif
  return static_cast<T*>(t.data_ptr());
}

}  // namespace dualhead
