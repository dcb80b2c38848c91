if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.LinalgTest do
    use EMLX.BackendCase, async: true

    describe "dot" do
      for type <- [{:s, 8}, {:u, 8}, {:s, 32}, {:s, 64}, {:u, 32}, {:f, 16}, {:bf, 16}, {:f, 32}, {:f, 64}, {:c, 64}] do
        test "matrix, vector, batched and multi-axis contractions on #{inspect(type)}" do
          a = random({2, 3, 4}, unquote(type), 1)
          b = random({2, 4, 5}, unquote(type), 2)

          tol =
            case unquote(type) do
              {kind, _} when kind in [:bf] ->
                [atol: 0.5, rtol: 0.02]

              {:f, 16} ->
                [atol: 0.1, rtol: 0.01]

              {kind, _} when kind in [:f, :c] ->
                EMLX.TestDevice.tf32([atol: 1.0e-4, rtol: 1.0e-5], atol: 0.1, rtol: 2.0e-3)

              _ ->
                []
            end

          check(&Nx.dot(&1, [2], [0], &2, [1], [0]), [a, b], tol)

          check(
            &Nx.dot(&1, [0, 1], [], &2, [0, 1], []),
            [random({3, 4}, unquote(type), 3), random({3, 4, 2}, unquote(type), 4)],
            tol
          )

          check(&Nx.dot/2, [random({3, 4}, unquote(type), 5), random({4}, unquote(type), 6)], tol)
          check(&Nx.dot/2, [random({4}, unquote(type), 7), random({4}, unquote(type), 8)], tol)
          check(&Nx.outer/2, [random({3}, unquote(type), 9), random({2}, unquote(type), 10)], tol)
          check(&Nx.dot(&1, [0], &2, [1]), [random({4, 3}, unquote(type), 11), random({2, 4}, unquote(type), 12)], tol)
        end
      end

      test "integer dots wrap like Nx, also when computed in chunks" do
        check(&Nx.dot/2, [bin([[100, 100], [-100, 50]], type: :s8), bin([[2, 1], [1, 3]], type: :s8)])
        a = random({300, 70}, {:s, 32}, 1)
        b = random({70, 260}, {:s, 32}, 2)
        check(&Nx.dot/2, [a, b])
      end

      test "mixed types and scalars" do
        check(
          &Nx.dot/2,
          [random({2, 3}, {:s, 32}), random({3, 2}, {:f, 32})],
          EMLX.TestDevice.tf32([atol: 1.0e-4], atol: 0.5)
        )

        check(&Nx.dot/2, [random({2, 3}, {:u, 8}), random({3}, {:s, 8})])
        check(&Nx.dot/2, [bin(3.0), random({2, 2}, {:f, 32})])
      end
    end

    describe "conv" do
      @conv_options [
        [],
        [strides: [2, 1]],
        [padding: :same],
        [padding: [{1, 0}, {2, 1}], kernel_dilation: [1, 2]],
        [input_dilation: [2, 1], padding: [{0, 1}, {1, 1}]],
        [padding: [{-1, 0}, {0, -1}]],
        [padding: [{-1, 2}, {1, -1}], input_dilation: [1, 2], strides: [1, 2]]
      ]

      for type <- [{:f, 32}, {:f, 64}, {:f, 16}, {:s, 32}] do
        test "strides, padding (negative included), dilations on #{inspect(type)}" do
          x = random({2, 3, 6, 5}, unquote(type), 1)
          k = random({4, 3, 2, 3}, unquote(type), 2)

          tol =
            if unquote(type) == {:f, 16},
              do: [atol: 0.5, rtol: 0.02],
              else: EMLX.TestDevice.tf32([atol: 1.0e-3, rtol: 1.0e-5], atol: 0.2, rtol: 2.0e-3)

          for opts <- @conv_options, do: check(&Nx.conv(&1, &2, opts), [x, k], tol)
        end
      end

      test "feature groups, batch groups, permutations, 1-d and 3-d" do
        tol = EMLX.TestDevice.tf32([atol: 1.0e-3, rtol: 1.0e-5], atol: 0.2, rtol: 2.0e-3)
        x = random({2, 4, 5, 5}, {:f, 32}, 1)
        check(&Nx.conv(&1, &2, feature_group_size: 2), [x, random({6, 2, 3, 3}, {:f, 32}, 2)], tol)
        check(&Nx.conv(&1, &2, batch_group_size: 2), [x, random({4, 4, 2, 2}, {:f, 32}, 3)], tol)

        nhwc = random({2, 5, 5, 4}, {:f, 32}, 4)

        check(
          &Nx.conv(&1, &2,
            input_permutation: [0, 3, 1, 2],
            kernel_permutation: [3, 2, 0, 1],
            output_permutation: [0, 3, 1, 2]
          ),
          [nhwc, random({2, 2, 4, 3}, {:f, 32}, 5)],
          tol
        )

        check(&Nx.conv(&1, &2, strides: [2]), [random({1, 2, 9}, {:f, 32}, 6), random({3, 2, 3}, {:f, 32}, 7)], tol)
        check(&Nx.conv/2, [random({1, 1, 4, 4, 4}, {:f, 32}, 8), random({2, 1, 2, 2, 2}, {:f, 32}, 9)], tol)
        # Four spatial axes (matrix products over windows) and f64 groups.
        check(
          &Nx.conv(&1, &2, strides: 2),
          [random({1, 2, 4, 3, 3, 4}, {:f, 32}, 10), random({2, 2, 2, 1, 2, 2}, {:f, 32}, 11)],
          tol
        )

        check(
          &Nx.conv(&1, &2, feature_group_size: 2),
          [random({2, 4, 5}, {:f, 64}, 12), random({6, 2, 3}, {:f, 64}, 13)],
          tol
        )

        check(
          &Nx.conv(&1, &2, batch_group_size: 2),
          [random({4, 2, 5}, {:f, 64}, 14), random({4, 2, 2}, {:f, 64}, 15)],
          tol
        )
      end

      test "complex" do
        x = random({1, 2, 4, 4}, {:c, 64}, 1)
        k = random({2, 2, 2, 2}, {:c, 64}, 2)
        check(&Nx.conv/2, [x, k], EMLX.TestDevice.tf32([atol: 1.0e-4, rtol: 1.0e-4], atol: 0.2))
      end
    end

    describe "triangular_solve" do
      @a_lower bin([[2.0, 0.0, 0.0], [1.0, 3.0, 0.0], [-1.0, 2.0, 4.0]])

      for type <- [:f32, :f64] do
        test "every option combination on #{type}" do
          a = Nx.as_type(@a_lower, unquote(type))
          upper = Nx.transpose(a)
          b_vec = Nx.as_type(bin([1.0, -2.0, 3.0]), unquote(type))
          b_mat = Nx.as_type(bin([[1.0, 2.0], [0.0, -1.0], [3.0, 1.0]]), unquote(type))
          b_row = Nx.transpose(b_mat)
          tol = [atol: 1.0e-5, rtol: 1.0e-5]

          for left_side <- [true, false],
              transform_a <- [:none, :transpose],
              {m, lower} <- [{a, true}, {upper, false}] do
            opts = [left_side: left_side, lower: lower, transform_a: transform_a]
            check(&Nx.LinAlg.triangular_solve(&1, &2, opts), [m, b_vec], tol)
            b = if left_side, do: b_mat, else: b_row
            check(&Nx.LinAlg.triangular_solve(&1, &2, opts), [m, b], tol)
          end
        end
      end

      test "batched systems, integer inputs, complex and singular matrices" do
        a = Nx.stack([@a_lower, Nx.multiply(@a_lower, 2)])
        check(&Nx.LinAlg.triangular_solve/2, [a, bin([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])], atol: 1.0e-5)
        check(&Nx.LinAlg.triangular_solve/2, [bin([[1, 0], [2, 3]]), bin([4, 5])], atol: 1.0e-6)

        c = bin([[1, 0, 0], [1, Complex.new(0, 1), 0], [Complex.new(0, 1), 1, 1]])
        check(&Nx.LinAlg.triangular_solve/2, [c, bin([1, -1, Complex.new(3, 3)])], atol: 1.0e-6)

        assert_raise ArgumentError, ~r/singular/, fn ->
          Nx.LinAlg.triangular_solve(emlx(bin([[1.0, 0.0], [1.0, 0.0]])), emlx(bin([1.0, 2.0])))
        end
      end
    end

    describe "FFT" do
      for type <- [{:f, 32}, {:s, 32}, {:c, 64}] do
        test "fft and ifft with lengths and axes on #{inspect(type)}" do
          x = random({3, 6}, unquote(type))
          tol = [atol: 1.0e-4, rtol: 1.0e-4]

          for op <- [:fft, :ifft],
              opts <- [[], [length: 4], [length: 8], [length: :power_of_two], [axis: 0], [axis: 0, length: 5]] do
            check(&apply(Nx, op, [&1, opts]), [x], tol)
          end

          for op <- [:fft2, :ifft2], opts <- [[], [lengths: [2, 8]], [lengths: [4, 3]]] do
            check(&apply(Nx, op, [&1, opts]), [x], tol)
          end
        end
      end

      test "rfft and irfft" do
        x = random({2, 7}, {:f, 32})
        tol = [atol: 1.0e-4, rtol: 1.0e-4]

        for opts <- [[], [length: 4], [length: 10], [length: :power_of_two]] do
          check(&Nx.rfft(&1, opts), [x], tol)
        end

        z = Nx.rfft(x)
        for opts <- [[], [length: 6], [length: 12]], do: check(&Nx.irfft(&1, opts), [z], tol)
      end

      test "f64 inputs give c128, which MLX cannot hold" do
        assert_raise ArgumentError, ~r/complex128/, fn -> Nx.fft(emlx(bin([1.0, 2.0], type: :f64))) end
      end
    end

    describe "linear algebra blocks (checked by identities)" do
      @spd bin([[4.0, 2.0, 0.6], [2.0, 5.0, 1.0], [0.6, 1.0, 3.0]])
      @square bin([[2.0, -1.0, 0.5], [4.0, 1.0, 3.0], [-2.0, 5.0, 1.0]])

      # The identities are checked with products, TF32 ones on the GPU.
      defp close(a, b, tol \\ 1.0e-4) do
        tol = EMLX.TestDevice.tf32([atol: tol, rtol: tol], atol: 0.05, rtol: 5.0e-3)

        assert Nx.to_number(Nx.all_close(Nx.backend_copy(a), Nx.backend_copy(b), tol)) == 1,
               "#{inspect(a)}\nis not close to\n#{inspect(b)}"
      end

      for type <- [:f32, :f64] do
        test "cholesky, qr, eigh, svd, lu, solve, determinant, invert on #{type}" do
          spd = emlx(Nx.as_type(@spd, unquote(type)))
          a = emlx(Nx.as_type(@square, unquote(type)))

          l = Nx.LinAlg.cholesky(spd)
          assert l.type == Nx.Type.normalize!(unquote(type))
          close(Nx.dot(l, Nx.transpose(l)), spd)
          close(l, Nx.tril(l))

          {q, r} = Nx.LinAlg.qr(a)
          close(Nx.dot(q, r), a)
          close(Nx.dot(Nx.transpose(q), q), Nx.eye(3))

          {values, vectors} = Nx.LinAlg.eigh(spd)
          close(Nx.dot(spd, vectors), Nx.multiply(vectors, values))
          assert Nx.to_flat_list(values) == Enum.sort(Nx.to_flat_list(values), :desc)

          {u, s, vt} = Nx.LinAlg.svd(a)
          close(Nx.dot(Nx.multiply(u, s), vt), a)

          {p, ll, uu} = Nx.LinAlg.lu(a)
          close(Nx.dot(p, Nx.dot(ll, uu)), a)

          b = emlx(Nx.as_type(bin([1.0, 2.0, 3.0]), unquote(type)))
          close(Nx.dot(a, Nx.LinAlg.solve(a, b)), b)
          close(Nx.LinAlg.determinant(a), Nx.LinAlg.determinant(Nx.backend_copy(a)))
          close(Nx.dot(a, Nx.LinAlg.invert(a)), Nx.eye(3))
        end
      end

      test "batched blocks and options" do
        a = emlx(Nx.stack([@square, Nx.transpose(@square)]))
        {u, s, vt} = Nx.LinAlg.svd(a, full_matrices?: false)
        close(Nx.dot(Nx.multiply(u, Nx.new_axis(s, 1)), [2], [0], vt, [1], [0]), a)

        tall = emlx(bin([[1.0, 2.0], [3.0, 4.0], [5.0, 7.0]]))
        {q, r} = Nx.LinAlg.qr(tall, mode: :complete)
        assert {Nx.shape(q), Nx.shape(r)} == {{3, 3}, {3, 2}}
        close(Nx.dot(q, r), tall)

        {p, l, u} = Nx.LinAlg.lu(a)
        close(Nx.dot(p, [2], [0], Nx.dot(l, [2], [0], u, [1], [0]), [1], [0]), a)
      end
    end
  end
end
