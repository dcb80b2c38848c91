// Convolution, in MLX's layout: input (N, spatial..., C_in), kernel
// (C_out, spatial..., C_in / groups), output (N, spatial..., C_out).
#include <limits>

#include "ops.h"

namespace emlx::ops {

namespace {

// `x` with `dilation[i] - 1` zeros between neighbours along spatial axis
// i + 1: length n becomes (n - 1) * dilation[i] + 1, as a convolution's
// input dilation defines it. Each axis is interleaved by padding a new unit
// axis after it to the dilation, merging the two and cutting the trailing
// zeros.
Array interleave_zeros(const Array& x, const std::vector<int>& dilation, S s) {
  Array out = x;
  auto zero = mx::zeros({}, x.dtype(), s);
  for (size_t i = 0; i < dilation.size(); ++i) {
    int d = dilation[i];
    int axis = static_cast<int>(i) + 1;
    int n = out.shape(axis);
    if (d == 1 || n == 0) continue;
    if (static_cast<int64_t>(n) * d > std::numeric_limits<int32_t>::max()) {
      throw std::invalid_argument("conv_general: the dilated input along axis " +
                                  std::to_string(axis) + " is outside the supported range");
    }
    auto wide = mx::pad(mx::expand_dims(out, axis + 1, s), {axis + 1}, {0}, {d - 1}, zero,
                        "constant", s);
    auto merged_shape = out.shape();
    merged_shape[axis] = n * d;
    auto stop = merged_shape;
    stop[axis] = (n - 1) * d + 1;
    out = mx::slice(mx::reshape(wide, merged_shape, s), mx::Shape(out.ndim(), 0), stop, s);
  }
  return out;
}

Array conv_general(const Call& c, S s) {
  int groups = c.i32(7);
  // MLX divides by the group count before checking it.
  if (groups < 1) {
    throw std::invalid_argument("conv_general: feature_group_count must be at least 1, got " +
                                std::to_string(groups));
  }
  // MLX's CUDA convolution picks its cuDNN graph from the operands'
  // layouts (two strided operands and a kernel wider than the result: run
  // as a weight gradient) and caches that choice under a key without the
  // layouts. With strided operands, the kernel gradient of a depthwise 3-D
  // convolution (grouped 2-D ones here) evaluated together with its input
  // gradient came out wrong on an H200 (errors of 20-30), right with
  // row-contiguous ones: a copy cuDNN makes of strided operands anyway.
  bool gpu = mx::to_stream(s).device == mx::Device::gpu;
  const auto x = gpu ? mx::contiguous(c.arr(0), false, s) : c.arr(0);
  const auto w = gpu ? mx::contiguous(c.arr(1), false, s) : c.arr(1);
  auto strides = c.axes(2), low = c.axes(3), high = c.axes(4), kernel_dilation = c.axes(5);
  auto input_dilation = c.axes(6);
  // MLX checks the arguments (and says what is wrong) as it builds the node.
  auto out = mx::conv_general(x, w, strides, low, high, kernel_dilation, input_dilation, groups,
                              false, s);
  // MLX's CUDA convolution ignores input dilation (its cuDNN forward graph
  // is built without it, and its plan cache key omits it): the results are
  // wrong and change from run to run. On the GPU the zeros are interleaved
  // here and the convolution runs undilated.
  bool dilated = false;
  for (int d : input_dilation) dilated = dilated || d != 1;
  if (!dilated || !gpu) return out;
  return mx::conv_general(interleave_zeros(x, input_dilation, s), w, strides, low, high,
                          kernel_dilation, {}, groups, false, s);
}

const Entry ENTRIES[] = {
    {"conv_general", [](const Call& c, S s) -> Out { return {conv_general(c, s)}; }},
};

}  // namespace

const OpTable conv{ENTRIES};

}  // namespace emlx::ops
