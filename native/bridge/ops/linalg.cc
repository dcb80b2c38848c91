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
#include <functional>
#include <limits>
#include <optional>
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

// --- precision: float32 matrices are decomposed in float64 ------------------
//
// MLX's float32 LAPACK leaves tiny singular values and pivots of
// rank-deficient float32 matrices at ~1e-7 instead of ~1e-16 (so a
// pseudo-inverse or least-squares solution built on them is wildly wrong).
// The CPU stream has float64: float32 input is widened there, decomposed,
// and the floating-point outputs narrowed back, so results come out right
// and correctly rounded. CPU tensors usually arrive in float64 already (the
// backend converts them); GPU tensors cannot be converted on the GPU, which
// has no float64, so this is where theirs are.
Array widen(const Array& x, mx::Stream cpu) {
  return x.dtype() == mx::float32 ? mx::astype(x, mx::float64, cpu) : x;
}

Array narrow(const Array& x, mx::Dtype to, mx::Stream cpu) {
  return x.dtype() == mx::float64 && to == mx::float32 ? mx::astype(x, to, cpu) : x;
}

// Matrices with a zero dimension crash some MLX kernels (division by zero),
// so those ops answer them here.
bool empty_matrices(const Array& a) {
  return a.ndim() >= 2 && (a.shape(-1) == 0 || a.shape(-2) == 0);
}

// --- invalid input: NaN, never a plausible wrong matrix ---------------------
//
// MLX (LAPACK underneath) answers invalid input inconsistently: the Cholesky
// factor of a matrix that is not positive definite comes back half-computed,
// the inverse of a singular matrix and the SVD of a matrix with a NaN throw,
// the eigenvalues of a matrix with an infinity look plausible. EMLX's answer
// is one rule: every floating-point output for a matrix whose input is
// invalid (a non-finite entry; not positive definite for Cholesky; singular
// for inverses and solves) is NaN, as XLA (EXLA) answers. It is decided on
// the device, per matrix, by a mask and `where`: nothing is read back, so the
// same graph works inside a compiled program. An invalid matrix is replaced
// by a harmless one before MLX sees it, so MLX never throws on it.

// true per matrix (shape batch + (1, 1)) where every entry is finite.
Array all_finite(const Array& a, mx::Stream s) {
  return mx::all(mx::isfinite(a, s), std::vector<int>{-2, -1}, true, s);
}

// true per matrix where every diagonal entry satisfies `pred`.
template <typename Pred>
Array diagonal_all(const Array& a, Pred pred, mx::Stream s) {
  auto d = mx::diagonal(a, 0, -2, -1, s);
  return mx::expand_dims(mx::all(pred(d), std::vector<int>{-1}, true, s), -1, s);
}

// `x` where `valid` (batch + (1, 1)), NaN elsewhere; vectors of a batch
// (one fewer axis, such as singular values) take the mask without its last
// axis. Integer outputs (LU's permutation) stay as they are.
Array nan_unless(const Array& valid, const Array& x, mx::Stream s) {
  if (!mx::issubdtype(x.dtype(), mx::inexact)) return x;
  auto v = x.ndim() + 1 == valid.ndim() ? mx::squeeze(valid, -1, s) : valid;
  return mx::where(v, x, Array(std::numeric_limits<float>::quiet_NaN(), x.dtype()), s);
}

// `a` where `valid`, else the identity (or, for `zeros`, zero): a matrix MLX
// can always decompose.
Array harmless_unless(const Array& valid, const Array& a, mx::Stream s, bool zeros = false) {
  Array safe = zeros ? mx::zeros(a.shape(), a.dtype(), s)
                     : mx::broadcast_to(mx::eye(a.shape(-2), a.shape(-1), 0, a.dtype(), s),
                                        a.shape(), s);
  return mx::where(valid, a, safe, s);
}

// Finite and, for a general matrix, nonsingular (no zero pivot in its LU
// factorisation, which is what makes LAPACK's inverse fail); for a
// triangular one (`upper` or lower: only that triangle is read), finite
// there and no zero on the diagonal.
Array invertible(const Array& a, std::optional<bool> upper, mx::Stream s) {
  auto nonzero = [&](const Array& d) { return mx::not_equal(d, Array(0, d.dtype()), s); };
  if (upper) {
    auto used = *upper ? mx::triu(a, 0, s) : mx::tril(a, 0, s);
    return mx::logical_and(all_finite(used, s), diagonal_all(a, nonzero, s), s);
  }
  auto ok = all_finite(a, s);
  auto lu = mx::linalg::lu_factor(harmless_unless(ok, a, s), s).first;
  return mx::logical_and(ok, diagonal_all(lu, nonzero, s), s);
}

// inv(A) and tri_inv(A); those of empty square matrices are empty.
Array inverse(const Call& c, const char* op, bool triangular) {
  const auto& given = c.arr(0);
  require_matrices(op, given, true);
  require_float(op, given);
  auto s = c.cpu();
  if (empty_matrices(given)) return mx::copy(given, s);
  auto a = widen(given, s);
  auto ok = invertible(a, triangular ? std::optional<bool>(c.flag(1)) : std::nullopt, s);
  auto x = harmless_unless(ok, a, s);
  auto inv = triangular ? mx::linalg::tri_inv(x, c.flag(1), s) : mx::linalg::inv(x, s);
  return narrow(nan_unless(ok, inv, s), given.dtype(), s);
}

// solve(A, B) with empty A: the (empty) result has the shape of A @ B.
Array solve(const Call& c, const char* op, bool triangular) {
  const auto& given_a = c.arr(0);
  const auto& given_b = c.arr(1);
  require_matrices(op, given_a, true);
  require_float(op, given_a);
  require_float(op, given_b);
  auto s = c.cpu();
  if (empty_matrices(given_a)) return mx::matmul(given_a, given_b, s);
  auto a = widen(given_a, s);
  auto b = widen(given_b, s);
  auto ok = invertible(a, triangular ? std::optional<bool>(c.flag(2)) : std::nullopt, s);
  auto x = harmless_unless(ok, a, s);
  auto out = triangular ? mx::linalg::solve_triangular(x, b, c.flag(2), s) : mx::linalg::solve(x, b, s);
  return narrow(nan_unless(ok, out, s), mx::promote_types(given_a.dtype(), given_b.dtype()), s);
}

// A decomposition of finite matrices: NaN outputs for the others (with
// `zeros`, a matrix of zeros stands in for them instead of the identity).
// Computed in float64 for float32 input (see `widen`).
Out decompose(const Array& given, mx::Stream s, bool zeros,
              const std::function<Out(const Array&)>& run) {
  // Not matrices, or empty ones: MLX says what is wrong, or answers.
  if (given.ndim() < 2 || empty_matrices(given)) return run(given);
  auto a = widen(given, s);
  auto ok = all_finite(a, s);
  auto outs = run(harmless_unless(ok, a, s, zeros));
  for (auto& o : outs) o = narrow(nan_unless(ok, o, s), given.dtype(), s);
  return outs;
}

// The Cholesky factor, NaN unless the matrix is finite and positive
// definite: LAPACK stops at the first pivot that is not positive and leaves
// it on the diagonal, so a factor is valid exactly when its diagonal is.
Array cholesky(const Call& c) {
  const auto& given = c.arr(0);
  require_float("linalg_cholesky", given);
  auto s = c.cpu();
  if (given.ndim() < 2 || given.shape(-1) != given.shape(-2) || empty_matrices(given)) {
    return mx::linalg::cholesky(given, c.flag(1), s);
  }
  auto a = widen(given, s);
  auto ok = all_finite(a, s);
  auto f = mx::linalg::cholesky(harmless_unless(ok, a, s), c.flag(1), s);
  auto positive = [&](const Array& d) { return mx::greater(d, Array(0, d.dtype()), s); };
  return narrow(nan_unless(mx::logical_and(ok, diagonal_all(f, positive, s), s), f, s), given.dtype(), s);
}

// [P, L, U] with A[..., P, :] = L @ U; P is a uint32 row permutation. L and
// U are NaN for a matrix with a non-finite entry (P is then the identity).
Out lu(const Call& c) {
  const auto& a = c.arr(0);
  require_matrices("linalg_lu", a, false);
  require_float("linalg_lu", a);
  if (!empty_matrices(a)) {
    return decompose(a, c.cpu(), false, [&](const Array& x) { return mx::linalg::lu(x, c.cpu()); });
  }
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
       return decompose(c.arr(0), c.cpu(), false, [&](const Array& x) -> Out {
         auto [q, r] = mx::linalg::qr(x, c.cpu());
         return {q, r};
       });
     }},
    {"linalg_svd",
     [](const Call& c, S) -> Out {
       require_float("linalg_svd", c.arr(0));
       return decompose(c.arr(0), c.cpu(), true,
                        [&](const Array& x) { return mx::linalg::svd(x, c.flag(1), c.cpu()); });
     }},
    {"linalg_cholesky", [](const Call& c, S) -> Out { return {cholesky(c)}; }},
    {"linalg_eigh",
     [](const Call& c, S) -> Out {
       require_float("linalg_eigh", c.arr(0));
       auto side = uplo(c, 1);
       return decompose(c.arr(0), c.cpu(), false, [&](const Array& x) -> Out {
         auto [values, vectors] = mx::linalg::eigh(x, side, c.cpu());
         return {values, vectors};
       });
     }},
    {"linalg_inv", [](const Call& c, S) -> Out { return {inverse(c, "linalg_inv", false)}; }},
    {"tri_inv", [](const Call& c, S) -> Out { return {inverse(c, "tri_inv", true)}; }},
    {"linalg_pinv",
     [](const Call& c, S) -> Out {
       require_float("linalg_pinv", c.arr(0));
       return decompose(c.arr(0), c.cpu(), true,
                        [&](const Array& x) -> Out { return {mx::linalg::pinv(x, c.cpu())}; });
     }},
    {"linalg_solve", [](const Call& c, S) -> Out { return {solve(c, "linalg_solve", false)}; }},
    {"linalg_solve_triangular",
     [](const Call& c, S) -> Out { return {solve(c, "linalg_solve_triangular", true)}; }},
};

}  // namespace

const OpTable linalg{ENTRIES};

}  // namespace emlx::ops
