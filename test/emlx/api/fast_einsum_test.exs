if Code.ensure_loaded?(Nx) do
  defmodule EMLX.API.FastEinsumTest do
    # EMLX.Fast.einsum/2 and EMLX.einsum/2 against a brute-force oracle in
    # plain Elixir: every assignment of the labels, the operands' elements
    # multiplied and summed into the output position. Run on Nx.BinaryBackend
    # (the plain-Nx formula) and on EMLX.Backend (MLX's einsum; the formula for
    # integers); gradients against hand-written Nx.dot formulas.
    use ExUnit.Case, async: true
    import EMLX.FusedOracle, only: [rand: 2, assert_close: 3]

    @emlx {EMLX.Backend, device: :cpu}

    ## The oracle

    defp brute(spec, operands) do
      [lhs | rhs] = String.split(spec, "->")
      terms = lhs |> String.split(",") |> Enum.map(&String.to_charlist/1)

      output =
        case rhs do
          [out] ->
            String.to_charlist(out)

          [] ->
            terms
            |> List.flatten()
            |> Enum.frequencies()
            |> Enum.filter(&(elem(&1, 1) == 1))
            |> Enum.map(&elem(&1, 0))
            |> Enum.sort()
        end

      sizes =
        for {term, data} <- Enum.zip(terms, operands),
            {label, size} <- Enum.zip(term, dims(data)),
            into: %{},
            do: {label, size}

      labels = Map.keys(sizes)

      sums =
        Enum.reduce(assignments(labels, sizes), %{}, fn env, acc ->
          value =
            Enum.zip(terms, operands)
            |> Enum.map(fn {term, data} -> at(data, Enum.map(term, &env[&1])) end)
            |> Enum.reduce(&(&1 * &2))

          Map.update(acc, Enum.map(output, &env[&1]), value, &(&1 + value))
        end)

      build(Enum.map(output, &sizes[&1]), [], sums)
    end

    defp dims(list) when is_list(list), do: [length(list) | dims(hd(list))]
    defp dims(_), do: []

    defp at(x, []), do: x
    defp at(list, [i | rest]), do: at(Enum.at(list, i), rest)

    defp assignments([], _sizes), do: [%{}]

    defp assignments([label | rest], sizes) do
      for env <- assignments(rest, sizes), i <- 0..(sizes[label] - 1), do: Map.put(env, label, i)
    end

    defp build([], index, sums), do: Map.get(sums, Enum.reverse(index), 0)
    defp build([n | rest], index, sums), do: for(i <- 0..(n - 1), do: build(rest, [i | index], sums))

    defp nx(list, backend), do: Nx.tensor(list, type: :f32, backend: backend)

    @cases [
      {"ij,jk->ik", [{2, 3}, {3, 4}]},
      {"bij,bjk->bik", [{2, 2, 3}, {2, 3, 2}]},
      {"ii->i", [{3, 3}]},
      {"ii", [{3, 3}]},
      {"ij->ji", [{2, 3}]},
      {"ij->", [{2, 3}]},
      {"i,j->ij", [{2}, {3}]},
      {"ij,ij->", [{2, 3}, {2, 3}]},
      {"ij,jk", [{2, 3}, {3, 2}]},
      {"ij,jk,kl->il", [{2, 3}, {3, 2}, {2, 4}]},
      {"i,i,i->i", [{3}, {3}, {3}]},
      {"iij->j", [{2, 2, 3}]},
      {"bhid,bhjd->bhij", [{1, 2, 3, 4}, {1, 2, 2, 4}]},
      {"ijk,ikl,lm->jm", [{2, 3, 2}, {2, 2, 3}, {3, 2}]},
      {"ij,kj->ik", [{2, 3}, {4, 3}]}
    ]

    for backend <- [Nx.BinaryBackend, {EMLX.Backend, device: :cpu}] do
      test "every case matches the brute-force sums on #{inspect(backend)}" do
        backend = unquote(Macro.escape(backend))

        for {{spec, shapes}, n} <- Enum.with_index(@cases) do
          data = shapes |> Enum.with_index() |> Enum.map(fn {shape, i} -> rand(shape, 10 * n + i) end)
          out = EMLX.Fast.einsum(spec, Enum.map(data, &nx(&1, backend)))
          expected = brute(spec, data)
          assert Nx.type(out) == {:f, 32}
          actual = if Nx.rank(out) == 0, do: Nx.to_number(out), else: Nx.to_list(out)
          assert_close(actual, expected, 1.0e-5)
        end
      end
    end

    test "broadcast axes (...): a missing batch, and size-1 axes that broadcast" do
      for backend <- [Nx.BinaryBackend, @emlx] do
        a = rand({2, 3, 4}, 1)
        b = rand({4, 5}, 2)
        out = EMLX.Fast.einsum("...ij,...jk->...ik", [nx(a, backend), nx(b, backend)])
        assert_close(Nx.to_list(out), brute("bij,jk->bik", [a, b]), 1.0e-5)

        one = rand({1, 3, 4}, 3)
        two = rand({2, 4, 5}, 4)
        out = EMLX.Fast.einsum("...ij,...jk->...ik", [nx(one, backend), nx(two, backend)])
        assert_close(Nx.to_list(out), brute("bij,bjk->bik", [[hd(one), hd(one)], two]), 1.0e-5)

        # Implicit output: the broadcast axes first.
        out = EMLX.Fast.einsum("...j,jk", [nx(a, backend), nx(b, backend)])
        assert_close(Nx.to_list(out), brute("bij,jk->bik", [a, b]), 1.0e-5)
      end
    end

    test "integers stay exact (MLX's matmul has no integer kernel: the formula runs)" do
      big = fn n -> for(i <- 1..n, do: for(j <- 1..n, do: 1_048_573 * i - 7 * j)) end
      {a, b} = {big.(3), big.(3)}
      out = EMLX.Fast.einsum("ij,jk->ik", [Nx.tensor(a, backend: @emlx), Nx.tensor(b, backend: @emlx)])
      assert Nx.type(out) == {:s, 32}

      assert Nx.to_list(Nx.as_type(out, :s64)) ==
               brute("ij,jk->ik", [a, b]) |> Enum.map(fn row -> Enum.map(row, &wrap32/1) end)

      wide =
        EMLX.Fast.einsum("ij,jk->ik", [
          Nx.tensor(a, type: :s64, backend: @emlx),
          Nx.tensor(b, type: :s64, backend: @emlx)
        ])

      assert Nx.to_list(wide) == brute("ij,jk->ik", [a, b])
    end

    defp wrap32(x) do
      <<y::signed-32>> = <<x::signed-32>>
      y
    end

    test "EMLX.einsum/2 on arrays: three operands" do
      data = [rand({2, 3}, 5), rand({3, 3}, 6), rand({3, 2}, 7)]
      out = EMLX.einsum(Enum.map(data, &EMLX.FusedOracle.tensor/1), "ij,jk,kl->il")
      # The GPU computes float32 products in TF32 (EMLX.TestDevice.tf32/2).
      assert_close(
        EMLX.FusedOracle.to_list(out),
        brute("ij,jk,kl->il", data),
        EMLX.TestDevice.tf32(atol: 1.0e-5)[:atol]
      )
    end

    test "inside defn and under grad: the gradient of a contraction is Nx.dot's" do
      for backend <- [Nx.BinaryBackend, @emlx] do
        a = nx(rand({2, 3}, 8), backend)
        b = nx(rand({3, 4}, 9), backend)
        w = nx(rand({2, 4}, 10), backend)
        f = fn {a, b, w} -> EMLX.Fast.einsum("ij,jk->ik", [a, b]) |> Nx.multiply(w) |> Nx.sum() end
        reference = fn {a, b, w} -> Nx.dot(a, b) |> Nx.multiply(w) |> Nx.sum() end
        assert_in_delta Nx.to_number(Nx.Defn.jit(f).({a, b, w})), Nx.to_number(reference.({a, b, w})), 1.0e-5
        {ga, gb, _} = Nx.Defn.grad({a, b, w}, f)
        {ra, rb, _} = Nx.Defn.grad({a, b, w}, reference)
        assert_close(Nx.to_list(ga), Nx.to_list(ra), 1.0e-5)
        assert_close(Nx.to_list(gb), Nx.to_list(rb), 1.0e-5)

        # d/dA sum(diag(A) * v) = diag(v).
        m = nx(rand({3, 3}, 11), backend)
        v = nx([1.0, 2.0, 3.0], backend)
        {g, _} = Nx.Defn.grad({m, v}, fn {m, v} -> EMLX.Fast.einsum("ii->i", [m]) |> Nx.multiply(v) |> Nx.sum() end)
        assert Nx.to_list(g) == [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]]
      end
    end

    test "bad subscripts raise ArgumentError naming the problem" do
      a = Nx.iota({2, 3}, type: :f32)

      for {spec, operands, message} <- [
            {"ij,jk->ik", [a], ~r/2 operand subscripts for 1 operands/},
            {"ijk->i", [a], ~r/name 3 axes, but the operand has shape \{2, 3\}/},
            {"ij,jk->ik", [a, a], ~r/subscript "j" is 3 long elsewhere but 2 in operand 1/},
            {"ij->iz", [a], ~r/output subscript "z" is not in any operand/},
            {"i1->i", [a], ~r/"1" is not a subscript letter/},
            {"ij->ii", [a], ~r/appears twice in the output/},
            {"ij->i->j", [a], ~r/more than one "->"/}
          ] do
        assert_raise ArgumentError, message, fn -> EMLX.Fast.einsum(spec, operands) end
      end

      assert_raise ArgumentError, ~r/at least one operand/, fn -> EMLX.Fast.einsum("->", []) end
    end
  end
end
