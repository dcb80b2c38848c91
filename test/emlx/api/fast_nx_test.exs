# Needs Nx: compiled only where Nx is available (tagged :nx as well).
if Code.ensure_loaded?(Nx) do
  defmodule EMLX.API.FastNxTest do
    # EMLX.Fast on Nx tensors: the default (plain Nx) implementations on
    # Nx.BinaryBackend against the same plain-Elixir oracle as the native ops,
    # inside defn, under grad; and, where EMLX.Backend exists, the fused path
    # against the default one.
    use ExUnit.Case, async: true
    import EMLX.FusedOracle, except: [tensor: 1, tensor: 2, to_list: 1]

    @moduletag :nx

    doctest EMLX.Fast

    defp t(list), do: Nx.tensor(list, type: :f32, backend: Nx.BinaryBackend)
    defp l(tensor), do: Nx.to_list(tensor)

    defp rms(row, w, eps) do
      r = :math.sqrt(mean(Enum.map(row, &(&1 * &1))) + eps)
      Enum.zip_with(row, w, &(&1 / r * &2))
    end

    test "rms_norm and layer_norm follow their formulas" do
      x = rand({3, 8}, 1)
      w = rand({8}, 2)
      b = rand({8}, 3)
      assert_close(EMLX.Fast.rms_norm(t(x), t(w), 1.0e-5) |> l(), map_rows(x, &rms(&1, w, 1.0e-5)))

      layer = fn row ->
        mu = mean(row)
        r = :math.sqrt(mean(Enum.map(row, &((&1 - mu) * (&1 - mu)))) + 1.0e-5)
        [row, w, b] |> Enum.zip_with(fn [x, wi, bi] -> (x - mu) / r * wi + bi end)
      end

      assert_close(EMLX.Fast.layer_norm(t(x), t(w), t(b), 1.0e-5) |> l(), map_rows(x, layer))
    end

    test "the rope variants agree with each other on consecutive positions" do
      a = t(rand({2, 3, 2, 8}, 4))
      ids = Nx.tensor([[2, 3, 4], [7, 8, 9]])
      freqs = Nx.tensor(for i <- 0..3, do: :math.pow(10_000.0, 2 * i / 8))

      for trad <- [false, true] do
        by_ids = EMLX.Fast.rope_with_positions(a, ids, 8, trad, 10_000.0, 1.0)
        by_freqs = EMLX.Fast.rope_with_freqs(a, ids, 8, trad, 1.0, freqs)
        assert_close(l(by_ids), l(by_freqs), 1.0e-5)

        # rope/6 takes {B, H, T, D} and one offset: compare row 0.
        row0 = a[0] |> Nx.transpose(axes: [1, 0, 2]) |> Nx.new_axis(0)
        by_offset = EMLX.Fast.rope(row0, 8, trad, 10_000.0, 1.0, 2) |> Nx.transpose(axes: [0, 2, 1, 3])
        assert_close(l(by_offset), l(by_ids[0..0]), 1.0e-5)
      end
    end

    test "attention follows the softmax formula, masks included" do
      {q, k, v} = {rand({1, 4, 3, 4}, 5), rand({1, 2, 3, 4}, 6), rand({1, 2, 3, 4}, 7)}
      assert_close(EMLX.Fast.scaled_dot_product_attention(t(q), t(k), t(v), 0.5) |> l(), attention_bntd(q, k, v, 0.5))

      causal = attention_bntd(q, k, v, 0.5, fn _, i, j -> j <= i end)
      assert_close(EMLX.Fast.scaled_dot_product_attention_causal(t(q), t(k), t(v), 0.5) |> l(), causal)

      key_mask = [[0, 1, 1]]
      out = EMLX.Fast.scaled_dot_product_attention_causal_key_masked(t(q), t(k), t(v), 0.5, Nx.tensor(key_mask))
      visible = fn _, i, j -> j <= i and Enum.at(hd(key_mask), j) == 1 end
      assert_close(l(out), attention_bntd(q, k, v, 0.5, visible))

      bias = Nx.tensor([[[[0.0, -1.0, 2.0]]]])
      masked = EMLX.Fast.scaled_dot_product_attention(t(q), t(k), t(v), 0.5, bias) |> l()

      expected =
        for {qb, kb, vb} <- Enum.zip([q, k, v]) do
          for {qh, h} <- Enum.with_index(qb) do
            {kh, vh} = {Enum.at(kb, div(h, 2)), Enum.at(vb, div(h, 2))}

            for qi <- qh do
              p = softmax(Enum.zip_with(Enum.map(kh, &(dot(qi, &1) * 0.5)), [0.0, -1.0, 2.0], &+/2))
              Enum.map(transpose(vh), &dot(p, &1))
            end
          end
        end

      assert_close(masked, expected)
    end

    test "inside defn the result is the eager one" do
      x = t(rand({2, 6}, 8))
      w = t(rand({6}, 9))
      jitted = Nx.Defn.jit(fn x, w -> EMLX.Fast.rms_norm(x, w, 1.0e-6) |> EMLX.Fast.swiglu(x) end)
      eager = EMLX.Fast.rms_norm(x, w, 1.0e-6) |> EMLX.Fast.swiglu(x)
      assert_close(l(jitted.(x, w)), l(eager), 1.0e-6)
    end

    test "grad goes through the default formula: d/dg sum(swiglu(g, u))" do
      g = rand({5}, 10)
      u = rand({5}, 11)
      grad = Nx.Defn.grad(t(g), fn g -> Nx.sum(EMLX.Fast.swiglu(g, t(u))) end) |> l()
      sig = fn x -> 1 / (1 + :math.exp(-x)) end
      expected = Enum.zip_with(g, u, fn x, y -> (sig.(x) + x * sig.(x) * (1 - sig.(x))) * y end)
      assert_close(grad, expected)
    end

    if Code.ensure_loaded?(EMLX.Backend) do
      describe "on EMLX.Backend" do
        defp e(list), do: Nx.tensor(list, type: :f32, backend: EMLX.TestDevice.backend())
        defp ints(list, backend), do: Nx.tensor(list, type: :u8, backend: backend)

        test "native_block/3 runs the fused op, or answers :default for tensors of other backends" do
          block = %EMLX.Fast.Block{op: :swiglu}
          out = Nx.template({2}, :f32)
          fused = EMLX.Fast.native_block(block, out, [e([0.0, 30.0]), e([5.0, 2.0])])
          assert_close(l(fused), [0.0, 60.0], 1.0e-6)
          assert EMLX.Fast.native_block(block, out, [t([0.0, 30.0]), e([5.0, 2.0])]) == :default
        end

        test "the fused ops give the default formulas' values" do
          {q, k, v} = {rand({1, 4, 3, 4}, 12), rand({1, 2, 3, 4}, 13), rand({1, 2, 3, 4}, 14)}
          a = rand({2, 3, 2, 8}, 15)
          ids = [[0, 5, 1], [3, 3, 9]]
          x = rand({2, 8}, 16)
          w = rand({8}, 17)

          # Each case gets f (floats) and i (integers) for one backend.
          cases = [
            {fn f, _ -> EMLX.Fast.rms_norm(f.(x), f.(w), 1.0e-5) end, 1.0e-5},
            {fn f, _ -> EMLX.Fast.layer_norm(f.(x), f.(w), f.(w), 1.0e-5) end, 1.0e-5},
            {fn f, _ -> EMLX.Fast.layer_norm(f.(x), f.(w), 1.0e-5) end, 1.0e-5},
            {fn f, _ -> EMLX.Fast.rope(f.(a), 8, true, 500.0, 1.0, 3) end, 1.0e-4},
            {fn f, i -> EMLX.Fast.rope_with_positions(f.(a), i.(ids), 8, true, 500.0, 1.0) end, 1.0e-4},
            {fn f, i -> EMLX.Fast.rope_with_freqs(f.(a), i.(ids), 8, false, 1.0, f.([1.0, 2.0, 4.0, 8.0])) end, 1.0e-4},
            {fn f, _ -> EMLX.Fast.scaled_dot_product_attention(f.(q), f.(k), f.(v), 0.5) end, 1.0e-5},
            {fn f, _ -> EMLX.Fast.scaled_dot_product_attention_causal(f.(q), f.(k), f.(v), 0.5) end, 1.0e-5},
            {fn f, i ->
               EMLX.Fast.scaled_dot_product_attention_causal_key_masked(f.(q), f.(k), f.(v), 0.5, i.([[1, 0, 1]]))
             end, 1.0e-5},
            {fn f, i -> EMLX.Fast.scaled_dot_product_attention(f.(q), f.(k), f.(v), 0.5, i.([[[[1, 0, 1]]]])) end,
             1.0e-5},
            {fn f, _ ->
               EMLX.Fast.scaled_dot_product_attention(f.(q), f.(k), f.(v), 0.5, f.([[[[0.0, -1.0, 2.0]]]]))
             end, 1.0e-5},
            {fn f, _ -> EMLX.Fast.swiglu(f.(x), f.(x)) end, 1.0e-6}
          ]

          emlx = {&e/1, &ints(&1, EMLX.TestDevice.backend())}
          binary = {&t/1, &ints(&1, Nx.BinaryBackend)}

          for {fun, tol} <- cases do
            fused = fun.(elem(emlx, 0), elem(emlx, 1))
            assert %EMLX.Backend{} = fused.data
            assert_close(l(fused), l(fun.(elem(binary, 0), elem(binary, 1))), tol)
          end
        end
      end
    end
  end
end
