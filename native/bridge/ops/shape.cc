// Shape, view and type ops.
#include "ops.h"

namespace emlx::ops {

namespace {

const Entry ENTRIES[] = {
    {"reshape", [](const Call& c, S s) -> Out { return {mx::reshape(c.arr(0), c.shape(1), s)}; }},
    {"broadcast_to",
     [](const Call& c, S s) -> Out { return {mx::broadcast_to(c.arr(0), c.shape(1), s)}; }},
    {"astype", [](const Call& c, S s) -> Out { return {mx::astype(c.arr(0), c.dtype(1), s)}; }},
    {"view", [](const Call& c, S s) -> Out { return {mx::view(c.arr(0), c.dtype(1), s)}; }},
    {"transpose",
     [](const Call& c, S s) -> Out { return {mx::transpose(c.arr(0), c.axes(1), s)}; }},
    {"squeeze", [](const Call& c, S s) -> Out { return {mx::squeeze(c.arr(0), c.axes(1), s)}; }},
    {"copy", [](const Call& c, S s) -> Out { return {mx::copy(c.arr(0), s)}; }},
};

}  // namespace

const OpTable shape{ENTRIES};

}  // namespace emlx::ops
