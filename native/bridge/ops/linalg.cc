// Linear algebra: contractions, and the decompositions and solvers of
// mlx::core::linalg.
//
// MLX runs its linalg ops on the CPU only (they throw on a GPU stream). They
// are built on the command queue's companion CPU stream (Call::cpu()), which
// the queue's own thread created next to its main stream. So the result is a
// tensor of the same queue and device, the queue's thread evaluates the
// whole graph (main-stream and CPU parts together), and no thread ever
// touches a stream it does not own. CPU queues have a companion stream too,
// so this path is the same, and tested, on machines without a GPU.
#include <cctype>
#include <sstream>

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

void require_matrices(const char* op, const Array& a, bool square) {
  if (a.ndim() < 2 || (square && a.shape(-1) != a.shape(-2))) {
    throw std::invalid_argument(std::string(op) + ": expected " +
                                (square ? "square matrices" : "matrices") +
                                " (a tensor of rank >= 2 whose last two axes are the matrix), "
                                "got shape " +
                                shape_str(a.shape()));
  }
}

void require_float(const char* op, const Array& a) {
  if (a.dtype() != mx::float32 && a.dtype() != mx::float64) {
    throw std::invalid_argument(std::string(op) + ": MLX's linalg needs float32 or float64, got " +
                                dtype_name(a.dtype()) + "; convert with EMLX.astype/2 first");
  }
}

// Matrices with a zero dimension crash some MLX kernels (division by zero),
// so those ops answer them here.
bool empty_matrices(const Array& a) {
  return a.ndim() >= 2 && (a.shape(-1) == 0 || a.shape(-2) == 0);
}

// inv(A) and tri_inv(A) of empty square matrices are empty.
Array inverse(const Call& c, const char* op, bool triangular) {
  const auto& a = c.arr(0);
  require_matrices(op, a, true);
  require_float(op, a);
  if (empty_matrices(a)) return mx::copy(a, c.cpu());
  return triangular ? mx::linalg::tri_inv(a, c.flag(1), c.cpu()) : mx::linalg::inv(a, c.cpu());
}

// solve(A, B) with empty A: the (empty) result has the shape of A @ B.
Array solve(const Call& c, const char* op, bool triangular) {
  const auto& a = c.arr(0);
  const auto& b = c.arr(1);
  require_matrices(op, a, true);
  require_float(op, a);
  require_float(op, b);
  if (empty_matrices(a)) return mx::matmul(a, b, c.cpu());
  return triangular ? mx::linalg::solve_triangular(a, b, c.flag(2), c.cpu())
                    : mx::linalg::solve(a, b, c.cpu());
}

// [P, L, U] with A[..., P, :] = L @ U; P is a uint32 row permutation.
Out lu(const Call& c) {
  const auto& a = c.arr(0);
  require_matrices("linalg_lu", a, false);
  require_float("linalg_lu", a);
  if (!empty_matrices(a)) return mx::linalg::lu(a, c.cpu());
  auto s = c.cpu();
  int m = a.shape(-2), n = a.shape(-1), k = std::min(m, n);
  mx::Shape batch(a.shape().begin(), a.shape().end() - 2);
  auto with = [&](std::initializer_list<int> tail) {
    auto out = batch;
    out.insert(out.end(), tail.begin(), tail.end());
    return out;
  };
  auto p = mx::broadcast_to(mx::arange(0.0, m, 1.0, mx::uint32, s), with({m}), s);
  return {p, mx::zeros(with({m, k}), a.dtype(), s), mx::zeros(with({k, n}), a.dtype(), s)};
}

// MLX reports an output subscript missing from the inputs only through a
// confusing internal error, so that case is checked here.
const std::string& einsum_spec(const Call& c, size_t i) {
  const auto& spec = c.str(i);
  auto arrow = spec.find("->");
  if (arrow != std::string::npos) {
    auto inputs = spec.substr(0, arrow);
    for (char ch : spec.substr(arrow + 2)) {
      if (std::isalpha(static_cast<unsigned char>(ch)) && inputs.find(ch) == std::string::npos) {
        throw std::invalid_argument(std::string("einsum: output subscript '") + ch +
                                    "' does not appear in the inputs of \"" + spec + "\"");
      }
    }
  }
  return spec;
}

std::string uplo(const Call& c, size_t i) {
  const auto& v = c.str(i);
  if (v != "L" && v != "U") {
    throw std::invalid_argument("linalg_eigh: uplo must be :L (use the lower triangle) or :U "
                                "(the upper), got \"" +
                                v + "\"");
  }
  return v;
}

const Entry ENTRIES[] = {
    // --- contractions ---
    {"tensordot",
     [](const Call& c, S s) -> Out {
       const auto& a = c.arr(0);
       const auto& b = c.arr(1);
       auto axes_a = contraction_axes(c, 2, a);
       auto axes_b = contraction_axes(c, 3, b);
       return {half_via_float32(a, b, s, [&](const Array& x, const Array& y) {
         return mx::tensordot(x, y, axes_a, axes_b, s);
       })};
     }},
    // einsum/3 (two tensors, spec) and einsum/2 (a list of tensors, spec).
    {"einsum",
     [](const Call& c, S s) -> Out {
       if (c.size() == 2) {
         const auto& operands = c.arrays(0);
         if (operands.empty()) bad_arg(c, "expected at least one operand");
         return {mx::einsum(einsum_spec(c, 1), operands, s)};
       }
       const auto& spec = einsum_spec(c, 2);
       return {half_via_float32(c.arr(0), c.arr(1), s, [&](const Array& x, const Array& y) {
         return mx::einsum(spec, {x, y}, s);
       })};
     }},

    // --- decompositions and solvers (CPU stream) ---
    {"linalg_lu", [](const Call& c, S) -> Out { return lu(c); }},
    {"linalg_qr",
     [](const Call& c, S) -> Out {
       require_float("linalg_qr", c.arr(0));
       auto [q, r] = mx::linalg::qr(c.arr(0), c.cpu());
       return {q, r};
     }},
    {"linalg_svd",
     [](const Call& c, S) -> Out {
       require_float("linalg_svd", c.arr(0));
       return mx::linalg::svd(c.arr(0), c.flag(1), c.cpu());
     }},
    {"linalg_cholesky",
     [](const Call& c, S) -> Out {
       require_float("linalg_cholesky", c.arr(0));
       return {mx::linalg::cholesky(c.arr(0), c.flag(1), c.cpu())};
     }},
    {"linalg_eigh",
     [](const Call& c, S) -> Out {
       require_float("linalg_eigh", c.arr(0));
       auto [values, vectors] = mx::linalg::eigh(c.arr(0), uplo(c, 1), c.cpu());
       return {values, vectors};
     }},
    {"linalg_inv", [](const Call& c, S) -> Out { return {inverse(c, "linalg_inv", false)}; }},
    {"tri_inv", [](const Call& c, S) -> Out { return {inverse(c, "tri_inv", true)}; }},
    {"linalg_pinv",
     [](const Call& c, S) -> Out {
       require_float("linalg_pinv", c.arr(0));
       return {mx::linalg::pinv(c.arr(0), c.cpu())};
     }},
    {"linalg_solve", [](const Call& c, S) -> Out { return {solve(c, "linalg_solve", false)}; }},
    {"linalg_solve_triangular",
     [](const Call& c, S) -> Out { return {solve(c, "linalg_solve_triangular", true)}; }},
};

}  // namespace

const OpTable linalg{ENTRIES};

}  // namespace emlx::ops
