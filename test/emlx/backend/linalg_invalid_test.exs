if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.LinalgInvalidTest do
    # Nx.LinAlg on invalid input: one documented answer, NaN (as EXLA;
    # Nx.BinaryBackend raises), never a plausible wrong matrix. Invalid
    # means a non-finite entry (every decomposition and solve), not positive
    # definite (cholesky), singular (solve, invert, triangular_solve).
    # Oracles: Nx.BinaryBackend for valid input (also inside a batch next to
    # an invalid matrix), and the defining identities (L Lᵀ = A, A x = b).
    use EMLX.BackendCase, async: true

    @not_pd [bin([[-1.0, 0.0], [0.0, -1.0]]), bin([[1.0, 2.0], [2.0, 1.0]]), bin([[1.0, 2.0], [2.0, 4.0]])]
    @singular [
      bin([[1.0, 2.0], [2.0, 4.0]]),
      bin([[0.0, 0.0], [0.0, 0.0]]),
      bin([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0], [2.0, 3.0, 4.0]])
    ]
    @non_finite [
      bin([[1.0, :nan], [0.5, 2.0]]),
      bin([[:infinity, 1.0], [0.5, 2.0]]),
      bin([[1.0, 0.0], [:neg_infinity, 2.0]])
    ]
    @spd bin([[4.0, 2.0, 0.4], [2.0, 3.0, 0.5], [0.4, 0.5, 2.0]])

    # Products (Nx.dot) are TF32 on the GPU (EMLX.TestDevice.tf32/2).
    defp tf32, do: EMLX.TestDevice.tf32([atol: 1.0e-5], atol: 1.0e-2)

    defp all_nan?(%Nx.Tensor{} = t), do: t |> Nx.is_nan() |> Nx.all() |> Nx.to_number() == 1
    defp all_nan?(tuple) when is_tuple(tuple), do: tuple |> Tuple.to_list() |> Enum.all?(&all_nan?/1)

    defp vector_like(%Nx.Tensor{shape: {n, _}}), do: bin(Enum.map(1..n, &(&1 * 1.0)))

    # The decompositions whose every output is NaN for a non-finite entry.
    @decompositions [
      cholesky: &Nx.LinAlg.cholesky/1,
      qr: &Nx.LinAlg.qr/1,
      svd: &Nx.LinAlg.svd/1,
      eigh: &Nx.LinAlg.eigh/1,
      invert: &Nx.LinAlg.invert/1,
      pinv: &Nx.LinAlg.pinv/1,
      determinant: &Nx.LinAlg.determinant/1
    ]

    describe "a non-finite entry" do
      for {name, fun} <- @decompositions do
        test "#{name}: every output is NaN" do
          for m <- @non_finite do
            assert all_nan?(unquote(fun).(emlx(m))), "#{unquote(name)} of #{inspect(Nx.to_list(m))}"
          end
        end
      end

      test "lu: L and U are NaN, P is the identity" do
        for m <- @non_finite do
          {p, l, u} = Nx.LinAlg.lu(emlx(m))
          assert all_nan?({l, u})
          assert Nx.to_list(p) == [[1.0, 0.0], [0.0, 1.0]]
        end
      end

      test "solve, least_squares and triangular_solve: the solution is NaN" do
        for m <- @non_finite do
          b = vector_like(m)
          assert all_nan?(Nx.LinAlg.solve(emlx(m), emlx(b)))
          assert all_nan?(Nx.LinAlg.least_squares(emlx(m), emlx(b)))
        end

        # triangular_solve reads one triangle: a non-finite entry there, or
        # on the diagonal, gives NaN; one in the other triangle is ignored
        # (as Nx.BinaryBackend ignores it).
        b = bin([1.0, 2.0])

        for m <- [bin([[1.0, 0.0], [:nan, 2.0]]), bin([[:infinity, 0.0], [1.0, 2.0]])] do
          assert all_nan?(Nx.LinAlg.triangular_solve(emlx(m), emlx(b)))
        end

        check(&Nx.LinAlg.triangular_solve/2, [bin([[1.0, 0.0], [0.5, 2.0]]), b], atol: 1.0e-6)
        x = Nx.LinAlg.triangular_solve(emlx(bin([[1.0, :nan], [0.5, 2.0]])), emlx(b))
        assert_same(x, emlx(bin([1.0, 0.75])), atol: 1.0e-6)
      end
    end

    test "cholesky of a matrix that is not positive definite is NaN, not its input" do
      for m <- @not_pd do
        assert all_nan?(Nx.LinAlg.cholesky(emlx(m))), inspect(Nx.to_list(m))
      end
    end

    test "solve and invert of a singular matrix are NaN" do
      for m <- @singular do
        assert all_nan?(Nx.LinAlg.invert(emlx(m))), inspect(Nx.to_list(m))
        assert all_nan?(Nx.LinAlg.solve(emlx(m), emlx(vector_like(m))))
      end
    end

    test "triangular_solve with a zero on the diagonal is NaN, for every side and transform" do
      a = bin([[2.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 3.0]])
      b = bin([1.0, 2.0, 3.0])

      for left_side <- [true, false], transform_a <- [:none, :transpose] do
        opts = [left_side: left_side, transform_a: transform_a, lower: true]
        assert all_nan?(Nx.LinAlg.triangular_solve(emlx(a), emlx(b), opts)), inspect(opts)
      end
    end

    test "singular matrices still have their determinant (0), LU, QR, SVD and pseudo-inverse" do
      for m <- @singular do
        check(&Nx.LinAlg.determinant/1, [m], atol: 1.0e-5)
        # The Moore-Penrose conditions (Nx.BinaryBackend's pinv divides by
        # the zero singular values of these).
        a = emlx(m)
        p = Nx.LinAlg.pinv(a)
        assert_same(Nx.dot(a, Nx.dot(p, a)), a, tf32())
        assert_same(Nx.dot(p, Nx.dot(a, p)), p, tf32())
        assert_same(Nx.transpose(Nx.dot(a, p)), Nx.dot(a, p), tf32())
        {u, s, vt} = Nx.LinAlg.svd(emlx(m))
        assert_same(Nx.dot(Nx.multiply(u, s), vt), emlx(m), tf32())
        {q, r} = Nx.LinAlg.qr(emlx(m))
        assert_same(Nx.dot(q, r), emlx(m), tf32())
        {p, l, u} = Nx.LinAlg.lu(emlx(m))
        assert_same(Nx.dot(p, Nx.dot(l, u)), emlx(m), tf32())
      end
    end

    test "least squares of a rank-deficient system is the minimum-norm solution" do
      # pinv([[1, 2], [2, 4]]) = A / 25, so x = A b / 25.
      x = Nx.LinAlg.least_squares(emlx(bin([[1.0, 2.0], [2.0, 4.0]])), emlx(bin([1.0, 1.0])))
      # (pinv · b: a product, TF32 on the GPU.)
      assert_same(x, emlx(bin([0.12, 0.24])), EMLX.TestDevice.tf32([atol: 1.0e-6], atol: 1.0e-3))
    end

    test "in a batch, only the invalid matrix is NaN; the valid one matches Nx.BinaryBackend" do
      good = @spd
      bad = bin([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
      singular = bin([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 1.0, 1.0]])

      l = Nx.LinAlg.cholesky(emlx(Nx.stack([good, bad])))
      assert all_nan?(l[1])
      assert_same(l[0], emlx(Nx.LinAlg.cholesky(good)), atol: 1.0e-6)
      assert_same(Nx.dot(l[0], Nx.transpose(l[0])), emlx(good), tf32())

      b = bin([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
      x = Nx.LinAlg.solve(emlx(Nx.stack([singular, good])), emlx(b))
      assert all_nan?(x[0])
      assert_same(x[1], emlx(Nx.LinAlg.solve(good, bin([1.0, 2.0, 3.0]))), atol: 1.0e-5)

      inv = Nx.LinAlg.invert(emlx(Nx.stack([good, singular])))
      assert all_nan?(inv[1])
      assert_same(Nx.dot(inv[0], emlx(good)), emlx(Nx.eye(3, type: :f32, backend: Nx.BinaryBackend)), tf32())
    end

    test "valid input is unaffected: positive definite, nonsingular, finite" do
      check(&Nx.LinAlg.cholesky/1, [@spd], atol: 1.0e-6)
      check(&Nx.LinAlg.solve/2, [@spd, bin([1.0, -2.0, 0.5])], atol: 1.0e-5)
      check(&Nx.LinAlg.invert/1, [@spd], atol: 1.0e-5)
      check(&Nx.LinAlg.determinant/1, [@spd], atol: 1.0e-5)
      check(&Nx.LinAlg.triangular_solve/2, [Nx.tril(@spd), bin([1.0, 2.0, 3.0])], atol: 1.0e-5)
    end

    test "the answer is decided on the device: building the result evaluates nothing" do
      q = EMLX.CommandQueue.new!(:cpu)

      EMLX.CommandQueue.with_queue(q, fn ->
        a = Nx.backend_copy(bin([[-1.0, 0.0], [0.0, -1.0]]), {EMLX.Backend, device: :cpu})
        b = Nx.backend_copy(bin([1.0, 2.0]), {EMLX.Backend, device: :cpu})
        before = EMLX.CommandQueue.info(q).completed

        results = [
          Nx.LinAlg.cholesky(a),
          Nx.LinAlg.triangular_solve(Nx.multiply(a, 0.0), b),
          Nx.LinAlg.solve(Nx.multiply(a, 0.0), b)
        ]

        assert EMLX.CommandQueue.info(q).completed == before
        assert Enum.all?(results, &all_nan?/1)
      end)

      EMLX.CommandQueue.close(q)
    end

    test "non-square matrices where square ones are needed raise ArgumentError" do
      m = emlx(bin([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))

      for fun <- [&Nx.LinAlg.cholesky/1, &Nx.LinAlg.invert/1, &Nx.LinAlg.determinant/1, &Nx.LinAlg.eigh/1] do
        assert_raise ArgumentError, fn -> fun.(m) end
      end

      assert_raise ArgumentError, fn -> Nx.LinAlg.solve(m, emlx(bin([1.0, 2.0]))) end
    end
  end
end
