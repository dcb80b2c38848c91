if Code.ensure_loaded?(Nx) do
  defmodule EMLX.API.FastKvTest.Loop do
    @moduledoc false
    # A decoding loop in defn for EMLX.API.FastKvTest.
    import Nx.Defn

    defn decode(qs, ks, vs, k_cache, v_cache, key_mask) do
      steps = elem(Nx.shape(qs), 0)
      # Made from an input, so it lives on the inputs' backend: Nx's
      # Evaluator runs put_slice on the backend of the tensor written into.
      outs = Nx.transpose(qs * 0.0, axes: [0, 1, 3, 2, 4])

      {outs, k_cache, v_cache, _, _, _, _, _} =
        while {outs, k_cache, v_cache, qs, ks, vs, key_mask, i = 0}, i < steps do
          {out, k_cache, v_cache} =
            EMLX.Fast.kv_cache_sdpa_update(qs[i], ks[i], vs[i], k_cache, v_cache, i + 3, key_mask, 0.5)

          {Nx.put_slice(outs, [i, 0, 0, 0, 0], Nx.new_axis(out, 0)), k_cache, v_cache, qs, ks, vs, key_mask, i + 1}
        end

      {outs, k_cache, v_cache}
    end
  end
end

defmodule EMLX.API.FastKvTest do
  # The KV-cache decoding step with a tensor offset and a key mask:
  # EMLX.kv_cache_sdpa_dynamic/8 and EMLX.Fast.kv_cache_sdpa_update/8. The
  # cache writes are checked element by element against list surgery, the
  # attention against the plain-Elixir softmax formula (query i, at position
  # offset + i, sees cache position j when j <= offset + i and the mask
  # allows it).
  use ExUnit.Case, async: true
  import EMLX.FusedOracle

  @tol 1.0e-5
  @t_max 6

  defp write(cache, new, offset) do
    Enum.zip_with(cache, new, fn c, n -> Enum.take(c, offset) ++ n ++ Enum.drop(c, offset + length(n)) end)
  end

  # {B, T, N, D} data: caches of T_max = 6, B = 2, N_kv = 1, D = 4.
  defp case_data(t_new, n_q, seed) do
    %{
      q: rand({2, t_new, n_q, 4}, seed),
      k: rand({2, t_new, 1, 4}, seed + 1),
      v: rand({2, t_new, 1, 4}, seed + 2),
      kc: rand({2, @t_max, 1, 4}, seed + 3),
      vc: rand({2, @t_max, 1, 4}, seed + 4)
    }
  end

  defp expected(d, offset, mask) do
    keys = write(d.kc, d.k, offset)
    values = write(d.vc, d.v, offset)

    visible = fn b, i, j ->
      j <= offset + i and (mask == nil or Enum.at(Enum.at(mask, b), j) == 1)
    end

    {attention_bntd(swap12(d.q), swap12(keys), swap12(values), 0.5, visible), keys, values}
  end

  defp offset_tensor(n), do: EMLX.from_blob(<<n::signed-32-native>>, {}, :int32, :cpu)

  # EMLX.kv_cache_sdpa_dynamic/8 on the case data, caches of `cache_type`.
  defp dynamic(d, offset, mask, cache_type \\ :float32) do
    [q, k, v] = Enum.map([d.q, d.k, d.v], &tensor/1)
    [kc, vc] = Enum.map([d.kc, d.vc], &tensor(&1, cache_type))
    EMLX.kv_cache_sdpa_dynamic(q, k, v, kc, vc, offset, mask, 0.5)
  end

  describe "EMLX.kv_cache_sdpa_dynamic/8" do
    for {label, t_new, offset, n_q} <- [{"prefill at 0", 3, 0, 2}, {"chunk at 2", 2, 2, 1}, {"decoding at 4", 1, 4, 2}] do
      test "#{label}: caches written, causal attention over the filled positions the mask allows" do
        {t_new, offset, n_q} = {unquote(t_new), unquote(offset), unquote(n_q)}
        d = case_data(t_new, n_q, 10 * offset + t_new)
        mask = [[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]]

        {out, k, v} = dynamic(d, offset_tensor(offset), tensor(mask, :int32))

        {attn, keys, values} = expected(d, offset, mask)
        assert to_list(k) == keys
        assert to_list(v) == values
        assert_close(to_list(out), attn, @tol)
      end
    end

    test "without a key mask every filled position is seen; an offset past the end is clamped" do
      d = case_data(2, 1, 70)

      {out, _, _} = dynamic(d, offset_tensor(1), nil)

      {attn, _, _} = expected(d, 1, nil)
      assert_close(to_list(out), attn, @tol)

      {_, k, _} = dynamic(d, offset_tensor(40), nil)

      assert to_list(k) == write(d.kc, d.k, @t_max - 2)
    end

    test "a query that sees no key gets zeros; caches keep their type" do
      d = case_data(1, 1, 80)
      mask = [[0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]]

      {out, k, _} = dynamic(d, offset_tensor(3), tensor(mask, :bool), :bfloat16)

      assert EMLX.scalar_type(k) == :bfloat16
      assert out |> to_list() |> hd() == [[[0.0, 0.0, 0.0, 0.0]]]
    end

    test "bad shapes raise ArgumentError" do
      d = case_data(1, 1, 90)

      assert_raise ArgumentError, ~r/key_mask must have shape \{2, 6\}/, fn ->
        dynamic(d, offset_tensor(0), tensor([[1]], :int32))
      end

      assert_raise ArgumentError, ~r/offset must be an integer tensor/, fn ->
        dynamic(d, tensor(1.0), nil)
      end
    end
  end

  if Code.ensure_loaded?(Nx) do
    describe "EMLX.Fast.kv_cache_sdpa_update/8" do
      defp nx(list, backend), do: Nx.tensor(list, type: :f32, backend: backend)

      for backend <- [Nx.BinaryBackend, {EMLX.Backend, device: :cpu}] do
        test "eagerly and as a defn while loop on #{inspect(backend)}" do
          backend = unquote(Macro.escape(backend))
          d = case_data(3, 2, 100)
          mask = [[1, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1]]
          [q, k, v, kc, vc] = Enum.map([d.q, d.k, d.v, d.kc, d.vc], &nx(&1, backend))
          key_mask = Nx.tensor(mask, backend: backend)

          {out, k_upd, v_upd} = EMLX.Fast.kv_cache_sdpa_update(q, k, v, kc, vc, 0, key_mask, 0.5)
          {attn, keys, values} = expected(d, 0, mask)
          assert Nx.to_list(k_upd) == keys
          assert Nx.to_list(v_upd) == values
          assert_close(Nx.to_list(out), attn, @tol)

          # Three decoding steps in a while loop carrying the caches and the offset.
          steps = for s <- 0..2, do: case_data(1, 2, 200 + 10 * s)
          qs = steps |> Enum.map(&nx(&1.q, backend)) |> Nx.stack()
          ks = steps |> Enum.map(&nx(&1.k, backend)) |> Nx.stack()
          vs = steps |> Enum.map(&nx(&1.v, backend)) |> Nx.stack()
          {outs, _, _} = Nx.Defn.jit(&EMLX.API.FastKvTest.Loop.decode/6).(qs, ks, vs, k_upd, v_upd, key_mask)

          # The oracle: the same steps one by one from the prefilled caches.
          Enum.reduce(Enum.with_index(steps), {keys, values}, fn {step, s}, {kc, vc} ->
            {attn, kc, vc} = expected(%{step | kc: kc, vc: vc}, 3 + s, mask)
            assert_close(Nx.to_list(outs[s]), attn, @tol)
            {kc, vc}
          end)
        end
      end

      test "a nil key mask and a tensor offset; bad shapes raise ArgumentError" do
        d = case_data(2, 1, 300)
        [q, k, v, kc, vc] = Enum.map([d.q, d.k, d.v, d.kc, d.vc], &nx(&1, {EMLX.Backend, device: :cpu}))
        {out, _, _} = EMLX.Fast.kv_cache_sdpa_update(q, k, v, kc, vc, Nx.tensor([2]), nil, 0.5)
        {attn, _, _} = expected(d, 2, nil)
        assert_close(Nx.to_list(out), attn, @tol)

        assert_raise ArgumentError, ~r/key_mask must have shape \{2, 6\}/, fn ->
          EMLX.Fast.kv_cache_sdpa_update(q, k, v, kc, vc, 0, Nx.tensor([[1, 1]]), 0.5)
        end

        assert_raise ArgumentError, ~r/q and new_k need the same number of positions/, fn ->
          EMLX.Fast.kv_cache_sdpa_update(q[[.., 0..0]], k, v, kc, vc, 0, nil, 0.5)
        end
      end
    end
  end
end
