// Affine group-wise quantization: quantize, dequantize, quantized_matmul.
// Elixir twin: lib/emlx/ops/quant.ex (same names, same argument order).
//
// MLX's affine mode stores each group of `group_size` consecutive values
// along the last axis as `bits`-bit integers packed into uint32 words, with
// one scale and one bias per group: value ≈ scale * q + bias.
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
};

Params params(const Call& c, size_t group_at, size_t bits_at) {
  int64_t group_size = c.i64(group_at);
  int64_t bits = c.i64(bits_at);
  if (group_size != 32 && group_size != 64 && group_size != 128) {
    bad_arg(c, "group_size must be 32, 64 or 128, got " + std::to_string(group_size));
  }
  if (bits < 2 || bits > 8 || bits == 7) {
    bad_arg(c, "bits must be 2, 3, 4, 5, 6 or 8, got " + std::to_string(bits));
  }
  return {static_cast<int>(group_size), static_cast<int>(bits)};
}

// Packed weights, scales and biases as quantize/3 returns them: uint32
// weights of rank >= 2, scales and biases of the same rank and shape.
void check_packed(const Call& c, const Array& w, const Array& scales, const Array& biases) {
  if (w.dtype() != mx::uint32) {
    bad_arg(c, std::string("w must be the packed :uint32 tensor returned by quantize/3, got ") +
               dtype_name(w.dtype()));
  }
  if (w.ndim() < 2) bad_arg(c, "w must have at least 2 axes, got shape " + shape_text(w));
  if (scales.ndim() != w.ndim()) {
    bad_arg(c, "scales must have the rank of w " + shape_text(w) + ", got shape " + shape_text(scales));
  }
  if (biases.shape() != scales.shape()) {
    bad_arg(c, "biases must have the shape of scales " + shape_text(scales) + ", got " + shape_text(biases));
  }
  if (!mx::issubdtype(scales.dtype(), mx::floating) ||
      !mx::issubdtype(biases.dtype(), mx::floating)) {
    bad_arg(c, "scales and biases must be floating-point tensors");
  }
}

// x times the quantized w (transposed when `transpose`). MLX's fused CUDA
// kernel (on Hopper GPUs its qmm_sm90, compiled at run time) returned wrong
// values on an H200 with CUDA 13.0 (2026-12-01: near-zero garbage where
// the dense product is ±1); on the GPU the weights are dequantized and
// multiplied instead, the same product through kernels that are right.
Array fused_or_dense(const Array& x, const Array& w, const Array& scales, const Array& biases,
                     bool transpose, const Params& p, S s) {
  // Built first in any case: MLX checks the shapes and gives the type.
  auto fused =
      mx::quantized_matmul(x, w, scales, biases, transpose, p.group_size, p.bits, "affine", s);
  if (mx::to_stream(s).device != mx::Device::gpu) return fused;
  auto dense = mx::astype(mx::dequantize(w, scales, biases, p.group_size, p.bits, "affine",
                                         std::nullopt, std::nullopt, s),
                          fused.dtype(), s);
  return mx::matmul(mx::astype(x, fused.dtype(), s),
                    transpose ? mx::swapaxes(dense, -1, -2, s) : dense, s);
}

const Entry ENTRIES[] = {
    {"quantize",
     [](const Call& c, S s) -> Out {
       const auto& w = c.arr(0);
       auto p = params(c, 1, 2);
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
       return mx::quantize(mx::contiguous(w, false, s), p.group_size, p.bits, "affine",
                           std::nullopt, s);
     }},
    {"dequantize",
     [](const Call& c, S s) -> Out {
       auto p = params(c, 3, 4);
       const auto& w = c.arr(0);
       check_packed(c, w, c.arr(1), c.arr(2));
       // MLX cannot reshape an empty packed matrix; its (no) values are known.
       if (w.size() == 0) {
         const auto& scales = c.arr(1);
         auto shape = w.shape();
         shape.back() = w.shape(-1) * 32 / p.bits;
         auto groups = scales.shape();
         groups.back() *= p.group_size;
         if (groups != shape) {
           bad_arg(c, "scales " + shape_text(scales) + " do not fit w " + shape_text(w) +
                          " with group_size " + std::to_string(p.group_size) + " and bits " +
                          std::to_string(p.bits));
         }
         return {mx::zeros(shape, scales.dtype(), s)};
       }
       return {mx::dequantize(w, c.arr(1), c.arr(2), p.group_size, p.bits, "affine",
                              std::nullopt, std::nullopt, s)};
     }},
    {"quantized_matmul",
     [](const Call& c, S s) -> Out {
       const auto& x = c.arr(0);
       auto p = params(c, 5, 6);
       check_packed(c, c.arr(1), c.arr(2), c.arr(3));
       if (x.ndim() < 1) bad_arg(c, "x must have at least one axis");
       if (!mx::issubdtype(x.dtype(), mx::floating)) {
         bad_arg(c, std::string("x must be a floating-point tensor, got ") + dtype_name(x.dtype()));
       }
       auto out = fused_or_dense(x, c.arr(1), c.arr(2), c.arr(3), c.flag(4), p, s);
       // MLX's kernels divide by the output or inner size (SIGFPE on 0):
       // an empty product, or one over an empty inner axis, is built here.
       if (out.size() == 0 || x.shape(-1) == 0) return {mx::zeros(out.shape(), out.dtype(), s)};
       return {out};
     }},
};

}  // namespace

const OpTable quant{ENTRIES};

}  // namespace emlx::ops
