// Element-wise unary and binary ops.
#include "ops.h"

namespace emlx::ops {

namespace {

// Nx's quotient truncates toward zero; MLX's floor_divide rounds down.
Array trunc_divide(const Array& a, const Array& b, S s) {
  auto q = mx::floor_divide(a, b, s);
  if (!mx::issubdtype(q.dtype(), mx::integer)) return q;
  auto zero = Array(0, q.dtype());
  auto r = mx::subtract(a, mx::multiply(q, b, s), s);
  auto adjust = mx::logical_and(mx::not_equal(r, zero, s),
                                mx::not_equal(mx::less(a, zero, s), mx::less(b, zero, s), s), s);
  return mx::where(adjust, mx::add(q, Array(1, q.dtype()), s), q, s);
}

// --- integer corner cases -----------------------------------------------------
//
// MLX leaves some integer cases to the hardware: a zero divisor and MIN / -1
// trap (SIGFPE kills the VM) or give whatever the platform gives, a negative
// exponent is undefined, and shifts by a negative amount or by the bit width
// or more are undefined behaviour in C++ (and differ between CPUs and GPUs).
// The ops below define them, for integer (and boolean) operands only;
// floating-point operands keep IEEE semantics. One helper per rule:
//   * integer_division: a / 0 gives a quotient of -1 (all bits set) and a
//     remainder equal to the dividend (XLA's convention); MIN / -1 wraps to
//     MIN with remainder 0.
//   * safe_power: a negative exponent gives the real result truncated
//     toward zero: 1 for base 1, +-1 for base -1 (by the exponent's parity),
//     0 otherwise.
//   * integer_shift: shifting by a negative amount or by the bit width or
//     more shifts every bit out: 0, or -1 for a right shift of a negative
//     number (arithmetic shift).
// The guards are lazy MLX ops on the op's stream, computed in the type MLX
// computes the op in (the operands' promoted type).

bool integral(mx::Dtype d) { return d == mx::bool_ || mx::issubdtype(d, mx::integer); }

// The smallest value of the signed integer type `d`.
Array signed_min(mx::Dtype d) {
  return Array(int64_t{-1} << (8 * mx::size_of(d) - 1), d);
}

using BinaryFn = Array (*)(const Array&, const Array&, S);

// `op` (an integer division: quotient or remainder) of a and b in their
// promoted type, with the divisor replaced by 1 where the hardware would
// trap: b == 0, and b == -1 with a == MIN (a / 1 is MIN / -1 wrapped, and
// a % 1 its remainder, 0). Where b == 0 the result is `on_zero(a)`.
// Floating-point operands go to `op` unchanged.
Array integer_division(const Array& a_in, const Array& b_in, S s, BinaryFn op,
                       Array (*on_zero)(const Array& a)) {
  auto t = mx::promote_types(a_in.dtype(), b_in.dtype());
  if (!integral(t)) return op(a_in, b_in, s);
  auto a = mx::astype(a_in, t, s);
  auto b = mx::astype(b_in, t, s);
  auto zero = mx::equal(b, Array(0, t), s);
  auto trap = zero;
  if (mx::issubdtype(t, mx::signedinteger)) {
    auto overflow =
        mx::logical_and(mx::equal(b, Array(-1, t), s), mx::equal(a, signed_min(t), s), s);
    trap = mx::logical_or(zero, overflow, s);
  }
  auto safe_b = mx::where(trap, Array(1, t), b, s);
  return mx::where(zero, on_zero(a), op(a, safe_b, s), s);
}

Array all_ones(const Array& a) { return Array(-1, a.dtype()); }
Array dividend(const Array& a) { return a; }

Array safe_quotient(const Array& a, const Array& b, S s) {
  return integer_division(a, b, s, trunc_divide, all_ones);
}

Array safe_remainder(const Array& a, const Array& b, S s) {
  return integer_division(a, b, s, mx::remainder, dividend);
}

// base ** exp; for signed integers a negative exponent gives the truncated
// real result (1 for base 1, +-1 for base -1, 0 otherwise) and never
// reaches MLX's kernel. Unsigned exponents cannot be negative.
Array safe_power(const Array& base_in, const Array& exp_in, S s) {
  auto t = mx::promote_types(base_in.dtype(), exp_in.dtype());
  if (!mx::issubdtype(t, mx::signedinteger)) return mx::power(base_in, exp_in, s);
  auto base = mx::astype(base_in, t, s);
  auto exp = mx::astype(exp_in, t, s);
  auto zero = Array(0, t), one = Array(1, t), minus_one = Array(-1, t);
  auto negative = mx::less(exp, zero, s);
  auto odd = mx::not_equal(mx::bitwise_and(exp, one, s), zero, s);
  auto of_minus_one = mx::where(odd, minus_one, one, s);
  auto truncated = mx::where(mx::equal(base, one, s), one,
                             mx::where(mx::equal(base, minus_one, s), of_minus_one, zero, s), s);
  auto powered = mx::power(base, mx::where(negative, zero, exp, s), s);
  return mx::where(negative, truncated, powered, s);
}

// `shift` (MLX's left or right shift) of a by n, with amounts outside
// [0, bit width) shifting every bit out: the result there is 0, or -1 for
// negative `a` when `sign_fill` (an arithmetic right shift). The type is
// the one MLX 0.32 shifts in: the promoted type, uint8 for booleans;
// non-integer types go to MLX, which refuses them.
Array integer_shift(const Array& a_in, const Array& n_in, S s, BinaryFn shift, bool sign_fill) {
  auto t = mx::promote_types(a_in.dtype(), n_in.dtype());
  if (t == mx::bool_) t = mx::uint8;
  if (!mx::issubdtype(t, mx::integer)) return shift(a_in, n_in, s);
  bool is_signed = mx::issubdtype(t, mx::signedinteger);
  auto a = cast(a_in, t, s);
  auto n = cast(n_in, t, s);
  int64_t width = static_cast<int64_t>(8 * mx::size_of(t));
  // A computed shift amount in range (the common case: a constant) needs no
  // guard.
  if (auto known = known_ints(n_in, 1); known && known->size() == 1 && (*known)[0] >= 0 &&
                                          (*known)[0] < width) {
    return shift(a, n, s);
  }
  auto zero = Array(0, t);
  auto bits = Array(width, t);
  auto out_of_range = mx::greater_equal(n, bits, s);
  if (is_signed) out_of_range = mx::logical_or(mx::less(n, zero, s), out_of_range, s);
  Array all_out = zero;
  if (sign_fill && is_signed) all_out = mx::where(mx::less(a, zero, s), Array(-1, t), zero, s);
  auto shifted = shift(a, mx::where(out_of_range, zero, n, s), s);
  return mx::where(out_of_range, all_out, shifted, s);
}

Array safe_left_shift(const Array& a, const Array& n, S s) {
  return integer_shift(a, n, s, mx::left_shift, false);
}

Array safe_right_shift(const Array& a, const Array& n, S s) {
  return integer_shift(a, n, s, mx::right_shift, true);
}

const Entry ENTRIES[] = {
    // --- element-wise unary ---
    EMLX_UNARY(abs, mx::abs),
    EMLX_UNARY(acos, mx::arccos),
    EMLX_UNARY(acosh, mx::arccosh),
    EMLX_UNARY(asin, mx::arcsin),
    EMLX_UNARY(asinh, mx::arcsinh),
    EMLX_UNARY(atan, mx::arctan),
    EMLX_UNARY(atanh, mx::arctanh),
    EMLX_UNARY(bitwise_not, mx::bitwise_invert),
    EMLX_UNARY(ceil, mx::ceil),
    EMLX_UNARY(conjugate, mx::conjugate),
    EMLX_UNARY(cos, mx::cos),
    EMLX_UNARY(cosh, mx::cosh),
    EMLX_UNARY(erf, mx::erf),
    EMLX_UNARY(erf_inv, mx::erfinv),
    EMLX_UNARY(exp, mx::exp),
    EMLX_UNARY(expm1, mx::expm1),
    EMLX_UNARY(floor, mx::floor),
    EMLX_UNARY(imag, mx::imag),
    EMLX_UNARY(is_infinity, mx::isinf),
    EMLX_UNARY(is_nan, mx::isnan),
    EMLX_UNARY(log, mx::log),
    EMLX_UNARY(log1p, mx::log1p),
    EMLX_UNARY(logical_not, mx::logical_not),
    EMLX_UNARY(negate, mx::negative),
    EMLX_UNARY(real, mx::real),
    {"round", [](const Call& c, S s) -> Out { return {mx::round(c.arr(0), 0, s)}; }},
    EMLX_UNARY(rsqrt, mx::rsqrt),
    EMLX_UNARY(sigmoid, mx::sigmoid),
    EMLX_UNARY(sign, mx::sign),
    EMLX_UNARY(sin, mx::sin),
    EMLX_UNARY(sinh, mx::sinh),
    EMLX_UNARY(sqrt, mx::sqrt),
    EMLX_UNARY(tan, mx::tan),
    EMLX_UNARY(tanh, mx::tanh),

    // --- element-wise binary ---
    EMLX_BINARY(add, mx::add),
    EMLX_BINARY(subtract, mx::subtract),
    EMLX_BINARY(multiply, mx::multiply),
    EMLX_BINARY(divide, mx::divide),
    EMLX_BINARY(pow, safe_power),
    EMLX_BINARY(remainder, safe_remainder),
    EMLX_BINARY(atan2, mx::arctan2),
    EMLX_BINARY(bitwise_and, mx::bitwise_and),
    EMLX_BINARY(bitwise_or, mx::bitwise_or),
    EMLX_BINARY(bitwise_xor, mx::bitwise_xor),
    EMLX_BINARY(left_shift, safe_left_shift),
    EMLX_BINARY(right_shift, safe_right_shift),
    EMLX_BINARY(minimum, mx::minimum),
    EMLX_BINARY(maximum, mx::maximum),
    EMLX_BINARY(quotient, safe_quotient),
    EMLX_BINARY(equal, mx::equal),
    EMLX_BINARY(not_equal, mx::not_equal),
    EMLX_BINARY(greater, mx::greater),
    EMLX_BINARY(greater_equal, mx::greater_equal),
    EMLX_BINARY(less, mx::less),
    EMLX_BINARY(less_equal, mx::less_equal),
    EMLX_BINARY(logical_and, mx::logical_and),
    EMLX_BINARY(logical_or, mx::logical_or),
    // --- selection and comparison ---
    {"clip",
     [](const Call& c, S s) -> Out {
       auto bound = [&](size_t i) -> std::optional<Array> {
         if (c.none(i)) return std::nullopt;
         return c.arr(i);
       };
       return {mx::clip(c.arr(0), bound(1), bound(2), s)};
     }},
    {"where",
     [](const Call& c, S s) -> Out { return {mx::where(c.arr(0), c.arr(1), c.arr(2), s)}; }},
    {"isclose",
     [](const Call& c, S s) -> Out {
       return {mx::isclose(c.arr(0), c.arr(1), c.f64(2), c.f64(3), c.flag(4), s)};
     }},
    {"allclose",
     [](const Call& c, S s) -> Out {
       return {mx::allclose(c.arr(0), c.arr(1), c.f64(2), c.f64(3), c.flag(4), s)};
     }},
    {"logical_xor",
     [](const Call& c, S s) -> Out {
       return {mx::not_equal(mx::astype(c.arr(0), mx::bool_, s),
                             mx::astype(c.arr(1), mx::bool_, s), s)};
     }},
};

}  // namespace

const OpTable elementwise{ENTRIES};

}  // namespace emlx::ops
