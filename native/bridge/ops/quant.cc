// Group-wise quantization: quantize, dequantize, quantized_matmul, in MLX's
// affine mode and its microscaled floating-point modes (mxfp4, mxfp8, nvfp4).
// Elixir twin: lib/emlx/ops/quant.ex (same names, same argument order).
//
// MLX's affine mode stores each group of `group_size` consecutive values
// along the last axis as `bits`-bit integers packed into uint32 words, with
// one scale and one bias per group: value ≈ scale * q + bias. The
// microscaled modes store each value as a 4- or 8-bit float (E2M1, E4M3)
// with one shared power-of-two (mxfp*) or E4M3 (nvfp4) scale per group, as
// a uint8, and no bias.
//
// Parameters are checked here before MLX sees them: MLX divides by `bits`
// and indexes shapes before its own checks in some paths, which would
// crash the VM on a zero or on a rank-0 tensor.
#include <string>

#include "ops.h"

namespace emlx::ops {

namespace {

struct Params {
  int group_size;
  int bits;
  std::string mode;
};

// The microscaled floating-point modes fix their group size and width:
// {mode, group_size, bits}.
struct Microscaled {
  const char* mode;
  int group_size;
  int bits;
};
constexpr Microscaled MICROSCALED[] = {{"mxfp4", 32, 4}, {"mxfp8", 32, 8}, {"nvfp4", 16, 4}};

// group_size, bits and (when the call has it) the mode at `mode_at`.
Params params(const Call& c, size_t group_at, size_t bits_at, size_t mode_at) {
  int64_t group_size = c.i64(group_at);
  int64_t bits = c.i64(bits_at);
  std::string mode = c.size() > mode_at ? c.str(mode_at) : "affine";
  if (mode == "affine") {
    if (group_size != 32 && group_size != 64 && group_size != 128) {
      bad_arg(c, "group_size must be 32, 64 or 128, got " + std::to_string(group_size));
    }
    if (bits < 2 || bits > 8 || bits == 7) {
      bad_arg(c, "bits must be 2, 3, 4, 5, 6 or 8, got " + std::to_string(bits));
    }
    return {static_cast<int>(group_size), static_cast<int>(bits), mode};
  }
  for (const auto& m : MICROSCALED) {
    if (mode != m.mode) continue;
    if (group_size != m.group_size || bits != m.bits) {
      bad_arg(c, "mode \"" + mode + "\" needs group_size " + std::to_string(m.group_size) +
                     " and bits " + std::to_string(m.bits) + ", got " + std::to_string(group_size) +
                     " and " + std::to_string(bits));
    }
    return {m.group_size, m.bits, mode};
  }
  bad_arg(c, "mode must be \"affine\", \"mxfp4\", \"mxfp8\" or \"nvfp4\", got \"" + mode + "\"");
}

// Packed weights and scales as quantize/3,4 returns them: uint32 weights of
// rank >= 2, scales of the same rank; biases of the scales' shape in the
// affine mode, none (nil) in the microscaled ones, whose scales are uint8
// exponents.
void check_packed(const Call& c, const Array& w, const Array& scales,
                  const std::optional<Array>& biases, const Params& p) {
  if (w.dtype() != mx::uint32) {
    bad_arg(c, std::string("w must be the packed :uint32 tensor returned by quantize/3, got ") +
               dtype_name(w.dtype()));
  }
  if (w.ndim() < 2) bad_arg(c, "w must have at least 2 axes, got shape " + shape_text(w));
  if (scales.ndim() != w.ndim()) {
    bad_arg(c, "scales must have the rank of w " + shape_text(w) + ", got shape " + shape_text(scales));
  }
  if (p.mode != "affine") {
    if (biases) bad_arg(c, "mode \"" + p.mode + "\" has no biases: pass nil");
    if (scales.dtype() != mx::uint8) {
      bad_arg(c, "mode \"" + p.mode + "\" needs the :uint8 scales quantize/4 returned, got " +
                     dtype_name(scales.dtype()));
    }
    return;
  }
  if (!biases) bad_arg(c, "the affine mode needs biases (the third tensor quantize/3 returned)");
  if (biases->shape() != scales.shape()) {
    bad_arg(c, "biases must have the shape of scales " + shape_text(scales) + ", got " + shape_text(*biases));
  }
  if (!mx::issubdtype(scales.dtype(), mx::floating) ||
      !mx::issubdtype(biases->dtype(), mx::floating)) {
    bad_arg(c, "scales and biases must be floating-point tensors");
  }
}

std::optional<Array> maybe(const Call& c, size_t i) {
  if (c.none(i)) return std::nullopt;
  return c.arr(i);
}

// The dense type dequantize gives: the scales' in the affine mode; in the
// microscaled modes the one asked for (argument `at`), else float32.
std::optional<mx::Dtype> dense_type(const Call& c, size_t at, const Params& p) {
  if (c.size() > at && !c.none(at)) return c.dtype(at);
  if (p.mode != "affine") return mx::float32;
  return std::nullopt;
}

// x times the quantized w (transposed when `transpose`). MLX's fused CUDA
// kernel (on Hopper GPUs its qmm_sm90, compiled at run time) returned wrong
// values on an H200 with CUDA 13.0 (2026-12-01: near-zero garbage where
// the dense product is ±1); on the GPU the weights are dequantized and
// multiplied instead, the same product through kernels that are right.
Array fused_or_dense(const Array& x, const Array& w, const Array& scales,
                     const std::optional<Array>& biases, bool transpose, const Params& p, S s) {
  // Built first in any case: MLX checks the shapes and gives the type.
  auto fused =
      mx::quantized_matmul(x, w, scales, biases, transpose, p.group_size, p.bits, p.mode, s);
  if (mx::to_stream(s).device != mx::Device::gpu) return fused;
  auto dense = mx::astype(mx::dequantize(w, scales, biases, p.group_size, p.bits, p.mode,
                                         std::nullopt, std::nullopt, s),
                          fused.dtype(), s);
  return mx::matmul(mx::astype(x, fused.dtype(), s),
                    transpose ? mx::swapaxes(dense, -1, -2, s) : dense, s);
}

// quantize(w, group_size, bits[, mode]), dequantize(w, scales, biases,
// group_size, bits[, mode[, type]]), quantized_matmul(x, w, scales, biases,
// transpose, group_size, bits[, mode]): `biases` is nil in the microscaled
// modes.
const Entry ENTRIES[] = {
    {"quantize",
     [](const Call& c, S s) -> Out {
       const auto& w = c.arr(0);
       auto p = params(c, 1, 2, 3);
       if (w.dtype() != mx::float32 && w.dtype() != mx::float16 && w.dtype() != mx::bfloat16) {
         bad_arg(c, std::string("w must be a float32, float16 or bfloat16 tensor, got ") +
                        dtype_name(w.dtype()));
       }
       if (w.ndim() < 2) bad_arg(c, "w must have at least 2 axes, got shape " + shape_text(w));
       if (w.shape(-1) % p.group_size != 0) {
         bad_arg(c, "the last axis of w (" + std::to_string(w.shape(-1)) +
                    ") must be a multiple of group_size " + std::to_string(p.group_size));
       }
       // MLX's CUDA quantize reads its input as row-contiguous: a transposed
       // view came out wrong. contiguous() costs nothing for an input that is.
       return mx::quantize(mx::contiguous(w, false, s), p.group_size, p.bits, p.mode,
                           std::nullopt, s);
     }},
    {"dequantize",
     [](const Call& c, S s) -> Out {
       auto p = params(c, 3, 4, 5);
       const auto& w = c.arr(0);
       const auto& scales = c.arr(1);
       auto biases = maybe(c, 2);
       check_packed(c, w, scales, biases, p);
       auto type = dense_type(c, 6, p);
       // MLX cannot reshape an empty packed matrix; its (no) values are known.
       if (w.size() == 0) {
         auto shape = w.shape();
         shape.back() = w.shape(-1) * 32 / p.bits;
         auto groups = scales.shape();
         groups.back() *= p.group_size;
         if (groups != shape) {
           bad_arg(c, "scales " + shape_text(scales) + " do not fit w " + shape_text(w) +
                          " with group_size " + std::to_string(p.group_size) + " and bits " +
                          std::to_string(p.bits));
         }
         return {mx::zeros(shape, type.value_or(scales.dtype()), s)};
       }
       return {mx::dequantize(w, scales, biases, p.group_size, p.bits, p.mode, std::nullopt,
                              type, s)};
     }},
    {"quantized_matmul",
     [](const Call& c, S s) -> Out {
       const auto& x = c.arr(0);
       auto p = params(c, 5, 6, 7);
       auto biases = maybe(c, 3);
       check_packed(c, c.arr(1), c.arr(2), biases, p);
       if (x.ndim() < 1) bad_arg(c, "x must have at least one axis");
       if (!mx::issubdtype(x.dtype(), mx::floating)) {
         bad_arg(c, std::string("x must be a floating-point tensor, got ") + dtype_name(x.dtype()));
       }
       auto out = fused_or_dense(x, c.arr(1), c.arr(2), biases, c.flag(4), p, s);
       // MLX's kernels divide by the output or inner size (SIGFPE on 0):
       // an empty product, or one over an empty inner axis, is built here.
       if (out.size() == 0 || x.shape(-1) == 0) return {mx::zeros(out.shape(), out.dtype(), s)};
       return {out};
     }},
};

}  // namespace

const OpTable quant{ENTRIES};

}  // namespace emlx::ops
