defmodule EMLX.API.KvCacheTest do
  # kv_cache_attention/7, kv_cache_attention_masked/8 and
  # kv_cache_sdpa_update/7: the cache update checked element by element,
  # the attention against the plain-Elixir softmax formula over the valid
  # keys.
  use ExUnit.Case, async: true
  import EMLX.FusedOracle

  @tol 1.0e-5

  # Writes `new` (a {B, T_new, ...} list) into `cache` at `offset` along axis 1.
  defp write(cache, new, offset) do
    Enum.zip_with(cache, new, fn c, n ->
      Enum.take(c, offset) ++ n ++ Enum.drop(c, offset + length(n))
    end)
  end

  defp prefix(cache, len), do: Enum.map(cache, &Enum.take(&1, len))

  # Case data in {B, T, N, D}: caches of T_max = 6 filled with noise.
  defp case_data(t_new, n_q, seed) do
    %{
      q: rand({2, t_new, n_q, 4}, seed),
      k: rand({2, t_new, 1, 4}, seed + 1),
      v: rand({2, t_new, 1, 4}, seed + 2),
      kc: rand({2, 6, 1, 4}, seed + 3),
      vc: rand({2, 6, 1, 4}, seed + 4)
    }
  end

  defp run_bthd(d, offset, mask \\ nil) do
    args = [tensor(d.q), tensor(d.k), tensor(d.v), tensor(d.kc), tensor(d.vc), offset, 0.5]
    if mask, do: apply(EMLX, :kv_cache_attention_masked, args ++ [mask]), else: apply(EMLX, :kv_cache_attention, args)
  end

  describe "kv_cache_attention/7 ({B, T, N, D})" do
    for {label, t_new, offset} <- [{"prefill at 0", 3, 0}, {"chunk at 2", 2, 2}, {"one decoding step", 1, 4}] do
      test "#{label}: caches updated in place of the new positions, causal attention over the valid ones" do
        t_new = unquote(t_new)
        offset = unquote(offset)
        d = case_data(t_new, 2, 100 + offset)
        {out, k_upd, v_upd} = run_bthd(d, offset)

        k_expected = write(d.kc, d.k, offset)
        v_expected = write(d.vc, d.v, offset)
        assert to_list(k_upd) == k_expected
        assert to_list(v_upd) == v_expected

        valid = offset + t_new
        keys = k_expected |> prefix(valid) |> swap12()
        values = v_expected |> prefix(valid) |> swap12()
        expected = attention_bntd(swap12(d.q), keys, values, 0.5, fn _b, i, j -> j <= i + valid - t_new end)
        assert_close(to_list(out), swap12(expected), @tol)
      end
    end

    test "a decode step after a prefill reads the prefill's keys" do
      d = case_data(3, 1, 120)
      {_out, k1, v1} = run_bthd(d, 0)
      step = case_data(1, 1, 130)
      {out, k2, _v2} = EMLX.kv_cache_attention(tensor(step.q), tensor(step.k), tensor(step.v), k1, v1, 3, 0.5)

      keys = write(write(d.kc, d.k, 0), step.k, 3)
      assert to_list(k2) == keys
      values = write(write(d.vc, d.v, 0), step.v, 3)
      expected = attention_bntd(swap12(step.q), swap12(prefix(keys, 4)), swap12(prefix(values, 4)), 0.5)
      assert_close(to_list(out), swap12(expected), @tol)
    end
  end

  describe "kv_cache_attention_masked/8" do
    test "padding keys are skipped; a query that sees none gets zeros" do
      d = case_data(3, 2, 140)
      key_mask = [[0, 1, 1], [1, 1, 1]]
      {out, k_upd, _} = run_bthd(d, 0, tensor(key_mask, :int32))
      assert to_list(k_upd) == write(d.kc, d.k, 0)

      visible = fn b, i, j -> j <= i and Enum.at(Enum.at(key_mask, b), j) == 1 end
      keys = write(d.kc, d.k, 0) |> prefix(3) |> swap12()
      values = write(d.vc, d.v, 0) |> prefix(3) |> swap12()
      expected = attention_bntd(swap12(d.q), keys, values, 0.5, visible) |> swap12()
      assert_close(to_list(out), expected, @tol)
      # Row 0, query 0: only key 0 is causally visible, and it is padding.
      assert out |> to_list() |> hd() |> hd() == [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    end

    test "a mask over the whole cache is cut to the valid positions" do
      d = case_data(1, 1, 150)
      whole = [[1, 0, 1, 1, 0, 0], [1, 1, 1, 0, 1, 0]]
      short = Enum.map(whole, &Enum.take(&1, 4))
      {a, _, _} = run_bthd(d, 3, tensor(whole, :bool))
      {b, _, _} = run_bthd(d, 3, tensor(short, :bool))
      assert_close(to_list(a), to_list(b), 0.0)

      visible = fn b, _i, j -> Enum.at(Enum.at(short, b), j) == 1 end
      keys = write(d.kc, d.k, 3) |> prefix(4) |> swap12()
      values = write(d.vc, d.v, 3) |> prefix(4) |> swap12()
      assert_close(to_list(a), swap12(attention_bntd(swap12(d.q), keys, values, 0.5, visible)), @tol)
    end
  end

  describe "kv_cache_sdpa_update/7 ({B, N, T, D})" do
    test "updates along axis 2 and attends causally" do
      q = rand({1, 4, 2, 4}, 160)
      k = rand({1, 2, 2, 4}, 161)
      v = rand({1, 2, 2, 4}, 162)
      kc = rand({1, 2, 5, 4}, 163)
      vc = rand({1, 2, 5, 4}, 164)
      {out, k_upd, v_upd} = EMLX.kv_cache_sdpa_update(tensor(q), tensor(k), tensor(v), tensor(kc), tensor(vc), 1, 0.5)

      along2 = fn cache, new -> Enum.zip_with(cache, new, &write(&1, &2, 1)) end
      assert to_list(k_upd) == along2.(kc, k)
      assert to_list(v_upd) == along2.(vc, v)

      keys = Enum.map(along2.(kc, k), &prefix(&1, 3))
      values = Enum.map(along2.(vc, v), &prefix(&1, 3))
      assert_close(to_list(out), attention_bntd(q, keys, values, 0.5, fn _, i, j -> j <= i + 1 end), @tol)
    end

    test "agrees with kv_cache_attention/7 on transposed data" do
      d = case_data(2, 2, 170)
      {a, ka, _} = run_bthd(d, 1)
      t = fn x -> tensor(swap12(x)) end
      {b, kb, _} = EMLX.kv_cache_sdpa_update(t.(d.q), t.(d.k), t.(d.v), t.(d.kc), t.(d.vc), 1, 0.5)
      assert_close(to_list(b), swap12(to_list(a)), 1.0e-6)
      assert to_list(kb) == swap12(to_list(ka))
    end
  end

  test "the caches keep their type; new keys are converted to it" do
    q = tensor(rand({1, 1, 1, 4}, 180))
    cache = tensor(rand({1, 3, 1, 4}, 181), :bfloat16)
    {_out, k_upd, v_upd} = EMLX.kv_cache_attention(q, q, q, cache, cache, 0, 0.5)
    assert EMLX.scalar_type(k_upd) == :bfloat16
    assert EMLX.scalar_type(v_upd) == :bfloat16
  end

  describe "causal_kv_attention/7 (the original EMLX's options form)" do
    test "without a key mask: the cache step and causal attention over the valid keys" do
      d = case_data(2, 2, 190)

      {out, k_upd, v_upd} =
        EMLX.causal_kv_attention(tensor(d.q), tensor(d.k), tensor(d.v), tensor(d.kc), tensor(d.vc), 2, scale: 0.5)

      assert to_list(k_upd) == write(d.kc, d.k, 2)
      assert to_list(v_upd) == write(d.vc, d.v, 2)
      keys = write(d.kc, d.k, 2) |> prefix(4) |> swap12()
      values = write(d.vc, d.v, 2) |> prefix(4) |> swap12()
      expected = attention_bntd(swap12(d.q), keys, values, 0.5, fn _b, i, j -> j <= i + 2 end)
      assert_close(to_list(out), swap12(expected), @tol)
    end

    test "with :key_mask: padded keys are skipped" do
      d = case_data(1, 1, 200)
      mask = [[1, 0, 1, 1], [0, 1, 1, 1]]

      {out, _, _} =
        EMLX.causal_kv_attention(tensor(d.q), tensor(d.k), tensor(d.v), tensor(d.kc), tensor(d.vc), 3,
          scale: 0.5,
          key_mask: tensor(mask, :int32)
        )

      visible = fn b, _i, j -> Enum.at(Enum.at(mask, b), j) == 1 end
      keys = write(d.kc, d.k, 3) |> prefix(4) |> swap12()
      values = write(d.vc, d.v, 3) |> prefix(4) |> swap12()
      assert_close(to_list(out), swap12(attention_bntd(swap12(d.q), keys, values, 0.5, visible)), @tol)
    end

    test "bad options raise ArgumentError" do
      d = case_data(1, 1, 210)
      args = [tensor(d.q), tensor(d.k), tensor(d.v), tensor(d.kc), tensor(d.vc), 0]
      assert_raise ArgumentError, ~r/:scale must be a number/, fn -> apply(EMLX, :causal_kv_attention, args ++ [[]]) end

      assert_raise ArgumentError, ~r/unknown keys/, fn ->
        apply(EMLX, :causal_kv_attention, args ++ [[scale: 1.0, mask: 1]])
      end

      assert_raise ArgumentError, ~r/non-negative integer offset/, fn ->
        EMLX.causal_kv_attention(tensor(d.q), tensor(d.k), tensor(d.v), tensor(d.kc), tensor(d.vc), -1, scale: 1.0)
      end
    end
  end
end
