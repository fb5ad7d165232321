// Device attributes the launchers size their work by (one job: query each device once, cache it).
// ATen-free, host-only. Used by the attention forward / backward and pooling launchers, decode's work
// split and the op layer's choice of the Hopper forward.
#pragma once

namespace seer {

struct DeviceFacts {
  int error;          // 0, or the CUDA error of the query (the other fields are then 0 and nothing is cached)
  int sms;            // streaming multiprocessors
  int smem_per_sm;    // shared memory bytes per SM
  int smem_optin;     // largest dynamic shared memory a block may opt in to
  int smem_reserved;  // shared memory the system reserves per block
  int major, minor;   // compute capability
};

// Attributes of device `device`, queried on the first call for that device and cached (thread-safe,
// no device sync; devices 0..63 are cached, others queried every time).
DeviceFacts device_facts(int device);
// Attributes of the current device.
DeviceFacts current_device_facts();

}  // namespace seer
