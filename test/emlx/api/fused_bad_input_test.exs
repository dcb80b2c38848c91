defmodule EMLX.API.FusedBadInputTest do
  # Bad arguments to the fused, quantization and sharing functions: each
  # raises an ArgumentError that names the problem, and the VM lives on.
  use ExUnit.Case, async: true
  import EMLX.FusedOracle

  defp f32(shape), do: EMLX.ones(shape, :float32, EMLX.TestDevice.device())
  defp i32(shape), do: EMLX.ones(shape, :int32, EMLX.TestDevice.device())

  defp x, do: f32({2, 4})
  defp w4, do: f32({4})
  defp qkv, do: f32({1, 2, 3, 4})
  defp cache, do: f32({1, 5, 1, 4})
  defp new, do: f32({1, 2, 1, 4})
  defp q, do: f32({1, 2, 1, 4})
  defp packed, do: EMLX.quantize(f32({4, 64}), 64, 4)
  defp wq, do: elem(packed(), 0)
  defp s, do: elem(packed(), 1)
  defp b, do: elem(packed(), 2)

  # {description, call, message pattern}: one test each.
  @cases [
    {"rms_norm weight of the wrong size", quote(do: EMLX.fast_rms_norm(x(), f32({3}), 1.0e-5)),
     "weight must have shape \\{4\\}"},
    {"rms_norm 2-D weight", quote(do: EMLX.fast_rms_norm(x(), f32({1, 4}), 1.0e-5)), "weight must have shape"},
    {"rms_norm scalar x", quote(do: EMLX.fast_rms_norm(f32({}), w4(), 1.0e-5)), "at least one axis"},
    {"rms_norm integer input", quote(do: EMLX.fast_rms_norm(i32({2, 4}), i32({4}), 1.0e-5)), "unsupported type"},
    {"rms_norm eps not a number", quote(do: EMLX.fast_rms_norm(x(), w4(), "small")), "argument 3 must be a number"},
    {"rms_norm weight not a tensor", quote(do: EMLX.fast_rms_norm(x(), [1, 2], 1.0e-5)), "argument 2 must be a tensor"},
    {"layer_norm bias of the wrong size", quote(do: EMLX.fast_layer_norm(x(), w4(), f32({5}), 1.0e-5)),
     "bias must have shape \\{4\\}"},
    {"layer_norm_no_bias weight of the wrong size", quote(do: EMLX.fast_layer_norm_no_bias(x(), f32({2}), 1.0e-5)),
     "weight must have shape"},
    {"rope odd dims", quote(do: EMLX.fast_rope(f32({1, 2, 4}), 3, false, 1.0e4, 1.0, 0)), "dims must be even"},
    {"rope dims beyond D", quote(do: EMLX.fast_rope(f32({1, 2, 4}), 6, false, 1.0e4, 1.0, 0)), "dims must not exceed"},
    {"rope rank 2", quote(do: EMLX.fast_rope(f32({2, 4}), 4, false, 1.0e4, 1.0, 0)), "at least 3 dimensions"},
    {"rope integer input", quote(do: EMLX.fast_rope(i32({1, 2, 4}), 4, false, 1.0e4, 1.0, 0)), "floating type"},
    {"rope offset beyond 32 bits", quote(do: EMLX.fast_rope(f32({1, 2, 4}), 4, false, 1.0e4, 1.0, 2 ** 40)),
     "fits in 32 bits"},
    {"rope_ids offset per wrong batch", quote(do: EMLX.fast_rope_ids(f32({2, 3, 4}), 4, false, 1.0e4, 1.0, i32({3}))),
     "offset must be a scalar or have shape \\{2\\}"},
    {"rope_ids float offset", quote(do: EMLX.fast_rope_ids(f32({2, 3, 4}), 4, false, 1.0e4, 1.0, f32({2}))),
     "offset must be an integer tensor"},
    {"rope_ids rank 5", quote(do: EMLX.fast_rope_ids(f32({1, 1, 1, 1, 4}), 4, false, 1.0e4, 1.0, i32({1}))),
     "\\{B, T, D\\} or \\{B, T, H, D\\}"},
    {"rope_ids zero dims", quote(do: EMLX.fast_rope_ids(f32({1, 2, 4}), 0, false, 1.0e4, 1.0, i32({1}))),
     "dims must be even, positive"},
    {"rope_positions ids of the wrong shape",
     quote(do: EMLX.fast_rope_positions(f32({1, 2, 1, 4}), 4, false, 1.0e4, 1.0, i32({1, 3}))),
     "position_ids must have shape \\{1, 2\\}"},
    {"rope_positions float ids",
     quote(do: EMLX.fast_rope_positions(f32({1, 2, 1, 4}), 4, false, 1.0e4, 1.0, f32({1, 2}))),
     "position_ids must be an integer"},
    {"rope_positions dims too large",
     quote(do: EMLX.fast_rope_positions(f32({1, 2, 1, 4}), 8, false, 1.0e4, 1.0, i32({1, 2}))),
     "at most the last axis"},
    {"rope_with_freqs wrong freqs size",
     quote(do: EMLX.fast_rope_with_freqs(f32({1, 2, 4}), 4, false, 1.0, i32({1}), f32({4}))),
     "freqs must have shape \\{2\\}"},
    {"rope traditional not a boolean", quote(do: EMLX.fast_rope(f32({1, 2, 4}), 4, :yes, 1.0e4, 1.0, 0)),
     "argument 3 must be a boolean"},
    {"sdpa rank 3", quote(do: EMLX.fast_sdpa(f32({2, 3, 4}), f32({2, 3, 4}), f32({2, 3, 4}), 1.0)),
     "expected to be rank 4"},
    {"sdpa head dims differ", quote(do: EMLX.fast_sdpa(qkv(), f32({1, 2, 3, 5}), f32({1, 2, 3, 5}), 1.0)),
     "matching last dimension"},
    {"sdpa heads not a multiple",
     quote(do: EMLX.fast_sdpa(f32({1, 3, 2, 4}), f32({1, 2, 2, 4}), f32({1, 2, 2, 4}), 1.0)), "multiple of n_kv_heads"},
    {"sdpa batch mismatch", quote(do: EMLX.fast_sdpa(qkv(), f32({2, 2, 3, 4}), f32({2, 2, 3, 4}), 1.0)),
     "mismatching batch"},
    {"sdpa integer inputs", quote(do: EMLX.fast_sdpa(i32({1, 1, 1, 2}), i32({1, 1, 1, 2}), i32({1, 1, 1, 2}), 1.0)),
     "unsupported type"},
    {"sdpa_masked mask rank 5", quote(do: EMLX.fast_sdpa_masked(qkv(), qkv(), qkv(), f32({1, 1, 1, 3, 3}), 1.0)),
     "at most rank 4"},
    {"sdpa_masked mask not broadcastable", quote(do: EMLX.fast_sdpa_masked(qkv(), qkv(), qkv(), f32({2, 2}), 1.0)),
     "(?i)broadcast"},
    {"causal_key_masked key_mask wrong length",
     quote(do: EMLX.fast_sdpa_causal_key_masked(qkv(), qkv(), qkv(), 1.0, i32({1, 2}), 0)),
     "key_mask must have shape \\{1, 3\\}"},
    {"causal_key_masked q rank 3",
     quote(do: EMLX.fast_sdpa_causal_key_masked(f32({2, 3, 4}), qkv(), qkv(), 1.0, i32({1, 3}), 0)),
     "q must have rank 4"},
    {"swiglu shapes that do not broadcast", quote(do: EMLX.fast_swiglu(f32({2, 3}), f32({4}))), "(?i)broadcast"},
    {"kv offset past the cache", quote(do: EMLX.kv_cache_attention(q(), new(), new(), cache(), cache(), 4, 1.0)),
     "must fit in the cache's 5 positions"},
    {"kv negative offset", quote(do: EMLX.kv_cache_attention(q(), new(), new(), cache(), cache(), -1, 1.0)),
     "offset -1"},
    {"kv v_cache of another shape",
     quote(do: EMLX.kv_cache_attention(q(), new(), new(), cache(), f32({1, 6, 1, 4}), 0, 1.0)),
     "v_cache must have the shape of k_cache"},
    {"kv new_v of another shape",
     quote(do: EMLX.kv_cache_attention(q(), new(), f32({1, 1, 1, 4}), cache(), cache(), 0, 1.0)),
     "new_v must have the shape of new_k"},
    {"kv head dim mismatch",
     quote(do: EMLX.kv_cache_attention(q(), f32({1, 2, 1, 3}), f32({1, 2, 1, 3}), cache(), cache(), 0, 1.0)),
     "must agree on B"},
    {"kv q longer than the valid keys",
     quote(do: EMLX.kv_cache_attention(f32({1, 3, 1, 4}), new(), new(), cache(), cache(), 0, 1.0)),
     "only 2 keys are valid"},
    {"kv rank 3 q", quote(do: EMLX.kv_cache_sdpa_update(f32({1, 2, 4}), new(), new(), cache(), cache(), 0, 1.0)),
     "q must have rank 4 \\(\\{B, N, T, D\\}\\)"},
    {"kv masked key_mask wrong length",
     quote(do: EMLX.kv_cache_attention_masked(q(), new(), new(), cache(), cache(), 0, 1.0, i32({1, 3}))),
     "key_mask must have shape \\{1, 2\\}"},
    {"kv scale not a number", quote(do: EMLX.kv_cache_attention(q(), new(), new(), cache(), cache(), 0, nil)),
     "argument 7 must be a number"},
    {"quantize 0 bits", quote(do: EMLX.quantize(f32({2, 64}), 64, 0)), "bits must be 2, 3, 4, 5, 6 or 8, got 0"},
    {"quantize 7 bits", quote(do: EMLX.quantize(f32({2, 64}), 64, 7)), "bits must be"},
    {"quantize 16 bits", quote(do: EMLX.quantize(f32({2, 64}), 64, 16)), "bits must be"},
    {"quantize group of 16", quote(do: EMLX.quantize(f32({2, 64}), 16, 4)), "group_size must be 32, 64 or 128, got 16"},
    {"quantize group of 0", quote(do: EMLX.quantize(f32({2, 64}), 0, 4)), "group_size must be"},
    {"quantize last axis not a multiple", quote(do: EMLX.quantize(f32({2, 48}), 32, 4)), "multiple of group_size 32"},
    {"quantize rank 1", quote(do: EMLX.quantize(f32({64}), 64, 4)), "at least 2 axes"},
    {"quantize float64 (MLX quantizes 16- and 32-bit floats)",
     quote(do: EMLX.quantize(EMLX.ones({2, 64}, :float64, :cpu), 64, 4)),
     "float32, float16 or bfloat16 tensor, got float64"},
    {"sdpa q heads without k/v heads",
     quote(do: EMLX.fast_sdpa(f32({1, 2, 2, 4}), f32({1, 0, 2, 4}), f32({1, 0, 2, 4}), 1.0)),
     "k and v have no heads but q has 2"},
    {"kv attention without kv heads",
     quote(
       do:
         EMLX.kv_cache_attention(
           q(),
           f32({1, 2, 0, 4}),
           f32({1, 2, 0, 4}),
           f32({1, 5, 0, 4}),
           f32({1, 5, 0, 4}),
           0,
           1.0
         )
     ), "no heads"},
    {"dequantize empty w with scales that do not fit",
     quote(
       do: EMLX.dequantize(EMLX.full(0, {0, 8}, :uint32, EMLX.TestDevice.device()), f32({0, 2}), f32({0, 2}), 64, 4)
     ), "do not fit w"},
    {"quantize integers", quote(do: EMLX.quantize(i32({2, 64}), 64, 4)),
     "float32, float16 or bfloat16 tensor, got int32"},
    {"quantize bits not an integer", quote(do: EMLX.quantize(f32({2, 64}), 64, 4.0)), "argument 3 must be an integer"},
    {"dequantize with 0 bits", quote(do: EMLX.dequantize(wq(), s(), b(), 64, 0)), "bits must be"},
    {"dequantize float weights", quote(do: EMLX.dequantize(f32({4, 8}), s(), b(), 64, 4)), "packed :uint32"},
    {"dequantize rank-0 weights",
     quote(do: EMLX.dequantize(EMLX.scalar_tensor(1, :uint32, EMLX.TestDevice.device()), s(), b(), 64, 4)),
     "at least 2 axes"},
    {"dequantize scales of another rank", quote(do: EMLX.dequantize(wq(), f32({4}), f32({4}), 64, 4)),
     "scales must have the rank of w"},
    {"dequantize biases of another shape", quote(do: EMLX.dequantize(wq(), s(), f32({4, 2}), 64, 4)),
     "biases must have the shape of scales"},
    {"dequantize mismatched group size", quote(do: EMLX.dequantize(wq(), s(), b(), 32, 4)), "group_size"},
    {"quantized_matmul with 0 bits", quote(do: EMLX.quantized_matmul(f32({1, 64}), wq(), s(), b(), true, 64, 0)),
     "bits must be"},
    {"quantized_matmul with group 0", quote(do: EMLX.quantized_matmul(f32({1, 64}), wq(), s(), b(), true, 0, 4)),
     "group_size must be"},
    {"quantized_matmul inner size mismatch", quote(do: EMLX.quantized_matmul(f32({1, 32}), wq(), s(), b())),
     "does not match"},
    {"quantized_matmul integer x", quote(do: EMLX.quantized_matmul(i32({1, 64}), wq(), s(), b())),
     "x must be a floating-point"},
    {"quantized_matmul scalar x", quote(do: EMLX.quantized_matmul(f32({}), wq(), s(), b())),
     "x must have at least one axis"},
    {"quantized_matmul integer biases", quote(do: EMLX.quantized_matmul(f32({1, 64}), wq(), s(), i32({4, 1}))),
     "floating-point"},
    {"tensor_to_shm permissions too large", quote(do: EMLX.tensor_to_shm(x(), 0o1777)),
     "permissions must be Unix mode bits"},
    {"tensor_to_shm permissions not an integer", quote(do: EMLX.tensor_to_shm(x(), "rw")), "permissions must be"},
    {"tensor_to_shm not a tensor", quote(do: EMLX.tensor_to_shm(:nope, 0o600)), "expected an EMLX tensor"},
    {"tensor_data_ptr not a tensor", quote(do: EMLX.tensor_data_ptr([1, 2])), "expected an EMLX tensor"},
    {"tensor_data_ptr fake tensor", quote(do: EMLX.tensor_data_ptr({:cpu, make_ref()})), "expected an EMLX tensor"},
    {"shm_unlink without the slash", quote(do: EMLX.shm_unlink("emlx")), "invalid shared-memory name"},
    {"shm_unlink with a path", quote(do: EMLX.shm_unlink("/a/b")), "invalid shared-memory name"},
    {"shm_unlink too long", quote(do: EMLX.shm_unlink("/" <> String.duplicate("x", 40))), "invalid shared-memory name"},
    {"shm_unlink with NUL", quote(do: EMLX.shm_unlink("/a\0b")), "invalid shared-memory name"},
    {"shm_unlink just a slash", quote(do: EMLX.shm_unlink("/")), "invalid shared-memory name"},
    {"shm_unlink not a string", quote(do: EMLX.shm_unlink(:name)), "must be a string"}
  ]

  for {what, call, pattern} <- @cases do
    test what do
      error = assert_raise ArgumentError, fn -> unquote(call) end
      assert error.message =~ Regex.compile!(unquote(pattern))
    end
  end

  test "a deallocated tensor is refused by the fused ops and the sharing functions" do
    t = tensor(rand({2, 4}, 1))
    :ok = EMLX.deallocate(t)
    w = tensor([1.0, 1.0, 1.0, 1.0])
    assert_raise ArgumentError, ~r/deallocated/, fn -> EMLX.fast_rms_norm(t, w, 1.0e-5) end
    assert_raise ArgumentError, ~r/deallocated/, fn -> EMLX.tensor_data_ptr(t) end
    assert_raise ArgumentError, ~r/deallocated/, fn -> EMLX.tensor_to_shm(t, 0o600) end
    assert_raise ArgumentError, ~r/deallocated/, fn -> EMLX.quantize(t, 32, 4) end
  end
end
