// Convolution, in MLX's layout: input (N, spatial..., C_in), kernel
// (C_out, spatial..., C_in / groups), output (N, spatial..., C_out).
#include "ops.h"

namespace emlx::ops {

namespace {

Array conv_general(const Call& c, S s) {
  int groups = c.i32(7);
  // MLX divides by the group count before checking it.
  if (groups < 1) {
    throw std::invalid_argument("conv_general: feature_group_count must be at least 1, got " +
                                std::to_string(groups));
  }
  return mx::conv_general(c.arr(0), c.arr(1), c.axes(2), c.axes(3), c.axes(4), c.axes(5),
                          c.axes(6), groups, false, s);
}

const Entry ENTRIES[] = {
    {"conv_general", [](const Call& c, S s) -> Out { return {conv_general(c, s)}; }},
};

}  // namespace

const OpTable conv{ENTRIES};

}  // namespace emlx::ops
