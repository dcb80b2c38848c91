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
    EMLX_BINARY(pow, mx::power),
    EMLX_BINARY(remainder, mx::remainder),
    EMLX_BINARY(atan2, mx::arctan2),
    EMLX_BINARY(bitwise_and, mx::bitwise_and),
    EMLX_BINARY(bitwise_or, mx::bitwise_or),
    EMLX_BINARY(bitwise_xor, mx::bitwise_xor),
    EMLX_BINARY(left_shift, mx::left_shift),
    EMLX_BINARY(right_shift, mx::right_shift),
    EMLX_BINARY(minimum, mx::minimum),
    EMLX_BINARY(maximum, mx::maximum),
    EMLX_BINARY(quotient, trunc_divide),
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
