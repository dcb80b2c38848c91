# Needs Nx: compiled only where Nx is available (tagged :nx as well).
if Code.ensure_loaded?(Nx) do
  defmodule EMLX.API.QuantizationNxTest do
    # EMLX.Quantization (and EMLX.quantize/2, dequantize/1,
    # quantized_matmul/2): argument checks everywhere; values, where
    # EMLX.Backend exists, against the EMLX-level quantize/dequantize and a
    # plain Elixir matmul.
    use ExUnit.Case, async: true
    @moduletag :nx

    describe "argument checks" do
      setup do
        %{w: Nx.iota({4, 64}, type: :f32)}
      end

      test "a :type other than s2, s4, s8", %{w: w} do
        assert_raise ArgumentError, ~r/:type must be one of/, fn -> EMLX.quantize(w, type: {:s, 3}) end
        assert_raise ArgumentError, ~r/:type must be one of/, fn -> EMLX.quantize(w, type: {:u, 4}) end
      end

      test "a :group_size other than 32, 64, 128", %{w: w} do
        assert_raise ArgumentError, ~r/:group_size must be 32, 64 or 128, got: 16/, fn ->
          EMLX.quantize(w, group_size: 16)
        end
      end

      test "an unknown option", %{w: w} do
        assert_raise ArgumentError, ~r/unknown keys \[:bits\]/, fn -> EMLX.quantize(w, bits: 4) end
      end

      test "rank, divisibility and type of the weight" do
        assert_raise ArgumentError, ~r/rank-2/, fn -> EMLX.quantize(Nx.iota({64}, type: :f32), []) end
        assert_raise ArgumentError, ~r/rank-2/, fn -> EMLX.quantize(Nx.iota({2, 2, 64}, type: :f32), []) end

        assert_raise ArgumentError, ~r/multiple of :group_size \(64\)/, fn ->
          EMLX.quantize(Nx.iota({2, 96}, type: :f32), [])
        end

        assert_raise ArgumentError, ~r/floating-point/, fn -> EMLX.quantize(Nx.iota({2, 64}), []) end
      end

      test "dense tensors are not quantized ones" do
        w = Nx.iota({4, 64}, type: :f32)
        refute EMLX.Quantization.quantized?(w)
        assert_raise ArgumentError, ~r/expected a quantized tensor/, fn -> EMLX.dequantize(w) end

        assert_raise ArgumentError, ~r/expected a quantized tensor/, fn ->
          EMLX.quantized_matmul(Nx.iota({1, 64}, type: :f32), w)
        end
      end
    end

    if Code.ensure_loaded?(EMLX.Backend) do
      import EMLX.FusedOracle, only: [rand: 2, assert_close: 3, matmul: 2, transpose: 1]

      # The GPU computes the float32 product in TF32 (EMLX.TestDevice.tf32/2).
      defp product_tol, do: EMLX.TestDevice.tf32([atol: 1.0e-4], atol: 1.0e-2)[:atol]

      describe "on EMLX.Backend" do
        defp e(list), do: Nx.tensor(list, type: :f32, backend: EMLX.TestDevice.backend())

        test "quantize/2 keeps shape and names, reports the code type, and dequantizes like EMLX.dequantize/5" do
          data = rand({8, 128}, 1)
          w = e(data) |> Nx.rename([:out, :in])

          for {type, bits} <- [{{:s, 2}, 2}, {{:s, 4}, 4}, {{:s, 8}, 8}], gs <- [32, 64, 128] do
            qw = EMLX.quantize(w, type: type, group_size: gs)
            assert EMLX.Quantization.quantized?(qw)
            assert {qw.shape, qw.type, qw.names} == {{8, 128}, type, [:out, :in]}

            {wq, s, b} = EMLX.quantize(EMLX.Backend.from_nx(w), gs, bits)
            expected = EMLX.dequantize(wq, s, b, gs, bits) |> EMLX.to_nx() |> Nx.to_list()
            assert Nx.to_list(EMLX.dequantize(qw)) == expected
          end
        end

        test "quantized_matmul/2 is x · dequantize(w)ᵀ" do
          qw = EMLX.quantize(e(rand({5, 64}, 2)), type: {:s, 8}, group_size: 32)
          dense = qw |> EMLX.dequantize() |> Nx.to_list()
          x = rand({3, 64}, 3)
          out = EMLX.quantized_matmul(e(x), qw)
          assert Nx.shape(out) == {3, 5}
          assert_close(Nx.to_list(out), matmul(x, transpose(dense)), product_tol())
          assert_raise ArgumentError, ~r/must be dense/, fn -> EMLX.quantized_matmul(qw, qw) end
        end

        test "inside defn" do
          qw = EMLX.quantize(e(rand({4, 64}, 4)), type: {:s, 4}, group_size: 64)
          x = e(rand({2, 64}, 5))
          eager = EMLX.quantized_matmul(x, qw) |> Nx.to_list()
          jitted = Nx.Defn.jit(&EMLX.Quantization.quantized_matmul/2).(x, qw) |> Nx.to_list()
          assert_close(jitted, eager, 1.0e-6)
          deq = Nx.Defn.jit(&EMLX.Quantization.dequantize/1).(qw)
          assert Nx.to_list(deq) == Nx.to_list(EMLX.dequantize(qw))
        end

        test "to_nx/1 wraps an EMLX tensor" do
          t = EMLX.to_nx(EMLX.ones({2, 3}, :int32, EMLX.TestDevice.device()))
          assert {t.shape, t.type, Nx.to_flat_list(t)} == {{2, 3}, {:s, 32}, [1, 1, 1, 1, 1, 1]}
        end
      end
    end
  end
end
