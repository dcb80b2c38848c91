// Discrete Fourier transforms (unnormalized forward, 1/n inverse). Real
// inputs are transformed as complex64: MLX has no complex128, so float64
// inputs are refused rather than silently narrowed.
#include "ops.h"

namespace emlx::ops {

namespace {

const auto BACKWARD = mx::fft::FFTNorm::Backward;

const Array& fft_input(const Call& c, const char* op) {
  const auto& a = c.arr(0);
  if (a.dtype() == mx::float64) {
    throw std::invalid_argument(std::string(op) +
                                ": MLX has no complex128, so a float64 tensor would lose "
                                "precision; convert it to float32 (EMLX.astype/2) first");
  }
  return a;
}

const Entry ENTRIES[] = {
    {"fft",
     [](const Call& c, S s) -> Out {
       return {mx::fft::fft(fft_input(c, "fft"), c.i32(1), c.i32(2), BACKWARD, s)};
     }},
    {"ifft",
     [](const Call& c, S s) -> Out {
       return {mx::fft::ifft(fft_input(c, "ifft"), c.i32(1), c.i32(2), BACKWARD, s)};
     }},
    {"fft2",
     [](const Call& c, S s) -> Out {
       return {mx::fft::fft2(fft_input(c, "fft2"), c.int32s(1), c.axes(2), BACKWARD, s)};
     }},
    {"ifft2",
     [](const Call& c, S s) -> Out {
       return {mx::fft::ifft2(fft_input(c, "ifft2"), c.int32s(1), c.axes(2), BACKWARD, s)};
     }},
};

}  // namespace

const OpTable spectral{ENTRIES};

}  // namespace emlx::ops
