#include "ops/number_table.h"

namespace gkdfast {

void check_parse_numbers(const at::Tensor& text, at::ScalarType dtype) {
  TORCH_CHECK_VALUE(text.dim() == 1, "gkdfast.parse_numbers: text must be 1-D bytes, got ", text.dim(), "-D");
  TORCH_CHECK_TYPE(text.scalar_type() == at::kByte, "gkdfast.parse_numbers: text must be uint8 bytes, got ",
                   text.scalar_type());
  TORCH_CHECK_TYPE(dtype == at::kLong || dtype == at::kFloat || dtype == at::kDouble,
                   "gkdfast.parse_numbers: dtype must be int64, float32 or float64, got ", dtype);
}

}  // namespace gkdfast
