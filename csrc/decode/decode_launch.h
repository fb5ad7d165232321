// Declarations of the per-(head dim, dtype) decode launchers. Defined in decode_launch.cuh and
// explicitly instantiated in instantiations/decode_hdim{D}_{dtype}_sm80.cu (csrc/generate_instantiations.py);
// decode_dispatch.cu picks one at run time.
#pragma once
#include "common/platform.h"
#include "decode/decode_params.h"

namespace seer {
namespace decode {

// Launches the select kernel (grid: h_kv, batch), the split kernel (grid: num_splits * row chunks,
// h_kv, batch) and, when params.num_splits > 1, the combine kernel. Returns 0 or the CUDA error code.
template <int kHeadDim, typename Elem>
int run_decode_(const DecodeParams& params, seer_stream_t stream);

}  // namespace decode
}  // namespace seer
