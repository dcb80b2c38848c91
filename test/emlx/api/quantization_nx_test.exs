# Needs Nx: compiled only where Nx is available (tagged :nx as well).
if Code.ensure_loaded?(Nx) do
  defmodule EMLX.API.QuantizationNxTest do
    # EMLX.Quantization (and EMLX.quantize/2, dequantize/1,
    # quantized_matmul/2): argument checks everywhere; values, where
    # EMLX.Backend exists, against the EMLX-level quantize/dequantize and a
    # plain Elixir matmul.
    use ExUnit.Case, async: true
    @moduletag :nx

    if Code.ensure_loaded?(EMLX.Backend), do: doctest(EMLX.Quantization)

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

        test "every mode: quantize/2, dequantize/1 and Nx.dot on the codes, eagerly and in defn" do
          data = rand({8, 64}, 20)
          w = e(data) |> Nx.rename([:out, :in])
          x = rand({3, 64}, 21)

          for {mode, gs, bits, type} <- [
                {"affine", 64, 4, {:s, 4}},
                {"mxfp4", 32, 4, {:s, 4}},
                {"mxfp8", 32, 8, {:s, 8}},
                {"nvfp4", 16, 4, {:s, 4}}
              ] do
            qw = EMLX.quantize(w, mode: mode)
            cfg = qw.data.quantization_config
            assert {qw.shape, qw.type, qw.names} == {{8, 64}, type, [:out, :in]}
            assert {cfg.mode, cfg.group_size, cfg.bits} == {mode, gs, bits}
            assert cfg.biases == nil == (mode != "affine")

            # The values are EMLX.dequantize's of the same codes.
            {wq, s, b} = EMLX.quantize(EMLX.Backend.from_nx(w), gs, bits, mode)
            dense = EMLX.dequantize(wq, s, b, gs, bits, mode) |> EMLX.to_nx() |> Nx.to_list()
            assert Nx.to_list(EMLX.dequantize(qw)) == dense

            # Nx.dot reads the codes: x · denseᵀ; contracting the weight's
            # first axis multiplies without transposing.
            expected = matmul(x, transpose(dense))
            assert_close(Nx.dot(e(x), [1], qw, [1]) |> Nx.to_list(), expected, product_tol())
            assert_close(EMLX.quantized_matmul(e(x), qw) |> Nx.to_list(), expected, product_tol())
            y = rand({2, 8}, 22)
            assert_close(Nx.dot(e(y), [1], qw, [0]) |> Nx.to_list(), matmul(y, dense), product_tol())

            jitted = Nx.Defn.jit(fn x, qw -> Nx.dot(x, [1], qw, [1]) end).(e(x), qw)
            assert_close(Nx.to_list(jitted), expected, product_tol())
            assert Nx.Defn.jit(&EMLX.Quantization.dequantize/1).(qw) |> Nx.to_list() == dense
          end
        end

        test "the dense type is the one quantized from" do
          w = Nx.tensor(rand({2, 32}, 23), type: :bf16, backend: {EMLX.Backend, device: :cpu})

          for mode <- ["affine", "mxfp4", "mxfp8", "nvfp4"] do
            qw = EMLX.quantize(w, mode: mode, group_size: if(mode == "affine", do: 32, else: nil))
            assert Nx.type(EMLX.dequantize(qw)) == {:bf, 16}
          end
        end

        test "copies to EMLX.Backend stay quantized; other backends are refused with what to do" do
          w = e(rand({4, 32}, 24))

          for mode <- ["affine", "mxfp8"] do
            qw = EMLX.quantize(w, mode: mode, group_size: 32)
            values = Nx.to_list(EMLX.dequantize(qw))
            copy = Nx.backend_copy(qw, {EMLX.Backend, device: :cpu})
            assert EMLX.Quantization.quantized?(copy)
            # Same codes; the GPU may round scale · code differently in
            # the last bit.
            assert_close(List.flatten(Nx.to_list(EMLX.dequantize(copy))), List.flatten(values), 1.0e-6)
            moved = Nx.backend_transfer(copy, {EMLX.Backend, device: :cpu})
            assert Nx.to_list(EMLX.dequantize(moved)) == Nx.to_list(EMLX.dequantize(copy))

            assert_raise ArgumentError, ~r/only EMLX.Backend can hold.*EMLX.Quantization.dequantize\(tensor\)/, fn ->
              Nx.backend_copy(qw, Nx.BinaryBackend)
            end

            assert_raise ArgumentError, ~r/keep it quantized/, fn -> Nx.backend_transfer(qw) end
            assert inspect(qw) =~ "quantized: #{qw.data.quantization_config.bits}-bit #{mode} codes"
          end
        end

        test "mode options are checked" do
          w = e(rand({2, 64}, 25))

          assert_raise ArgumentError, ~r/mode "mxfp4" stores 4-bit values in groups of 32/, fn ->
            EMLX.quantize(w, mode: "mxfp4", group_size: 64)
          end

          assert_raise ArgumentError, ~r/mode "mxfp8" stores 8-bit values/, fn ->
            EMLX.quantize(w, mode: "mxfp8", type: {:s, 4})
          end

          assert_raise ArgumentError, ~r/:mode must be one of/, fn -> EMLX.quantize(w, mode: "fp4") end
        end

        test "to_nx/1 wraps an EMLX tensor" do
          t = EMLX.to_nx(EMLX.ones({2, 3}, :int32, EMLX.TestDevice.device()))
          assert {t.shape, t.type, Nx.to_flat_list(t)} == {{2, 3}, {:s, 32}, [1, 1, 1, 1, 1, 1]}
        end
      end
    end
  end
end
