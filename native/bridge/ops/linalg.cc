// Linear algebra. MLX's decompositions run on the CPU only.
#include "ops.h"

namespace emlx::ops {

namespace {

const Entry ENTRIES[] = {
    {"tensordot",
     [](const Call& c, S s) -> Out {
       return {mx::tensordot(c.arr(0), c.arr(1), c.axes(2), c.axes(3), s)};
     }},
};

}  // namespace

const OpTable linalg{ENTRIES};

}  // namespace emlx::ops
