// Reading the numbers of a text table (the data loaders' edge lists, labels and features): argument
// checks shared by every backend.
//
// Op semantics (gkdfast::parse_numbers(text, dtype) -> (values, status)):
//   text: the bytes of a text table.  Its tokens are the maximal runs of bytes that are neither ASCII
//   whitespace (' ', \t, \n, \v, \f, \r, \x1c-\x1f: what Python's str.split() splits on) nor ','.
//   values: 1-D `dtype` (int64, float32 or float64), the tokens in order, each read as the Python
//   loaders read it (gkdfast/reference/number_table.py):
//     float32 / float64: as Python's float() (correctly rounded to float64; "inf", "infinity",
//       "nan" in any case, with a sign), then rounded to float32 for float32, as numpy does;
//     int64: an integer token ([+-]?digits) exactly; a token in float syntax whose value is finite,
//       integral and below 2^53 in magnitude (edge lists written as "12.0" or "1.2e+03") as that
//       integer.
//   status [2] int64: (0, -1) every token read; (1, offset) the token starting at byte `offset` is
//   not such a number (the first one); (2, offset) the token at `offset` is one only Python's own
//   parser reads exactly (digit separators '_', non-ASCII bytes, an integer outside int64, or one
//   written as a float at or beyond 2^53): the caller reads the text in Python instead.  With a
//   non-zero status, values holds the tokens before that one.
// The result does not depend on the thread count.  Text on a CUDA device is read on the host (a
// one-off loading step with data-dependent token lengths); the results return to its device.
#pragma once

#include <ATen/core/Tensor.h>

namespace gkdfast {

// text: 1-D uint8; dtype: int64, float32 or float64.
void check_parse_numbers(const at::Tensor& text, at::ScalarType dtype);

}  // namespace gkdfast
