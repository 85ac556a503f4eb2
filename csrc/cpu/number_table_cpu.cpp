// CPU reader of the numbers of a text table (see ops/number_table.h).
//
// Why native: the loaders used to split the whole text into Python strings and hand them to numpy.
// That costs about 60 bytes of Python objects per token, so an ogbn-products-sized feature file
// (2.45 M rows of 100 floats) needs about 15 GB of strings before a single number exists.  Here the
// bytes are scanned once and each token is converted in place (std::from_chars: correctly rounded,
// locale-free), so memory is the output plus the caller's block of text.
//
// The text is cut into pieces at separators (a token never straddles two pieces); each thread
// reads its pieces into its own buffer and stops at its first token that is not a number.  The
// result is the pieces' values in order up to the first piece that stopped: the same for any number
// of threads.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <system_error>
#include <vector>

#include "cpu/cpu_kernels.h"
#include "ops/number_table.h"

namespace gkdfast {
namespace {

enum Code : int64_t { kOk = 0, kBad = 1, kPython = 2 };

// Bytes of text per piece (a piece is one task of the parallel loop).
constexpr int64_t kPieceBytes = int64_t(1) << 20;
// Integers written as floats are read exactly below this magnitude (every integer below 2^53 is a double).
constexpr double kExactIntegers = 9007199254740992.0;

struct SeparatorTable {
  bool sep[256] = {};
  constexpr SeparatorTable() {
    sep[static_cast<unsigned char>(' ')] = true;
    sep[static_cast<unsigned char>(',')] = true;
    for (int c = '\t'; c <= '\r'; ++c) sep[c] = true;  // \t \n \v \f \r
    for (int c = 0x1c; c <= 0x1f; ++c) sep[c] = true;  // str.split() also splits on these
  }
};
constexpr SeparatorTable kSeparators;

inline bool is_separator(char c) { return kSeparators.sep[static_cast<unsigned char>(c)]; }
inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

// A token this reader rejects: a digit separator or a non-ASCII byte means Python's parser may still
// read it (PEP 515 underscores, Unicode digits), so it decides; anything else is not a number.
int64_t rejected(const char* b, const char* e) {
  for (const char* p = b; p < e; ++p) {
    if (*p == '_' || static_cast<unsigned char>(*p) >= 0x80) return kPython;
  }
  return kBad;
}

// Case-insensitive comparison of [b, e) with a lower-case ASCII word.
bool equals_word(const char* b, const char* e, const char* word) {
  const size_t n = std::strlen(word);
  if (static_cast<size_t>(e - b) != n) return false;
  for (size_t i = 0; i < n; ++i) {
    char c = b[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != word[i]) return false;
  }
  return true;
}

// The sign of log10 of a decimal token that from_chars found out of double's range: > 0 means it
// overflowed (Python gives +-inf), <= 0 that it underflowed to zero (Python gives +-0.0).  The
// token matched the float grammar (digits, '.', an exponent) after an optional sign.
bool overflows(const char* p, const char* e) {
  int64_t int_digits = 0, frac_zeros = 0;  // significant integer digits; zeros before the first non-zero
  bool seen_nonzero = false;
  for (; p < e && is_digit(*p); ++p) {
    if (*p != '0') seen_nonzero = true;
    if (seen_nonzero) ++int_digits;
  }
  if (p < e && *p == '.') {
    for (++p; p < e && is_digit(*p); ++p) {
      if (*p != '0') seen_nonzero = true;
      if (!seen_nonzero) ++frac_zeros;
    }
  }
  int64_t exp = 0;
  if (p < e && (*p == 'e' || *p == 'E')) {
    ++p;
    const bool neg = p < e && *p == '-';
    if (p < e && (*p == '+' || *p == '-')) ++p;
    for (; p < e && is_digit(*p); ++p) exp = std::min<int64_t>(exp * 10 + (*p - '0'), int64_t(1) << 40);
    if (neg) exp = -exp;
  }
  // the first non-zero digit's decimal place: the value lies in [10^(mag-1), 10^mag)
  const int64_t mag = int_digits > 0 ? int_digits + exp : exp - frac_zeros;
  return mag > 0;
}

// Powers of ten that are exact doubles (10^22 is the last).
constexpr double kExactPowers[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

// Reads the token [b, e) as Python's float() does, in one pass.  The digits are gathered into an
// integer mantissa m and a decimal exponent; when m is below 2^53 and the exponent within +-22, both
// are exact doubles and m * 10^e (or m / 10^-e) is one correctly rounded operation (Clinger's fast
// path), which covers feature files' fixed-point numbers.  Anything else goes to std::from_chars
// (correctly rounded for any digit count).
int64_t read_float(const char* b, const char* e, double* out) {
  const char* p = b;
  const bool negative = *p == '-';
  if (*p == '+' || *p == '-') ++p;
  if (p == e) return kBad;
  if (!is_digit(*p) && *p != '.') {
    if (equals_word(p, e, "inf") || equals_word(p, e, "infinity")) {
      *out = negative ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
      return kOk;
    }
    if (equals_word(p, e, "nan")) {
      *out = std::copysign(std::numeric_limits<double>::quiet_NaN(), negative ? -1.0 : 1.0);
      return kOk;
    }
    return rejected(b, e);
  }
  const char* digits = p;
  uint64_t mantissa = 0;
  int64_t significant = 0, fraction_digits = 0, any_digits = 0;
  bool exact = true;  // every significant digit is in `mantissa` (at most 19 of them)
  auto take = [&](char c) {
    if (mantissa == 0 && c == '0') return;  // a leading zero
    if (significant < 19) {
      mantissa = mantissa * 10 + static_cast<uint64_t>(c - '0');
      ++significant;
    } else {
      exact = false;
    }
  };
  for (; p < e && is_digit(*p); ++p) take(*p), ++any_digits;
  if (p < e && *p == '.') {
    for (++p; p < e && is_digit(*p); ++p) take(*p), ++any_digits, ++fraction_digits;
  }
  if (any_digits == 0) return rejected(b, e);
  int64_t exponent = 0;
  if (p < e && (*p == 'e' || *p == 'E')) {
    ++p;
    const bool negative_exponent = p < e && *p == '-';
    if (p < e && (*p == '+' || *p == '-')) ++p;
    if (p == e || !is_digit(*p)) return rejected(b, e);
    for (; p < e && is_digit(*p); ++p) exponent = std::min<int64_t>(exponent * 10 + (*p - '0'), int64_t(1) << 40);
    if (negative_exponent) exponent = -exponent;
  }
  if (p != e) return rejected(b, e);
  const int64_t e10 = exponent - fraction_digits;
  if (exact && mantissa <= (uint64_t(1) << 53) && (mantissa == 0 || (e10 >= -22 && e10 <= 22))) {
    const double m = static_cast<double>(mantissa);
    const double v = mantissa == 0 ? 0.0 : e10 >= 0 ? m * kExactPowers[e10] : m / kExactPowers[-e10];
    *out = negative ? -v : v;
    return kOk;
  }
  double v = 0.0;
  const char* start = negative ? b : b + (*b == '+');  // from_chars takes a '-' but no '+'
  const auto r = std::from_chars(start, e, v, std::chars_format::general);
  if (r.ec == std::errc::result_out_of_range) {
    v = overflows(digits, e) ? std::numeric_limits<double>::infinity() : 0.0;
    if (negative) v = -v;
  } else if (r.ec != std::errc() || r.ptr != e) {
    return kBad;  // unreachable for a token of this grammar; kept as a guard
  }
  *out = v;
  return kOk;
}

// Reads the token [b, e) as the loaders read integers (ops/number_table.h): [+-]digits in one pass,
// else the float syntax with an integral value.
int64_t read_integer(const char* b, const char* e, int64_t* out) {
  const char* p = b;
  const bool negative = *p == '-';
  if (*p == '+' || *p == '-') ++p;
  uint64_t magnitude = 0;
  bool overflow = false;
  const char* q = p;
  for (; q < e && is_digit(*q); ++q) {
    overflow |= __builtin_mul_overflow(magnitude, uint64_t(10), &magnitude);
    overflow |= __builtin_add_overflow(magnitude, static_cast<uint64_t>(*q - '0'), &magnitude);
  }
  if (q == e && q > p) {  // [+-]digits
    const uint64_t limit = negative ? (uint64_t(1) << 63) : (uint64_t(1) << 63) - 1;
    if (overflow || magnitude > limit) return kPython;  // outside int64: Python names it
    *out = negative ? static_cast<int64_t>(0 - magnitude) : static_cast<int64_t>(magnitude);
    return kOk;
  }
  double d = 0.0;
  const int64_t code = read_float(b, e, &d);
  if (code != kOk) return code;
  if (!std::isfinite(d) || d != std::trunc(d)) return kBad;
  if (std::fabs(d) >= kExactIntegers) return kPython;
  *out = static_cast<int64_t>(d);
  return kOk;
}

template <typename T>
int64_t read_token(const char* b, const char* e, T* out) {
  if constexpr (std::is_same_v<T, int64_t>) {
    return read_integer(b, e, out);
  } else {
    double d = 0.0;
    const int64_t code = read_float(b, e, &d);
    if (code == kOk) *out = static_cast<T>(d);  // float32: rounded from the double, as numpy does
    return code;
  }
}

// ---- the common token forms, 8 bytes at a time -------------------------------------------------
// Edge lists and feature files are almost all short integers and fixed-point decimals.  For those the
// digits are found and converted as 8-byte words (no per-digit loop or branch); every other token
// takes the general readers above, which give the same value for these forms.

// Bytes of slack a word-wise read may need past a token's first byte.
constexpr int64_t kWordSlack = 40;

inline uint64_t load_word(const char* p) {
  uint64_t w;
  std::memcpy(&w, p, sizeof(w));  // little-endian: p[0] is the lowest byte
  return w;
}

// The number of leading ASCII digits among the word's 8 bytes.  A borrow (byte < '0') or carry
// (byte > '9') only runs towards later bytes, so the first flagged byte is the first non-digit.
inline int leading_digits(uint64_t w) {
  const uint64_t below = w - 0x3030303030303030ULL;
  const uint64_t above = w + 0x4646464646464646ULL;
  const uint64_t flags = (below | above | w) & 0x8080808080808080ULL;  // `| w`: bytes >= 0x80
  return flags ? __builtin_ctzll(flags) >> 3 : 8;
}

// The value of the word's first n digits, 1 <= n <= 8: shifted so they end at the top byte, then
// combined pairwise (2, 4, 8 digits) by multiplies.
inline uint64_t word_value(uint64_t w, int n) {
  w <<= 8 * (8 - n);
  w = ((w & 0x0F0F0F0F0F0F0F0FULL) * 2561) >> 8;
  w = ((w & 0x00FF00FF00FF00FFULL) * 6553601) >> 16;
  return ((w & 0x0000FFFF0000FFFFULL) * 42949672960001ULL) >> 32;
}

constexpr uint64_t kPow10[] = {1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL,
                               100000000ULL};

// The run of digits at p, up to 15 of them: returns the count (-1 for 16 or more) and sets *value.
inline int digit_run(const char* p, uint64_t* value) {
  const uint64_t w = load_word(p);
  const int n = leading_digits(w);
  if (n < 8) {
    *value = n ? word_value(w, n) : 0;
    return n;
  }
  const uint64_t w2 = load_word(p + 8);
  const int n2 = leading_digits(w2);
  if (n2 == 8) return -1;
  *value = word_value(w, 8) * kPow10[n2] + (n2 ? word_value(w2, n2) : 0);
  return 8 + n2;
}

// [+-]digits (1 to 15) then a separator: the token's end, with *out set; nullptr for any other form.
inline const char* fast_integer(const char* p, int64_t* out) {
  const bool negative = *p == '-';
  p += (*p == '-' || *p == '+');
  uint64_t m = 0;
  const int n = digit_run(p, &m);
  if (n <= 0 || !is_separator(p[n])) return nullptr;
  *out = negative ? -static_cast<int64_t>(m) : static_cast<int64_t>(m);
  return p + n;
}

// [+-]digits[.digits] (19 digits at most, at least one) then a separator, read as read_float does:
// the exact integer mantissa over a power of ten (Clinger's fast path).
inline const char* fast_decimal(const char* p, double* out) {
  const bool negative = *p == '-';
  p += (*p == '-' || *p == '+');
  uint64_t int_part = 0, frac_part = 0;
  const int ni = digit_run(p, &int_part);
  if (ni < 0) return nullptr;
  p += ni;
  int nf = 0;
  if (*p == '.') {
    nf = digit_run(p + 1, &frac_part);
    if (nf < 0) return nullptr;
    p += 1 + nf;
  }
  if (ni + nf == 0 || ni + nf > 19 || !is_separator(*p)) return nullptr;
  const uint64_t m = int_part * (nf > 8 ? kPow10[8] * kPow10[nf - 8] : kPow10[nf]) + frac_part;
  if (m > (uint64_t(1) << 53)) return nullptr;
  const double v = nf ? static_cast<double>(m) / kExactPowers[nf] : static_cast<double>(m);
  *out = negative ? -v : v;
  return p;
}

template <typename T>
inline const char* fast_token(const char* p, T* out) {
  if constexpr (std::is_same_v<T, int64_t>) {
    return fast_integer(p, out);
  } else {
    double d = 0.0;
    const char* end = fast_decimal(p, &d);
    if (end) *out = static_cast<T>(d);  // float32: rounded from the double, as read_token does
    return end;
  }
}

struct Piece {
  int64_t begin = 0, end = 0;
  int64_t code = kOk, offset = -1;
};

// Reads the piece's tokens into `values`, stopping at the first it cannot read.  `text_end` bounds the
// word-wise reads, which may look past the piece (never past the text).
template <typename T>
void read_piece(const char* text, const char* text_end, Piece& piece, std::vector<T>& values) {
  const char* p = text + piece.begin;
  const char* end = text + piece.end;
  while (true) {
    while (p < end && is_separator(*p)) ++p;
    if (p == end) return;
    T v{};
    if (text_end - p >= kWordSlack) {
      const char* after = fast_token(p, &v);
      if (after != nullptr) {
        values.push_back(v);
        p = after;
        continue;
      }
    }
    const char* b = p;
    while (p < end && !is_separator(*p)) ++p;
    const int64_t code = read_token(b, p, &v);
    if (code != kOk) {
      piece.code = code;
      piece.offset = b - text;
      return;
    }
    values.push_back(v);
  }
}

// Piece boundaries at separators: every boundary but the last is the position of a separator byte
// (or the text's end), so no token is cut.
std::vector<Piece> cut_pieces(const char* text, int64_t n) {
  std::vector<Piece> pieces;
  int64_t begin = 0;
  while (begin < n) {
    int64_t end = std::min(n, begin + kPieceBytes);
    while (end < n && !is_separator(text[end])) ++end;
    pieces.push_back(Piece{begin, end});
    begin = end;
  }
  return pieces;
}

template <typename T>
std::tuple<at::Tensor, at::Tensor> parse(const at::Tensor& text, at::ScalarType dtype) {
  const char* data = reinterpret_cast<const char*>(text.data_ptr<uint8_t>());
  std::vector<Piece> pieces = cut_pieces(data, text.numel());
  const int64_t num_pieces = static_cast<int64_t>(pieces.size());
  std::vector<std::vector<T>> values(pieces.size());
  at::parallel_for(0, num_pieces, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      values[i].reserve(static_cast<size_t>((pieces[i].end - pieces[i].begin) / 8));
      read_piece(data, data + text.numel(), pieces[i], values[i]);
    }
  });
  // the values up to the first piece that stopped at a token it could not read
  int64_t stopped = -1, total = 0;
  for (int64_t i = 0; i < num_pieces && stopped < 0; ++i) {
    total += static_cast<int64_t>(values[i].size());
    if (pieces[i].code != kOk) stopped = i;
  }
  const int64_t used = stopped < 0 ? num_pieces : stopped + 1;
  at::Tensor out = at::empty({total}, text.options().dtype(dtype));
  T* dst = out.data_ptr<T>();
  for (int64_t i = 0; i < used; ++i) {
    if (!values[i].empty()) std::memcpy(dst, values[i].data(), values[i].size() * sizeof(T));
    dst += values[i].size();
  }
  at::Tensor status = at::empty({2}, text.options().dtype(at::kLong));
  status.data_ptr<int64_t>()[0] = stopped < 0 ? kOk : pieces[stopped].code;
  status.data_ptr<int64_t>()[1] = stopped < 0 ? -1 : pieces[stopped].offset;
  return {out, status};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> parse_numbers_cpu(const at::Tensor& text_in, at::ScalarType dtype) {
  check_parse_numbers(text_in, dtype);
  const at::Tensor text = text_in.contiguous();
  switch (dtype) {
    case at::kLong: return parse<int64_t>(text, dtype);
    case at::kFloat: return parse<float>(text, dtype);
    default: return parse<double>(text, dtype);
  }
}

}  // namespace gkdfast
