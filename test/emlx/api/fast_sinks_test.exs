defmodule EMLX.API.FastSinksTest do
  # Attention sinks: the native ops (EMLX.fast_sdpa*/5..7) and EMLX.Fast's
  # sinks: option against softmax over the keys plus one sink logit per
  # query head, computed in plain Elixir (EMLX.FusedOracle.attention/6); the
  # limits (a sink at -inf is no sink, a huge sink takes all the weight);
  # gradients through the formula against finite differences.
  use ExUnit.Case, async: true
  import EMLX.FusedOracle

  # The GPU computes float32 products in TF32 (EMLX.TestDevice.tf32/2).
  @tol EMLX.TestDevice.tf32(atol: 1.0e-5)[:atol]

  defp qkv(b, n_q, n_kv, t_q, t_kv, d, seed) do
    {rand({b, n_q, t_q, d}, seed), rand({b, n_kv, t_kv, d}, seed + 1), rand({b, n_kv, t_kv, d}, seed + 2)}
  end

  # Sink logits spread around the scores' range.
  defp sinks(n, seed), do: rand({n}, seed) |> Enum.map(&(&1 * 2.0))

  describe "native ops with sinks" do
    test "fast_sdpa/5, grouped heads included" do
      for {n_q, n_kv} <- [{2, 2}, {4, 2}, {3, 1}] do
        {q, k, v} = qkv(2, n_q, n_kv, 3, 5, 4, 10 + n_q)
        s = sinks(n_q, 20 + n_q)
        out = EMLX.fast_sdpa(tensor(q), tensor(k), tensor(v), 0.5, tensor(s)) |> to_list()
        assert_close(out, attention_bntd(q, k, v, 0.5, fn _, _, _ -> true end, s), @tol)
      end
    end

    test "fast_sdpa_causal/5" do
      {q, k, v} = qkv(1, 2, 1, 3, 5, 4, 30)
      s = sinks(2, 31)
      out = EMLX.fast_sdpa_causal(tensor(q), tensor(k), tensor(v), 0.5, tensor(s)) |> to_list()
      assert_close(out, attention_bntd(q, k, v, 0.5, fn _, i, j -> j <= i + 2 end, s), @tol)
    end

    test "fast_sdpa_masked/6 with a boolean and an additive mask" do
      {q, k, v} = qkv(1, 2, 2, 2, 3, 4, 40)
      s = sinks(2, 41)
      keep = [[[[true, false, true], [false, true, true]]]]
      out = EMLX.fast_sdpa_masked(tensor(q), tensor(k), tensor(v), tensor(keep, :bool), 0.5, tensor(s)) |> to_list()
      visible = fn _, i, j -> Enum.at(Enum.at(hd(hd(keep)), i), j) end
      assert_close(out, attention_bntd(q, k, v, 0.5, visible, s), @tol)

      # An additive mask of 0 / -inf is the same selection.
      additive = map_leaves(keep, &if(&1, do: 0.0, else: :neg_infinity))
      bias = EMLX.from_blob(for(x <- List.flatten(additive), into: <<>>, do: f32_bits(x)), {1, 1, 2, 3}, :float32, :cpu)
      out2 = EMLX.fast_sdpa_masked(tensor(q), tensor(k), tensor(v), bias, 0.5, tensor(s)) |> to_list()
      assert_close(out2, out, @tol)
    end

    test "fast_sdpa_causal_key_masked/7: padded keys skipped, a query that sees none gets zeros" do
      {q, k, v} = qkv(2, 2, 1, 3, 3, 4, 50)
      s = sinks(2, 51)
      key_mask = [[0, 1, 1], [1, 1, 1]]

      out =
        EMLX.fast_sdpa_causal_key_masked(tensor(q), tensor(k), tensor(v), 0.5, tensor(key_mask, :int32), 0, tensor(s))

      visible = fn b, i, j -> j <= i and Enum.at(Enum.at(key_mask, b), j) == 1 end
      assert_close(to_list(out), attention_bntd(q, k, v, 0.5, visible, s), @tol)
      assert out |> to_list() |> hd() |> hd() |> hd() == [0.0, 0.0, 0.0, 0.0]
    end

    test "limits: a sink at -inf changes nothing; a huge sink takes (almost) all the weight" do
      {q, k, v} = qkv(1, 2, 2, 2, 4, 4, 60)
      plain = EMLX.fast_sdpa(tensor(q), tensor(k), tensor(v), 0.5) |> to_list()
      none = EMLX.full(:neg_infinity, {2}, :float32, :cpu)
      assert_close(EMLX.fast_sdpa(tensor(q), tensor(k), tensor(v), 0.5, none) |> to_list(), plain, @tol)
      huge = EMLX.full(60.0, {2}, :float32, :cpu)
      out = EMLX.fast_sdpa(tensor(q), tensor(k), tensor(v), 0.5, huge) |> to_list()
      assert_close(out, map_leaves(out, fn _ -> 0.0 end), 1.0e-12)
    end

    test "float32 sinks with bfloat16 attention; bad sinks raise ArgumentError" do
      {q, k, v} = qkv(1, 2, 2, 2, 3, 8, 70)
      s = sinks(2, 71)
      out = EMLX.fast_sdpa(tensor(q, :bfloat16), tensor(k, :bfloat16), tensor(v, :bfloat16), 0.25, tensor(s))
      assert EMLX.scalar_type(out) == :bfloat16
      assert_close(to_list(out), attention_bntd(q, k, v, 0.25, fn _, _, _ -> true end, s), 3.0e-2)

      assert_raise ArgumentError, ~r/sinks must hold one logit per query head, shape \{2\}/, fn ->
        EMLX.fast_sdpa(tensor(q), tensor(k), tensor(v), 0.25, tensor([1.0, 2.0, 3.0]))
      end
    end
  end

  defp f32_bits(:neg_infinity), do: <<0xFF800000::32-native>>
  defp f32_bits(x), do: <<x::float-32-native>>

  if Code.ensure_loaded?(Nx) do
    describe "EMLX.Fast with sinks:" do
      defp nx(list, backend), do: Nx.tensor(list, type: :f32, backend: backend)

      for backend <- [Nx.BinaryBackend, {EMLX.Backend, device: :cpu}] do
        test "every attention variant on #{inspect(backend)} follows the formula" do
          backend = unquote(Macro.escape(backend))
          {q, k, v} = qkv(1, 4, 2, 3, 3, 4, 80)
          s = sinks(4, 81)
          [tq, tk, tv, ts] = Enum.map([q, k, v, s], &nx(&1, backend))
          opts = [sinks: ts]
          all = fn _, _, _ -> true end
          causal = fn _, i, j -> j <= i end

          assert_close(
            EMLX.Fast.scaled_dot_product_attention(tq, tk, tv, 0.5, opts) |> Nx.to_list(),
            attention_bntd(q, k, v, 0.5, all, s)
          )

          assert_close(
            EMLX.Fast.scaled_dot_product_attention_causal(tq, tk, tv, 0.5, opts) |> Nx.to_list(),
            attention_bntd(q, k, v, 0.5, causal, s)
          )

          mask = Nx.tensor([[[[1, 0, 1], [1, 1, 0], [0, 1, 1]]]], type: :u8, backend: backend)
          visible = fn _, i, j -> Enum.at(Enum.at([[1, 0, 1], [1, 1, 0], [0, 1, 1]], i), j) == 1 end
          masked = EMLX.Fast.scaled_dot_product_attention(tq, tk, tv, 0.5, mask, opts) |> Nx.to_list()
          assert_close(masked, attention_bntd(q, k, v, 0.5, visible, s))

          key_mask = Nx.tensor([[0, 1, 1]], backend: backend)
          km = EMLX.Fast.scaled_dot_product_attention_causal_key_masked(tq, tk, tv, 0.5, key_mask, opts) |> Nx.to_list()
          assert_close(km, attention_bntd(q, k, v, 0.5, fn _, i, j -> j <= i and j > 0 end, s))
        end
      end

      test "inside defn, and the gradient with respect to the sinks matches finite differences" do
        {q, k, v} = qkv(1, 2, 1, 2, 3, 4, 90)
        s = sinks(2, 91)
        [tq, tk, tv, ts] = Enum.map([q, k, v, s], &nx(&1, Nx.BinaryBackend))

        loss = fn sinks -> EMLX.Fast.scaled_dot_product_attention_causal(tq, tk, tv, 0.5, sinks: sinks) |> Nx.sum() end
        jitted = Nx.Defn.jit(loss).(ts) |> Nx.to_number()
        assert_in_delta jitted, loss.(ts) |> Nx.to_number(), 1.0e-6

        grad = Nx.Defn.grad(ts, loss) |> Nx.to_flat_list()
        h = 1.0e-3

        numeric =
          for i <- 0..1 do
            bump = fn d -> s |> List.update_at(i, &(&1 + d)) |> nx(Nx.BinaryBackend) end
            (Nx.to_number(loss.(bump.(h))) - Nx.to_number(loss.(bump.(-h)))) / (2 * h)
          end

        for {g, n} <- Enum.zip(grad, numeric), do: assert_in_delta(g, n, 1.0e-3)

        # All gradients on EMLX.Backend (through the formula, on MLX ops)
        # against Nx.BinaryBackend's.
        all = fn {q, k, v, sinks} ->
          EMLX.Fast.scaled_dot_product_attention_causal(q, k, v, 0.5, sinks: sinks) |> Nx.sum()
        end

        e = fn x -> Nx.backend_copy(x, {EMLX.Backend, device: :cpu}) end
        binary = Nx.Defn.grad({tq, tk, tv, ts}, all) |> Tuple.to_list()
        on_emlx = Nx.Defn.grad({e.(tq), e.(tk), e.(tv), e.(ts)}, all) |> Tuple.to_list()

        assert hd(Enum.reverse(binary))
               |> Nx.to_flat_list()
               |> Enum.zip(grad)
               |> Enum.all?(fn {a, b} -> abs(a - b) < 1.0e-6 end)

        for {a, b} <- Enum.zip(binary, on_emlx),
            {x, y} <- Enum.zip(Nx.to_flat_list(a), Nx.to_flat_list(b)),
            do: assert_in_delta(x, y, 1.0e-5)
      end

      test "bad options raise ArgumentError" do
        {q, k, v} = qkv(1, 2, 1, 2, 3, 4, 95)
        [tq, tk, tv] = Enum.map([q, k, v], &nx(&1, Nx.BinaryBackend))

        assert_raise ArgumentError, ~r/:sinks must hold one logit per query head, shape \{2\}/, fn ->
          EMLX.Fast.scaled_dot_product_attention(tq, tk, tv, 0.5, sinks: Nx.tensor([1.0]))
        end

        assert_raise ArgumentError, ~r/unknown keys \[:sink\]/, fn ->
          EMLX.Fast.scaled_dot_product_attention(tq, tk, tv, 0.5, sink: Nx.tensor([1.0, 2.0]))
        end
      end
    end
  end
end
