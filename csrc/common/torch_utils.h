// Helpers shared by the torch-facing *_api.cpp layers (these include torch; device code never does).
#pragma once
#include <torch/all.h>

#include <string>

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

}  // namespace seer
