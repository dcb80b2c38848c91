// Creation ops: tensors from scalars, constants and ranges.
#include "ops.h"

namespace emlx::ops {

namespace {

const Entry ENTRIES[] = {
    {"scalar_tensor", [](const Call& c, S) -> Out { return {scalar(c, 0, c.dtype(1))}; }},
    {"full",
     [](const Call& c, S s) -> Out {
       auto dtype = c.dtype(2);
       return {mx::full(c.shape(1), scalar(c, 0, dtype), dtype, s)};
     }},
    {"ones", [](const Call& c, S s) -> Out { return {mx::ones(c.shape(0), c.dtype(1), s)}; }},
    {"eye",
     [](const Call& c, S s) -> Out { return {mx::eye(c.i32(0), c.i32(1), 0, c.dtype(2), s)}; }},
    {"arange",
     [](const Call& c, S s) -> Out {
       auto dtype = c.flag(3) ? mx::int64 : mx::float32;
       return {mx::arange(c.f64(0), c.f64(1), c.f64(2), dtype, s)};
     }},
};

}  // namespace

const OpTable creation{ENTRIES};

}  // namespace emlx::ops
