// The CUDA epilogue of GSP's GEMM-tile driver (ops/gsp_tiles.h); see gsp_tiles_cuda.cu.
#pragma once

#include "ops/gsp_tiles.h"

namespace gkdfast {
namespace cuda {

const GspTileEpilogue& cuda_gsp_epilogue();

}  // namespace cuda
}  // namespace gkdfast
