defmodule EMLX.Ops.Linalg do
  @moduledoc false
  # Linear algebra. MLX's decompositions and solvers run on the CPU only.
  # Entries: see EMLX.Ops. Native twin: native/bridge/ops/linalg.cc.

  @cpu """
  MLX runs this on the CPU only, also for `:gpu` tensors: the op is recorded
  on a CPU stream that the tensor's command queue thread owns next to its
  main stream, so the result belongs to the same queue and device as the
  input and evaluates in the same graph (no copy on unified memory). Inputs must be `:float32` or
  `:float64` matrices: the last two axes, any others are batch axes.
  """

  def table do
    [
      # --- contractions ---
      {:tensordot, [tensorA: :tensor, tensorB: :tensor, axesA: :axes, axesB: :axes],
       """
       Contracts `axesA` of `tensorA` with `axesB` of `tensorB`.

           iex> a = EMLX.ones({2, 3}, :float32, :cpu)
           iex> EMLX.tensordot(a, a, [1], [1]) |> EMLX.shape()
           {2, 2}
       """, []},
      {:einsum, [tensorA: :tensor, tensorB: :tensor, spec_string: :string],
       """
       Einstein summation of two tensors, `spec_string` in NumPy's notation
       (`"ij,jk->ik"`, `...` for broadcast axes). Floating-point inputs (MLX's
       matmul has no integer kernel).

           iex> a = EMLX.arange(0, 4, 1, false, :cpu) |> EMLX.reshape({2, 2})
           iex> EMLX.einsum(a, a, "ij,ij->") |> EMLX.item()
           14.0
       """, []},
      {:einsum, [tensors: :tensors, spec_string: :string],
       """
       Einstein summation of any number of tensors (`einsum/3` for two), with
       MLX's contraction-path optimiser choosing the order of the pairwise
       products. `spec_string` has one comma-separated term per tensor.
       Floating-point inputs. `EMLX.Fast.einsum/2` is the `Nx` version.

           iex> a = EMLX.arange(0, 4, 1, false, :cpu) |> EMLX.reshape({2, 2})
           iex> EMLX.einsum([a, a, a], "ij,jk,kl->il") |> EMLX.to_blob()
           <<6.0::float-32-native, 11.0::float-32-native, 22.0::float-32-native, 39.0::float-32-native>>
       """, []},

      # --- decompositions ---
      {:linalg_lu, [tensor: :tensor],
       """
       The LU decomposition with partial pivoting: `[p, l, u]`, `l` unit lower
       triangular, `u` upper triangular and `p` (`:uint32`, one entry per row)
       the row permutation: row `i` of `a` is row `p[i]` of `l @ u`, that is
       `take(l @ u, p, -2) == a`. Works on non-square matrices.

       #{@cpu}
           iex> a = EMLX.from_blob(<<1.0::float-32-native, 2.0::float-32-native, 3.0::float-32-native, 4.0::float-32-native>>, {2, 2}, :float32, :cpu)
           iex> [p, _l, _u] = EMLX.linalg_lu(a)
           iex> EMLX.to_blob(p)
           <<1::32-native, 0::32-native>>
       """, [out: :list]},
      {:linalg_qr, [tensor: :tensor],
       """
       The QR decomposition `{q, r}`: `q` with orthonormal columns, `r` upper
       triangular, `q @ r == a` (reduced: for an m×n matrix `q` is m×k and `r`
       k×n, k = min(m, n)).

       #{@cpu}
           iex> {q, r} = EMLX.linalg_qr(EMLX.eye(3, 3, :float32, :cpu))
           iex> {EMLX.shape(q), EMLX.shape(r)}
           {{3, 3}, {3, 3}}
       """, [out: :tuple]},
      {:linalg_svd, [tensor: :tensor, compute_uv: :bool],
       """
       The singular value decomposition: `[u, s, vt]` with `a == u[:, :k] * s @ vt`
       (`u` m×m, `s` the k = min(m, n) singular values in descending order,
       `vt` n×n) when `compute_uv` is true, `[s]` otherwise.

       #{@cpu}
           iex> a = EMLX.from_blob(<<3.0::float-32-native, 0.0::float-32-native, 0.0::float-32-native, -2.0::float-32-native>>, {2, 2}, :float32, :cpu)
           iex> [s] = EMLX.linalg_svd(a, false)
           iex> EMLX.to_blob(s)
           <<3.0::float-32-native, 2.0::float-32-native>>
       """, [out: :list]},
      {:linalg_cholesky, [tensor: :tensor, upper: :bool],
       """
       The Cholesky factor of a symmetric positive-definite matrix: lower `l`
       with `l @ lᵀ == a`, or upper `u` with `uᵀ @ u == a` when `upper`. Only
       the lower (or upper) triangle of `a` is read. MLX does not check that
       `a` is positive definite: for any other matrix the result is
       meaningless.

       #{@cpu}
           iex> a = EMLX.full(4.0, {1, 1}, :float32, :cpu)
           iex> EMLX.linalg_cholesky(a, false) |> EMLX.to_blob()
           <<2.0::float-32-native>>
       """, []},
      {:linalg_eigh, [tensor: :tensor, uplo: :string],
       """
       The eigendecomposition of a symmetric (Hermitian) matrix:
       `{eigenvalues, eigenvectors}`, values ascending, vectors in the columns.
       `uplo` (`:L` or `:U`, or the strings) says which triangle of `a` is read.

       #{@cpu}
           iex> a = EMLX.from_blob(<<2.0::float-32-native, 0.0::float-32-native, 0.0::float-32-native, 1.0::float-32-native>>, {2, 2}, :float32, :cpu)
           iex> {w, _v} = EMLX.linalg_eigh(a, :L)
           iex> EMLX.to_blob(w)
           <<1.0::float-32-native, 2.0::float-32-native>>
       """, [out: :tuple]},

      # --- inverses and solvers ---
      {:linalg_inv, [tensor: :tensor],
       """
       The inverse of square matrices. A singular matrix makes evaluation
       raise `EMLX.NIFError`.

       #{@cpu}
           iex> a = EMLX.full(4.0, {1, 1}, :float32, :cpu)
           iex> EMLX.linalg_inv(a) |> EMLX.to_blob()
           <<0.25::float-32-native>>
       """, []},
      {:tri_inv, [tensor: :tensor, upper: :bool],
       """
       The inverse of triangular matrices: only the lower (or, when `upper`,
       the upper) triangle is read.

       #{@cpu}
           iex> a = EMLX.full(2.0, {1, 1}, :float32, :cpu)
           iex> EMLX.tri_inv(a, false) |> EMLX.to_blob()
           <<0.5::float-32-native>>
       """, []},
      {:linalg_pinv, [tensor: :tensor],
       """
       The Moore–Penrose pseudo-inverse (n×m for an m×n matrix), through the SVD.

       #{@cpu}
           iex> a = EMLX.ones({2, 3}, :float32, :cpu)
           iex> EMLX.linalg_pinv(a) |> EMLX.shape()
           {3, 2}
       """, []},
      {:linalg_solve, [tensorA: :tensor, tensorB: :tensor],
       """
       `x` with `a @ x == b`, for square `a` and `b` a vector (…, n) or
       matrices (…, n, k).

       #{@cpu}
           iex> a = EMLX.full(2.0, {1, 1}, :float32, :cpu)
           iex> b = EMLX.full(3.0, {1}, :float32, :cpu)
           iex> EMLX.linalg_solve(a, b) |> EMLX.to_blob()
           <<1.5::float-32-native>>
       """, []},
      {:linalg_solve_triangular, [tensorA: :tensor, tensorB: :tensor, upper: :bool],
       """
       Like `linalg_solve/2` for triangular `a`: only its lower (or, when
       `upper`, its upper) triangle is read.

       #{@cpu}
           iex> a = EMLX.full(2.0, {1, 1}, :float32, :cpu)
           iex> b = EMLX.full(3.0, {1}, :float32, :cpu)
           iex> EMLX.linalg_solve_triangular(a, b, true) |> EMLX.to_blob()
           <<1.5::float-32-native>>
       """, []}
    ]
  end
end
