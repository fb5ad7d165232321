// Host-side helpers shared by launchers (ATen-free).
#pragma once
#include <cstdio>
#include <cstdlib>
#include "platform.h"

// Launch-error check used after every kernel launch. Launchers return the error code so that the
// *_api.cpp layer (which may use TORCH_CHECK) reports it with the op name.
#ifdef USE_ROCM
#define SEER_LAST_ERROR() hipGetLastError()
#define SEER_SUCCESS hipSuccess
#define SEER_ERROR_STRING(e) hipGetErrorString(e)
using seer_error_t = hipError_t;
#else
#define SEER_LAST_ERROR() cudaGetLastError()
#define SEER_SUCCESS cudaSuccess
#define SEER_ERROR_STRING(e) cudaGetErrorString(e)
using seer_error_t = cudaError_t;
#endif

// Compile-time switches (flash-attention style): turn a runtime bool into a constexpr.
#define SEER_BOOL_SWITCH(COND, NAME, ...) \
  [&] {                                   \
    if (COND) {                           \
      constexpr static bool NAME = true;  \
      return __VA_ARGS__();               \
    } else {                              \
      constexpr static bool NAME = false; \
      return __VA_ARGS__();               \
    }                                     \
  }()
