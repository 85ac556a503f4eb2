// Fused CUDA LseTileOps (one kernel per tile step); see lse_tiles_cuda.cu and ops/lse_tiles.h.
#pragma once

#include "ops/lse_tiles.h"

namespace gkdfast {
namespace cuda {

const LseTileOps& fused_lse_tile_ops();

// The ops the CUDA registrations of infonce / gram_lse use: fused unless GKDFAST_CUDA_IMPL=legacy.
const LseTileOps& cuda_lse_tile_ops();

}  // namespace cuda
}  // namespace gkdfast
