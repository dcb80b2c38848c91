// Linear algebra. MLX's decompositions run on the CPU only.
#include "ops.h"

namespace emlx::ops {

namespace {

// MLX's tensordot indexes the shape with unchecked axes ("SmallVector out of
// range"); check them against the operand's rank first.
std::vector<int> contraction_axes(const Call& c, size_t i, const Array& a) {
  auto axes = c.axes(i);
  for (int ax : axes) {
    if (ax < -static_cast<int>(a.ndim()) || ax >= static_cast<int>(a.ndim())) {
      throw std::invalid_argument("axis " + std::to_string(ax) +
                                  " is out of range for a tensor of rank " +
                                  std::to_string(a.ndim()));
    }
  }
  return axes;
}

const Entry ENTRIES[] = {
    {"tensordot",
     [](const Call& c, S s) -> Out {
       const auto& a = c.arr(0);
       const auto& b = c.arr(1);
       return {mx::tensordot(a, b, contraction_axes(c, 2, a), contraction_axes(c, 3, b), s)};
     }},
};

}  // namespace

const OpTable linalg{ENTRIES};

}  // namespace emlx::ops
