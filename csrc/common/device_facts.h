// Device attributes the launchers size their work by (one job: query each device once, cache it).
// ATen-free, host-only. Used by the attention forward / backward and pooling launchers, decode's work
// split, the L2 sections of the sm90 kernels' work queue (attention_api.cpp), and (use_sm90_kernels) the op
// layer's choice of the Hopper kernels for the attention forward / backward and pooling.
#pragma once

namespace seer {

struct DeviceFacts {
  int error;          // 0, or the CUDA error of the query (the other fields are then 0 and nothing is cached)
  int sms;            // streaming multiprocessors
  int smem_per_sm;    // shared memory bytes per SM
  int smem_optin;     // largest dynamic shared memory a block may opt in to
  int smem_reserved;  // shared memory the system reserves per block
  int major, minor;   // compute capability
  int l2_bytes;       // L2 cache size in bytes
};

// Attributes of device `device`, queried on the first call for that device and cached (thread-safe,
// no device sync; devices 0..63 are cached, others queried every time).
DeviceFacts device_facts(int device);
// Attributes of the current device.
DeviceFacts current_device_facts();

// Whether the Hopper (sm_90a) kernels run for this head dim on `device`: this build asks for them
// (SEER_ATTN_SM90A), the device code has them (it may come from a prebuilt kernel archive built
// without: device_code_has_sm90a answers from its build), the device has compute capability 9.0, and
// D is 64 or 128. Used by the op layer for the attention forward / backward and pooling. Cached
// attributes: no device sync. Other builds (ROCm, no 9.0a) reference no device-code symbol.
#ifdef SEER_ATTN_SM90A
bool device_code_has_sm90a();
inline bool use_sm90_kernels(int head_dim, int device) {
  if (!device_code_has_sm90a() || (head_dim != 64 && head_dim != 128)) return false;
  const DeviceFacts f = device_facts(device);
  return f.error == 0 && f.major == 9 && f.minor == 0;
}
// L2 bytes of `device` (0 where the query failed): the sections of the sm90 kernels' work queue.
inline long long sm90_l2_bytes(int device) {
  const DeviceFacts f = device_facts(device);
  return f.error == 0 ? f.l2_bytes : 0;
}
#else
inline bool use_sm90_kernels(int, int) { return false; }
inline long long sm90_l2_bytes(int) { return 0; }  // no sm90 kernel asks
#endif

}  // namespace seer
