// The ops whose autograd is written in C++, registered in one place for the Autograd key (every
// device).  The other differentiable ops register their formulas from Python (gkdfast/_native/).
#include <torch/library.h>

#include "autograd/autograd_kernels.h"

namespace gkdfast {

TORCH_LIBRARY_IMPL(gkdfast, Autograd, m) {
  m.impl("dropout", &dropout_autograd);
  m.impl("edge_softmax", &edge_softmax_autograd);
  m.impl("sddmm", &sddmm_autograd);
  m.impl("spmm", &spmm_autograd);
  m.impl("spmm_gcn", &spmm_gcn_autograd);
}

}  // namespace gkdfast
