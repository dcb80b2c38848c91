defmodule EMLX.FoundationTest do
  # The first vertical slice: bytes in, lazy op, evaluation on the queue,
  # bytes out. Expected values are computed by hand.
  use ExUnit.Case, async: true

  defp blob(values, :float32), do: for(v <- values, into: <<>>, do: <<v::float-32-native>>)
  defp blob(values, :int64), do: for(v <- values, into: <<>>, do: <<v::signed-64-native>>)
  defp blob(values, :uint8), do: for(v <- values, into: <<>>, do: <<v::8>>)

  # bfloat16 is the upper half of a float32.
  defp blob(values, :bfloat16),
    do: for(v <- values, into: <<>>, do: binary_part(<<v::float-32-big>>, 0, 2) |> bf16_native())

  defp blob(values, :complex64),
    do: for({re, im} <- values, into: <<>>, do: <<re::float-32-native, im::float-32-native>>)

  defp bf16_native(<<hi, lo>>), do: if(little?(), do: <<lo, hi>>, else: <<hi, lo>>)
  defp little?, do: <<1::16-native>> == <<1, 0>>

  defp tensor(values, type), do: EMLX.from_blob(blob(values, type), {length(values)}, type, EMLX.TestDevice.device())

  for {type, a, b, sum} <- [
        {:float32, [1.5, -2.0, 0.25], [0.5, 4.0, 1.0], [2.0, 2.0, 1.25]},
        {:bfloat16, [1.5, -2.0, 0.25], [0.5, 4.0, 1.0], [2.0, 2.0, 1.25]},
        {:int64, [1, -9_000_000_000, 7], [2, 1, -7], [3, -8_999_999_999, 0]},
        {:uint8, [1, 200, 0], [2, 100, 255], [3, 44, 255]},
        {:complex64, [{1.0, 2.0}, {0.5, -1.0}], [{3.0, -2.0}, {0.5, 0.5}], [{4.0, 0.0}, {1.0, -0.5}]}
      ] do
    test "add + to_blob on #{type}" do
      a = tensor(unquote(Macro.escape(a)), unquote(type))
      b = tensor(unquote(Macro.escape(b)), unquote(type))
      out = EMLX.add(a, b)
      assert EMLX.scalar_type(out) == unquote(type)
      assert EMLX.to_blob(out) == blob(unquote(Macro.escape(sum)), unquote(type))
    end
  end

  test "uint8 addition wraps modulo 256" do
    assert EMLX.to_blob(EMLX.add(tensor([200], :uint8), tensor([100], :uint8))) == <<44>>
  end

  test "item of scalars of every kind" do
    assert EMLX.item(EMLX.scalar_tensor(-3, :int64, EMLX.TestDevice.device())) == -3
    assert EMLX.item(EMLX.scalar_tensor(18_446_744_073_709_551_615 - 1, :float64, :cpu)) == 1.8446744073709552e19
    assert EMLX.item(EMLX.scalar_tensor(250, :uint8, EMLX.TestDevice.device())) == 250
    assert EMLX.item(EMLX.scalar_tensor(0.5, :bfloat16, EMLX.TestDevice.device())) == 0.5
    assert EMLX.item(EMLX.scalar_tensor(1, :bool, EMLX.TestDevice.device())) == true
    assert EMLX.item(EMLX.scalar_tensor(:nan, :float32, EMLX.TestDevice.device())) == :nan
    assert EMLX.item(EMLX.scalar_tensor(:neg_infinity, :float16, EMLX.TestDevice.device())) == :neg_infinity

    assert EMLX.item(EMLX.scalar_tensor(9_007_199_254_740_993, :int64, EMLX.TestDevice.device())) ==
             9_007_199_254_740_993
  end

  test "item of a complex scalar" do
    value = EMLX.item(EMLX.from_blob(blob([{1.5, -2.0}], :complex64), {}, :complex64, EMLX.TestDevice.device()))

    case value do
      {re, im} -> assert {re, im} == {1.5, -2.0}
      %{re: re, im: im} -> assert {re, im} == {1.5, -2.0}
    end
  end

  test "f64 stays f64 on the CPU" do
    x = EMLX.from_blob(<<0.1::float-64-native>>, {}, :float64, :cpu)
    assert EMLX.scalar_type(x) == :float64
    assert EMLX.to_blob(EMLX.add(x, x)) == <<0.2::float-64-native>>
  end

  test "a shape mismatch raises with MLX's message and the VM lives on" do
    error =
      assert_raise ArgumentError, fn -> EMLX.add(tensor([1.0, 2.0], :float32), tensor([1.0, 2.0, 3.0], :float32)) end

    assert error.message =~ "broadcast"
    assert EMLX.to_blob(EMLX.add(tensor([1.0], :float32), tensor([1.0], :float32))) == blob([2.0], :float32)
  end

  test "sum, reshape, astype and tensordot in one graph" do
    # [[1, 2, 3], [4, 5, 6]] @ [[1, 2, 3], [4, 5, 6]]^T = [[14, 32], [32, 77]]
    m = EMLX.reshape(tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], :float32), {2, 3})
    prod = EMLX.tensordot(m, m, [1], [1])
    assert EMLX.shape(prod) == {2, 2}
    assert EMLX.to_blob(prod) == blob([14.0, 32.0, 32.0, 77.0], :float32)
    assert EMLX.item(EMLX.sum(EMLX.astype(prod, :int32), [0, 1], false)) == 155
    assert EMLX.shape(EMLX.sum(m, [1], true)) == {2, 1}
  end

  test "to_blob of a transposed (non-contiguous) tensor is row-major" do
    m = EMLX.reshape(tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], :float32), {2, 3})
    EMLX.eval(m)
    assert EMLX.to_blob(EMLX.transpose(m, [1, 0])) == blob([1.0, 4.0, 2.0, 5.0, 3.0, 6.0], :float32)
  end

  test "Nx type tuples are accepted wherever a type is taken" do
    assert EMLX.scalar_type(EMLX.ones({2}, {:f, 16}, EMLX.TestDevice.device())) == :float16
    assert EMLX.scalar_type(EMLX.astype(EMLX.ones({2}, {:s, 8}, EMLX.TestDevice.device()), {:u, 16})) == :uint16
  end

  test "default_device is :cpu without a GPU and follows the application env" do
    # test_helper.exs sets the application env to the suite's device.
    fallback = if EMLX.NIF.gpu_available(), do: :gpu, else: :cpu
    assert EMLX.default_device() == (Application.get_env(:emlx, :default_device) || fallback)
  end

  test "50 processes doing add + to_blob concurrently on the default CPU queue" do
    results =
      1..50
      |> Task.async_stream(
        fn i ->
          for j <- 1..20 do
            a = tensor([i * 1.0, j * 1.0], :float32)
            b = tensor([j * 1.0, i * 1.0], :float32)
            {EMLX.to_blob(EMLX.add(a, b)), blob([(i + j) * 1.0, (i + j) * 1.0], :float32)}
          end
        end,
        max_concurrency: 50,
        timeout: 60_000
      )
      |> Enum.flat_map(fn {:ok, pairs} -> pairs end)

    assert length(results) == 1000
    assert Enum.all?(results, fn {got, want} -> got == want end)
  end
end
