// Helpers shared by the torch-facing *_api.cpp layers (these include torch; device code never does).
#pragma once
#include <cstdlib>
#include <torch/all.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <type_traits>

namespace seer {

// Python spelling of a dtype ("torch.float16"), as seer_attn/checks.py prints it, so that CPU (reference)
// and CUDA error messages read the same.
inline std::string dtype_name(at::ScalarType st) {
  switch (st) {
    case at::kHalf: return "torch.float16";
    case at::kBFloat16: return "torch.bfloat16";
    case at::kFloat: return "torch.float32";
    case at::kDouble: return "torch.float64";
    case at::kBool: return "torch.bool";
    case at::kByte: return "torch.uint8";
    case at::kChar: return "torch.int8";
    case at::kShort: return "torch.int16";
    case at::kInt: return "torch.int32";
    case at::kLong: return "torch.int64";
    default: return std::string("torch.") + c10::toString(st);
  }
}

// The kernels move rows with 16-byte loads (cp.async): the data pointer and every stride but the
// last (of a dim longer than 1) must be multiples of 16 bytes (8 fp16/bf16 elements). Views that are
// not (rare: odd storage offsets or strides into a fused tensor) are copied to a fresh contiguous
// tensor, which always qualifies. (contiguous() would not do: a contiguous view at an odd storage
// offset is returned as is.)
inline at::Tensor aligned_for_16b_rows(const at::Tensor& t) {
  bool ok = reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
  for (int64_t i = 0; ok && i + 1 < t.dim(); ++i) ok = t.size(i) <= 1 || t.stride(i) % 8 == 0;
  return ok ? t : t.clone(at::MemoryFormat::Contiguous);
}

// Error messages without iostreams. c10::str formats through std::ostringstream, and on a toolchain
// that links its own copy of libstdc++ into the extension (the device image's /opt/gcc does: the
// stream facets of that copy are never initialised) formatting a number that way segfaults. So the
// checks below build the whole message with to_string / snprintf and hand TORCH_CHECK one std::string,
// which c10 passes through without a stream.
// SEER_ATTN_CHECK_INPUTS=1: the op layers also validate index tensors by value (attention and pooling
// cu_seqlens, decode cache_seqlens / block indices / tables), which copies them to the host (a device
// sync). The only switch read by the
// C++ layer; read at every call.
inline bool check_inputs_enabled() {
  const char* v = std::getenv("SEER_ATTN_CHECK_INPUTS");
  return v != nullptr && v[0] == '1' && v[1] == '\0';
}

// A packed [T, H, D] tensor (last dim contiguous) as a params struct holds it: data pointer, row
// (token) stride and head stride in elements.
template <typename Ptr>
inline void bind_rows(const at::Tensor& t, Ptr& data, int64_t& row_stride, int64_t& head_stride) {
  data = static_cast<Ptr>(t.data_ptr());
  row_stride = t.stride(0);
  head_stride = t.stride(1);
}

namespace fmt {
inline void append(std::string& s, const char* v) { s += v; }
inline void append(std::string& s, const std::string& v) { s += v; }
inline void append(std::string& s, bool v) { s += v ? "True" : "False"; }
template <typename T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
inline void append(std::string& s, T v) { s += std::to_string(v); }
template <typename T, std::enable_if_t<std::is_floating_point_v<T>, int> = 0>
inline void append(std::string& s, T v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", static_cast<double>(v));
  s += buf;
}
inline void append(std::string& s, at::ScalarType v) { s += dtype_name(v); }
inline void append(std::string& s, const c10::Device& v) {  // "cuda:0", as torch prints a device
  s += c10::DeviceTypeName(v.type(), /*lower_case=*/true);
  if (v.has_index()) {
    s += ':';
    s += std::to_string(static_cast<int>(v.index()));
  }
}
inline void append(std::string& s, c10::IntArrayRef v) {  // "[2, 3, 4]", as torch prints a shape
  s += '[';
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(v[i]);
  }
  s += ']';
}
// A small 1-D integer CPU tensor (e.g. host cu_seqlens) prints its values, anything else its shape.
inline void append(std::string& s, const at::Tensor& t) {
  if (t.defined() && t.device().is_cpu() && t.dim() == 1 && t.numel() <= 64 &&
      (t.scalar_type() == at::kInt || t.scalar_type() == at::kLong)) {
    auto v = t.to(at::kLong).contiguous();
    append(s, c10::IntArrayRef(v.data_ptr<int64_t>(), static_cast<size_t>(v.numel())));
  } else if (t.defined()) {
    s += "tensor of shape ";
    append(s, t.sizes());
  } else {
    s += "undefined tensor";
  }
}
}  // namespace fmt

template <typename... Args>
std::string message(const Args&... args) {
  std::string s;
  (fmt::append(s, args), ...);
  return s;
}

}  // namespace seer

// TORCH_CHECK with an iostream-free message (see seer::fmt). Usage: SEER_TORCH_CHECK(cond, "a", 3, t.sizes()).
#define SEER_TORCH_CHECK(cond, ...)                        \
  do {                                                     \
    if (C10_UNLIKELY(!(cond))) {                           \
      TORCH_CHECK(false, ::seer::message(__VA_ARGS__));    \
    }                                                      \
  } while (0)

namespace seer {

// Value checks of a cu_seqlens tensor (SEER_ATTN_CHECK_INPUTS=1: copies it to the host), in the order and
// with the messages of seer_attn/checks.py _check_data_cu_seqlens (the CPU reference's): starts at 0,
// non-decreasing, last entry <= total rows of `total_name`, every length <= max_seqlen (`max_name`).
// Throws (TORCH_CHECK) naming op, the argument and the bad value.
inline void check_cu_seqlens_data(const char* op, const char* name, const at::Tensor& cu, int64_t total,
                                  const char* total_name, const char* max_name, int64_t max_seqlen) {
  const at::Tensor h = cu.to(at::kCPU).to(at::kLong).contiguous();
  const int64_t* v = h.data_ptr<int64_t>();
  const int64_t n = h.numel();
  if (n == 0) return;
  SEER_TORCH_CHECK(v[0] == 0, "seer_attn::", op, ": ", name, "[0] must be 0, got ", v[0]);
  int64_t longest = 0;
  for (int64_t i = 0; i + 1 < n; ++i) {
    const int64_t len = v[i + 1] - v[i];
    SEER_TORCH_CHECK(len >= 0, "seer_attn::", op, ": ", name, " must be non-decreasing, got ", name, "[", i + 1,
                     "] = ", v[i + 1], " < ", name, "[", i, "] = ", v[i]);
    longest = len > longest ? len : longest;
  }
  SEER_TORCH_CHECK(v[n - 1] <= total, "seer_attn::", op, ": ", name, "[-1] must be <= ", total_name, ".size(0) (",
                   total, "), got ", v[n - 1]);
  SEER_TORCH_CHECK(longest <= max_seqlen, "seer_attn::", op, ": ", max_name, " must be >= the longest sequence in ",
                   name, " (", longest, "), got ", max_seqlen);
}

}  // namespace seer
