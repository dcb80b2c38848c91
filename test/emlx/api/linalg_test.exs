defmodule EMLX.API.LinalgTest do
  # einsum and the linalg ops, checked by hand values and identities:
  # inv(a) @ a = I, q @ r = a, u s vᵀ = a, a[p] = l @ u, l lᵀ = a, a v = v w.
  use ExUnit.Case, async: true
  import EMLX.APIHelpers

  # symmetric positive definite, well conditioned
  @spd [[4.0, 1.0, 0.5], [1.0, 3.0, 0.25], [0.5, 0.25, 2.0]]
  @general [[0.0, 2.0, 1.0], [3.0, 1.0, -1.0], [1.0, -2.0, 4.0]]
  @eye3 [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]

  # The identities are checked with matrix products: TF32 ones on the GPU.
  defp tol(:float32), do: EMLX.TestDevice.tf32([atol: 1.0e-4, rtol: 1.0e-4], atol: 0.05, rtol: 5.0e-3)
  defp tol(:float64), do: [atol: 1.0e-10, rtol: 1.0e-10]

  describe "einsum" do
    test "matrix product, trace, outer product, batched with ellipsis" do
      a = tensor([[1.0, 2.0], [3.0, 4.0]], :float32)
      b = tensor([[5.0, 6.0], [7.0, 8.0]], :float32)
      assert_close(EMLX.einsum(a, b, "ij,jk->ik"), [[19.0, 22.0], [43.0, 50.0]])
      assert_close(EMLX.einsum(a, b, "ij,ji->"), 1 * 5 + 2 * 7 + 3 * 6 + 4 * 8)

      assert_close(
        EMLX.einsum(tensor([1.0, 2.0], :float32), tensor([3.0, 4.0, 5.0], :float32), "i,j->ij"),
        [[3.0, 4.0, 5.0], [6.0, 8.0, 10.0]]
      )

      batch = EMLX.stack([a, b], 0)

      assert_close(EMLX.einsum(batch, a, "...ij,jk->...ik"), [[[7.0, 10.0], [15.0, 22.0]], [[23.0, 34.0], [31.0, 46.0]]])
    end

    test "transposed inputs, float64, empty contraction" do
      a = EMLX.transpose(tensor([[1.0, 2.0], [3.0, 4.0]], :float64), [1, 0])
      # aᵀ = [[1, 3], [2, 4]]; aᵀ·aᵀ = [[7, 15], [10, 22]]
      out = EMLX.einsum(a, a, "ij,jk->ik")
      assert EMLX.scalar_type(out) == :float64
      assert to_list(out) == [[7.0, 15.0], [10.0, 22.0]]

      assert_close(EMLX.einsum(iota({2, 0}, :float32), iota({0, 3}, :float32), "ij,jk->ik"), [
        [0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0]
      ])
    end
  end

  for type <- [:float32, :float64] do
    describe "decompositions on #{type}" do
      @type_ type

      test "lu: row i of a is row p[i] of l @ u; l unit lower, u upper" do
        a = tensor(@general, @type_)
        [p, l, u] = EMLX.linalg_lu(a)
        assert EMLX.scalar_type(p) == :uint32
        assert Enum.sort(to_list(p)) == [0, 1, 2]
        assert_close(EMLX.take(matmul(l, u), p, 0), @general, tol(@type_))
        [[l00, l01, l02], [_, l11, l12], [_, _, l22]] = to_list(l)
        assert {l00, l11, l22, l01, l02, l12} == {1.0, 1.0, 1.0, +0.0, +0.0, +0.0}
        [_, [u10, _, _], [u20, u21, _]] = to_list(u)
        assert Enum.all?([u10, u20, u21], &(&1 == 0))
        # partial pivoting takes the largest first pivot, |3| in row 1 of a,
        # as the first row of l @ u
        assert Enum.at(to_list(p), 1) == 0
      end

      test "qr: q @ r = a, qᵀq = I, r upper (square, tall, wide)" do
        for shape <- [{3, 3}, {4, 2}, {2, 4}] do
          a =
            EMLX.add(
              iota(shape, @type_),
              EMLX.eye(elem(shape, 0), elem(shape, 1), @type_, EMLX.TestDevice.device_for(@type_))
            )

          {q, r} = EMLX.linalg_qr(a)
          k = min(elem(shape, 0), elem(shape, 1))
          assert EMLX.shape(q) == {elem(shape, 0), k}
          assert EMLX.shape(r) == {k, elem(shape, 1)}
          assert_close(matmul(q, r), to_list(a), tol(@type_))

          assert_close(
            matmul(mT(q), q),
            to_list(EMLX.eye(k, k, @type_, EMLX.TestDevice.device_for(@type_))),
            tol(@type_)
          )

          for {row, i} <- Enum.with_index(to_list(r)),
              {x, j} <- Enum.with_index(row),
              j < i,
              do: assert(abs(x) < 1.0e-6)
        end
      end

      test "svd: u s vᵀ = a, singular values descending and non-negative" do
        a = tensor([[3.0, 1.0], [1.0, 3.0], [0.0, 2.0]], @type_)
        [u, s, vt] = EMLX.linalg_svd(a, true)
        assert {EMLX.shape(u), EMLX.shape(s), EMLX.shape(vt)} == {{3, 3}, {2}, {2, 2}}
        us = EMLX.multiply(EMLX.slice(u, [0, 0], [3, 2], [1, 1]), s)
        assert_close(matmul(us, vt), to_list(a), tol(@type_))
        [s0, s1] = to_list(s)
        assert s0 >= s1 and s1 >= 0
        # aᵀa = [[10, 6], [6, 14]] has eigenvalues 12 ± sqrt(40)
        assert_close(EMLX.multiply(s, s), [12 + :math.sqrt(40), 12 - :math.sqrt(40)], tol(@type_))
        [s_only] = EMLX.linalg_svd(a, false)
        assert_close(s_only, to_list(s), tol(@type_))
      end

      test "cholesky: l lᵀ = a, uᵀ u = a" do
        a = tensor(@spd, @type_)
        l = EMLX.linalg_cholesky(a, false)
        assert_close(matmul(l, mT(l)), @spd, tol(@type_))
        u = EMLX.linalg_cholesky(a, true)
        assert_close(matmul(mT(u), u), @spd, tol(@type_))
        assert_close(u, to_list(mT(l)), tol(@type_))
        # l[0][0] = sqrt(4)
        assert_close(EMLX.slice(l, [0, 0], [1, 1], [1, 1]), [[2.0]], tol(@type_))
      end

      test "eigh: a v = v diag(w), w ascending; uplo picks the triangle read" do
        a = tensor(@spd, @type_)
        {w, v} = EMLX.linalg_eigh(a, :L)
        assert_close(matmul(a, v), to_list(EMLX.multiply(v, w)), tol(@type_))
        assert to_list(w) == Enum.sort(to_list(w))
        # trace = sum of eigenvalues
        assert_close(EMLX.sum(w, [0], false), 9.0, tol(@type_))

        # garbage in the unread triangle does not matter
        lower_only = tensor([[2.0, 99.0], [1.0, 2.0]], @type_)
        {w, _} = EMLX.linalg_eigh(lower_only, "L")
        assert_close(w, [1.0, 3.0], tol(@type_))
        {w, _} = EMLX.linalg_eigh(EMLX.transpose(lower_only, [1, 0]), :U)
        assert_close(w, [1.0, 3.0], tol(@type_))
      end

      test "inv, tri_inv, pinv" do
        a = tensor(@general, @type_)
        assert_close(matmul(EMLX.linalg_inv(a), a), @eye3, tol(@type_))
        assert_close(matmul(a, EMLX.linalg_pinv(a)), @eye3, tol(@type_))

        lower = tensor([[2.0, 0.0, 0.0], [1.0, 4.0, 0.0], [-1.0, 3.0, 5.0]], @type_)
        assert_close(matmul(EMLX.tri_inv(lower, false), lower), @eye3, tol(@type_))
        upper = mT(lower)
        assert_close(matmul(upper, EMLX.tri_inv(upper, true)), @eye3, tol(@type_))

        # pinv of a tall matrix: a pinv(a) a = a, pinv(a) a = I
        tall = tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], @type_)
        p = EMLX.linalg_pinv(tall)
        assert EMLX.shape(p) == {2, 3}
        assert_close(matmul(p, tall), [[1.0, 0.0], [0.0, 1.0]], tol(@type_))
      end

      test "solve and solve_triangular, vector and matrix right-hand sides" do
        a = tensor(@general, @type_)
        x = tensor([1.0, -2.0, 3.0], @type_)
        b = EMLX.einsum(a, EMLX.reshape(x, {3, 1}), "ij,jk->ik")
        assert_close(EMLX.linalg_solve(a, EMLX.reshape(b, {3})), [1.0, -2.0, 3.0], tol(@type_))
        assert_close(EMLX.linalg_solve(a, b), [[1.0], [-2.0], [3.0]], tol(@type_))

        lower = tensor([[2.0, 0.0], [1.0, 4.0]], @type_)
        # 2 x0 = 2, x0 + 4 x1 = 9
        assert_close(EMLX.linalg_solve_triangular(lower, tensor([2.0, 9.0], @type_), false), [1.0, 2.0], tol(@type_))
        # upper = lowerᵀ: 2 x0 + x1 = 4, 4 x1 = 8
        upper = mT(lower)
        assert_close(EMLX.linalg_solve_triangular(upper, tensor([4.0, 8.0], @type_), true), [1.0, 2.0], tol(@type_))
      end

      test "batches, transposed inputs, and results keep the type" do
        a = EMLX.stack([tensor(@spd, @type_), tensor(@general, @type_)], 0)
        inv = EMLX.linalg_inv(a)
        assert EMLX.scalar_type(inv) == @type_
        assert_close(matmul(inv, a), [@eye3, @eye3], tol(@type_))

        t = EMLX.transpose(tensor(@general, @type_), [1, 0])
        assert_close(matmul(t, EMLX.linalg_inv(t)), @eye3, tol(@type_))
        {q, r} = EMLX.linalg_qr(t)
        assert_close(matmul(q, r), to_list(t), tol(@type_))
      end
    end
  end

  test "strided (sliced with a step) matrices" do
    # rows 0 and 2, columns 0 and 2 of a 3x3: [[0, 2], [6, 8]] + 2I = [[2, 2], [6, 10]]
    big = EMLX.add(iota({3, 3}, :float32), EMLX.multiply(EMLX.eye(3, 3, :float32, dev()), tensor(2.0, :float32)))
    a = EMLX.slice(big, [0, 0], [3, 3], [2, 2])
    assert to_list(a) == [[2.0, 2.0], [6.0, 10.0]]
    assert_close(matmul(EMLX.linalg_inv(a), a), [[1.0, 0.0], [0.0, 1.0]], tol(:float32))
    {q, r} = EMLX.linalg_qr(a)
    assert_close(matmul(q, r), [[2.0, 2.0], [6.0, 10.0]], tol(:float32))
    x = EMLX.linalg_solve(a, EMLX.slice(tensor([4.0, 0.0, 16.0], :float32), [0], [3], [2]))
    # 2 x0 + 2 x1 = 4, 6 x0 + 10 x1 = 16 -> x = [1, 1]
    assert_close(x, [1.0, 1.0], tol(:float32))
  end

  describe "empty matrices" do
    test "a batch of zero matrices" do
      a = iota({0, 2, 2}, :float32)
      assert EMLX.shape(EMLX.linalg_inv(a)) == {0, 2, 2}
      assert Enum.map(EMLX.linalg_lu(a), &EMLX.shape/1) == [{0, 2}, {0, 2, 2}, {0, 2, 2}]
      assert Enum.map(EMLX.linalg_svd(a, true), &EMLX.shape/1) == [{0, 2, 2}, {0, 2}, {0, 2, 2}]
      assert EMLX.shape(EMLX.linalg_cholesky(a, false)) == {0, 2, 2}
    end

    test "0x0 and 3x0 matrices give empty results instead of crashing MLX" do
      e = iota({0, 0}, :float32)
      assert to_list(EMLX.linalg_inv(e)) == []
      assert to_list(EMLX.tri_inv(iota({2, 0, 0}, :float64), true)) == [[], []]
      assert EMLX.shape(EMLX.linalg_solve(e, iota({0}, :float32))) == {0}
      assert EMLX.shape(EMLX.linalg_solve_triangular(e, iota({0, 3}, :float32), false)) == {0, 3}
      {q, r} = EMLX.linalg_qr(e)
      assert {EMLX.shape(q), EMLX.shape(r)} == {{0, 0}, {0, 0}}
      {w, v} = EMLX.linalg_eigh(e, :L)
      assert {EMLX.shape(w), EMLX.shape(v)} == {{0}, {0, 0}}
      assert EMLX.shape(EMLX.linalg_pinv(iota({3, 0}, :float32))) == {0, 3}

      [p, l, u] = EMLX.linalg_lu(iota({3, 0}, :float32))
      assert {to_list(p), EMLX.shape(l), EMLX.shape(u)} == {[0, 1, 2], {3, 0}, {0, 0}}
      [p, l, u] = EMLX.linalg_lu(iota({2, 0, 2}, :float32))
      assert {EMLX.shape(p), EMLX.shape(l), EMLX.shape(u)} == {{2, 0}, {2, 0, 0}, {2, 0, 2}}
    end
  end

  describe "the CPU stream of the command queue" do
    test "linalg on a user queue stays on that queue and mixes with its other ops" do
      queue = EMLX.CommandQueue.new!(:cpu)

      EMLX.CommandQueue.with_queue(queue, fn ->
        a = tensor(@spd, :float32)
        # a lazy op, then linalg, then a lazy op again, in one graph
        inv = a |> EMLX.multiply(tensor(2.0, :float32)) |> EMLX.linalg_inv()
        out = EMLX.multiply(inv, tensor(2.0, :float32))
        assert EMLX.NIF.tensor_queue_id(out) == queue.id
        assert_close(matmul(out, a), @eye3, tol(:float32))
      end)
    end

    test "a lazy input from another queue, and a long chain mixing both streams" do
      a = EMLX.multiply(tensor(@spd, :float32), tensor(1.0, :float32))
      queue = EMLX.CommandQueue.new!(:cpu)

      EMLX.CommandQueue.with_queue(queue, fn ->
        # `a` is an unevaluated tensor of the default queue
        out =
          Enum.reduce(1..50, EMLX.linalg_inv(a), fn _, x ->
            x |> EMLX.linalg_inv() |> EMLX.multiply(tensor(1.0, :float32)) |> EMLX.linalg_inv()
          end)

        assert EMLX.NIF.tensor_queue_id(out) == queue.id
        assert_close(matmul(out, a), @eye3, EMLX.TestDevice.tf32([atol: 1.0e-3, rtol: 1.0e-3], atol: 0.05))
      end)
    end

    test "linalg from many processes on the default queue" do
      results =
        1..20
        |> Task.async_stream(
          fn i ->
            a = tensor([[i * 1.0, 0.0], [0.0, 2.0]], :float32)
            to_list(EMLX.linalg_inv(a))
          end,
          timeout: EMLX.TestDevice.shared_queue_timeout()
        )
        |> Enum.map(fn {:ok, r} -> r end)

      for {r, i} <- Enum.with_index(results, 1) do
        assert_close(tensor(r, :float32), [[1.0 / i, 0.0], [0.0, 0.5]], tol(:float32))
      end
    end
  end
end
