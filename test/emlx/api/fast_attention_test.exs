defmodule EMLX.API.FastAttentionTest do
  # The attention ops against softmax(q·kᵀ·scale)·v computed in plain
  # Elixir (EMLX.FusedOracle.attention/5), and fast_swiglu/2 against its
  # formula.
  use ExUnit.Case, async: true
  import EMLX.FusedOracle

  @tol 1.0e-5

  defp qkv(b, n_q, n_kv, t_q, t_kv, d, seed) do
    {rand({b, n_q, t_q, d}, seed), rand({b, n_kv, t_kv, d}, seed + 1), rand({b, n_kv, t_kv, d}, seed + 2)}
  end

  describe "fast_sdpa/4" do
    test "matches the softmax formula, including grouped-query heads" do
      for {n_q, n_kv} <- [{2, 2}, {4, 2}, {3, 1}] do
        {q, k, v} = qkv(2, n_q, n_kv, 3, 5, 4, 40 + n_q)
        out = EMLX.fast_sdpa(tensor(q), tensor(k), tensor(v), 0.5) |> to_list()
        assert_close(out, attention_bntd(q, k, v, 0.5), @tol)
      end
    end

    test "hand-computed: equal scores average the values" do
      q = [[[[1.0, 0.0]]]]
      k = [[[[0.0, 1.0], [0.0, 2.0]]]]
      v = [[[[2.0, 4.0], [6.0, 8.0]]]]
      out = EMLX.fast_sdpa(tensor(q), tensor(k), tensor(v), 1.0) |> to_list()
      assert_close(out, [[[[4.0, 6.0]]]])
    end

    test "non-contiguous inputs ({B, T, N, D} data transposed to {B, N, T, D})" do
      {q, k, v} = qkv(1, 2, 2, 3, 4, 4, 50)
      view = fn x -> x |> swap12() |> tensor() |> EMLX.transpose([0, 2, 1, 3]) end
      out = EMLX.fast_sdpa(view.(q), view.(k), view.(v), 0.3) |> to_list()
      assert_close(out, attention_bntd(q, k, v, 0.3), @tol)
    end

    test "bfloat16 stays bfloat16" do
      {q, k, v} = qkv(1, 2, 1, 2, 3, 8, 55)
      out = EMLX.fast_sdpa(tensor(q, :bfloat16), tensor(k, :bfloat16), tensor(v, :bfloat16), 0.25)
      assert EMLX.scalar_type(out) == :bfloat16
      assert_close(to_list(out), attention_bntd(q, k, v, 0.25), 3.0e-2)
    end
  end

  test "no heads at all gives an empty result" do
    x = EMLX.full(0.5, {1, 0, 2, 4}, :float32, EMLX.TestDevice.device())
    out = EMLX.fast_sdpa(x, x, x, 1.0)
    assert {EMLX.shape(out), EMLX.to_blob(out)} == {{1, 0, 2, 4}, <<>>}
  end

  describe "fast_sdpa_causal/4" do
    test "T_q = T_kv: query i sees keys 0..i" do
      {q, k, v} = qkv(2, 2, 1, 4, 4, 4, 60)
      out = EMLX.fast_sdpa_causal(tensor(q), tensor(k), tensor(v), 0.5) |> to_list()
      assert_close(out, attention_bntd(q, k, v, 0.5, fn _b, i, j -> j <= i end), @tol)
    end

    test "T_q < T_kv: the last query is aligned with the last key" do
      {q, k, v} = qkv(1, 2, 2, 2, 5, 4, 65)
      out = EMLX.fast_sdpa_causal(tensor(q), tensor(k), tensor(v), 0.5) |> to_list()
      assert_close(out, attention_bntd(q, k, v, 0.5, fn _b, i, j -> j <= i + 3 end), @tol)
    end
  end

  describe "fast_sdpa_masked/5" do
    test "a boolean mask keeps the true entries" do
      {q, k, v} = qkv(2, 2, 2, 2, 3, 4, 70)
      keep = [[[[true, false, true], [false, true, true]]], [[[true, true, true], [true, false, false]]]]
      out = EMLX.fast_sdpa_masked(tensor(q), tensor(k), tensor(v), tensor(keep, :bool), 0.5) |> to_list()
      visible = fn b, i, j -> keep |> Enum.at(b) |> hd() |> Enum.at(i) |> Enum.at(j) end
      assert_close(out, attention_bntd(q, k, v, 0.5, visible), @tol)
    end

    test "a float mask is added to the scores" do
      {q, k, v} = qkv(1, 1, 1, 1, 3, 2, 75)
      bias = [0.0, 1.0, -2.0]
      out = EMLX.fast_sdpa_masked(tensor(q), tensor(k), tensor(v), tensor([[[bias]]]), 1.0) |> to_list()
      [[[qi]]] = q
      [[kh]] = k
      [[vh]] = v
      p = softmax(Enum.zip_with(Enum.map(kh, &dot(qi, &1)), bias, &+/2))
      assert_close(out, [[[Enum.map(transpose(vh), &dot(p, &1))]]], @tol)
    end
  end

  describe "fast_sdpa_causal_key_masked/6" do
    test "causal and key mask together (prefill, kv_offset 0)" do
      {q, k, v} = qkv(2, 2, 1, 4, 4, 4, 80)
      key_mask = [[0, 1, 1, 1], [1, 1, 1, 1]]
      out = EMLX.fast_sdpa_causal_key_masked(tensor(q), tensor(k), tensor(v), 0.5, tensor(key_mask, :int32), 0)
      visible = fn b, i, j -> j <= i and Enum.at(Enum.at(key_mask, b), j) == 1 end
      expected = attention_bntd(q, k, v, 0.5, visible)
      assert_close(to_list(out), expected, @tol)
      # Query 0 of row 0 sees no key at all: its output is zeros, not NaN.
      assert out |> to_list() |> hd() |> hd() |> hd() == [0.0, 0.0, 0.0, 0.0]
    end

    test "one decoding query (kv_offset T_kv - 1) with a boolean mask" do
      {q, k, v} = qkv(2, 1, 1, 1, 5, 4, 85)
      key_mask = [[true, true, false, true, true], [false, false, true, true, true]]
      out = EMLX.fast_sdpa_causal_key_masked(tensor(q), tensor(k), tensor(v), 0.5, tensor(key_mask, :bool), 4)
      visible = fn b, _i, j -> Enum.at(Enum.at(key_mask, b), j) end
      assert_close(to_list(out), attention_bntd(q, k, v, 0.5, visible), @tol)
    end

    test "an all-ones mask is plain causal attention" do
      {q, k, v} = qkv(1, 2, 2, 3, 3, 4, 90)
      ones = tensor([[1, 1, 1]], :int32)
      a = EMLX.fast_sdpa_causal_key_masked(tensor(q), tensor(k), tensor(v), 0.5, ones, 0) |> to_list()
      b = EMLX.fast_sdpa_causal(tensor(q), tensor(k), tensor(v), 0.5) |> to_list()
      assert_close(a, b, 1.0e-6)
    end
  end

  describe "fast_swiglu/2" do
    test "silu(gate) * up" do
      gate = rand({3, 5}, 95)
      up = rand({3, 5}, 96)
      silu = fn x -> x / (1 + :math.exp(-x)) end
      out = EMLX.fast_swiglu(tensor(gate), tensor(up)) |> to_list()
      assert_close(out, zip_leaves(gate, up, &(silu.(&1) * &2)), @tol)
    end

    test "hand-computed: silu(0) = 0 and large gates pass up through" do
      out = EMLX.fast_swiglu(tensor([0.0, 30.0]), tensor([5.0, 2.0])) |> to_list()
      assert_close(out, [0.0, 60.0])
    end
  end
end
