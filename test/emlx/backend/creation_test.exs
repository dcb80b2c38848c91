if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.CreationTest do
    use EMLX.BackendCase, async: true

    @narrow_ints [{:s, 2}, {:s, 4}, {:u, 2}, {:u, 4}]
    @types [{:s, 8}, {:s, 16}, {:s, 32}, {:s, 64}, {:u, 8}, {:u, 16}, {:u, 32}, {:u, 64}] ++
             [{:f, 16}, {:bf, 16}, {:f, 32}, {:f, 64}, {:c, 64}, {:f, 8}, {:f8_e4m3fn, 8}]

    @backend EMLX.TestDevice.backend()
    @device EMLX.TestDevice.device()

    # The suite's backend for tensors of `type` (float64 stays on the CPU).
    defp backend(type), do: {EMLX.Backend, device: EMLX.TestDevice.device_for(Nx.Type.normalize!(type))}

    defp on_both(fun, type \\ :s32) do
      expected = fun.(Nx.BinaryBackend)
      actual = fun.(backend(type))
      assert_same(actual, expected)
    end

    describe "constant, iota, eye" do
      for type <- @types do
        test "on #{inspect(type)}" do
          type = unquote(type)
          on_both(&Nx.broadcast(Nx.tensor(1, type: type, backend: &1), {2, 3}), type)
          on_both(&Nx.tensor(3, type: type, backend: &1), type)
          on_both(&Nx.iota({2, 3}, type: type, backend: &1), type)
          on_both(&Nx.iota({2, 3}, axis: 1, type: type, backend: &1), type)
          on_both(&Nx.iota({}, type: type, backend: &1), type)
          on_both(&Nx.eye({3, 4}, type: type, backend: &1), type)
          on_both(&Nx.eye({2, 3, 3}, type: type, backend: &1), type)
        end
      end

      # (Nx.BinaryBackend cannot broadcast these: checked by hand.)
      for type <- @narrow_ints do
        test "on #{inspect(type)}" do
          type = unquote(type)
          {kind, bits} = type

          assert Nx.to_flat_list(Nx.broadcast(Nx.tensor(1, type: type, backend: @backend), {2, 3})) ==
                   List.duplicate(1, 6)

          assert Nx.to_flat_list(Nx.iota({2, 2}, axis: 1, type: type, backend: @backend)) == [0, 1, 0, 1]
          assert Nx.to_flat_list(Nx.eye({2, 2}, type: type, backend: @backend)) == [1, 0, 0, 1]
          # Counting past the range wraps.
          wrapped = Enum.map(0..7, &wrap(&1, kind, bits))
          assert Nx.to_flat_list(Nx.iota({8}, type: type, backend: @backend)) == wrapped
        end
      end

      test "extreme and non-finite constants" do
        on_both(&Nx.tensor(18_446_744_073_709_551_615, type: :u64, backend: &1))
        on_both(&Nx.tensor(-9_223_372_036_854_775_808, type: :s64, backend: &1))
        on_both(&Nx.tensor([:nan, :infinity, :neg_infinity], type: :f64, backend: &1), :f64)
        on_both(&Nx.tensor(Complex.new(1.5, -2.0), backend: &1))
        on_both(&Nx.tensor(1.0e-40, type: :f32, backend: &1))
        on_both(&Nx.iota({70_000}, type: :f16, backend: &1))
        on_both(&Nx.tensor([7, 8, -9], type: :s4, backend: &1))
        on_both(&Nx.broadcast(Nx.tensor(:nan, backend: &1), {2}))
      end
    end

    describe "binaries" do
      for type <- @types ++ @narrow_ints do
        test "from_binary and to_binary round trip on #{inspect(type)}" do
          source = random({2, 4}, unquote(type))
          binary = Nx.to_binary(source)
          t = Nx.from_binary(binary, unquote(type), backend: backend(unquote(type))) |> Nx.reshape({2, 4})
          assert Nx.to_binary(t) == binary
          assert_same(t, source)
          {_, bits} = unquote(type)
          assert Nx.to_binary(t, limit: 4) == binary_part_bits(binary, 4 * bits)
        end
      end

      test "every 8-bit float reads as Nx reads it" do
        # E5M2 subnormals (exponent 0) are IEEE's, the top byte of a float16,
        # as Nx.Floating.dump_f8/1 writes them (its load_f8/1 reads them as
        # if normal); every other byte reads as in Nx.
        normal = for b <- 0..255, div(rem(b, 128), 4) != 0, into: <<>>, do: <<b>>
        all = for b <- 0..255, into: <<>>, do: <<b>>

        for {type, bytes} <- [f8: normal, f8_e4m3fn: all] do
          expected = bytes |> Nx.from_binary(type, backend: Nx.BinaryBackend) |> Nx.as_type(:f32)
          actual = bytes |> Nx.from_binary(type, backend: @backend) |> Nx.as_type(:f32)
          assert_same(actual, expected)
        end

        subnormal = Nx.from_binary(<<0, 1, 2, 3, 0x81>>, :f8, backend: @backend) |> Nx.as_type(:f32)
        assert Nx.to_flat_list(subnormal) == [0.0, 2.0 ** -16, 2.0 ** -15, 3 * 2.0 ** -16, -(2.0 ** -16)]
        assert Nx.to_binary(Nx.from_binary(all, :f8, backend: @backend)) == all
      end

      test "a binary of the wrong size raises" do
        assert_raise ArgumentError, ~r/expects 96 bits/, fn ->
          EMLX.Backend.from_binary(Nx.template({3}, :f32), <<1, 2>>, device: :cpu)
        end
      end
    end

    describe "narrow types compute like Nx.BinaryBackend" do
      test "8-bit floats round every result to their grid" do
        for type <- [{:f, 8}, {:f8_e4m3fn, 8}] do
          a = random({12}, type, 1)
          b = random({12}, type, 2)
          for op <- [:add, :subtract, :multiply, :divide, :max], do: check(&apply(Nx, op, [&1, &2]), [a, b])
          check(&Nx.sum/1, [a], atol: 0.5, rtol: 0.1)
          check(&Nx.exp/1, [a], atol: 0.1, rtol: 0.15)
          check(&Nx.as_type(&1, :f32), [a])
          check(&Nx.as_type(&1, type), [bin([1.0e6, -3.3, 0.01, 17.0])])
        end
      end

      test "2- and 4-bit integers wrap every result" do
        for type <- [{:s, 2}, {:s, 4}, {:u, 2}, {:u, 4}] do
          a = random({10}, type, 1)
          b = random({10}, type, 2)
          for op <- [:add, :subtract, :multiply, :bitwise_xor, :max], do: check(&apply(Nx, op, [&1, &2]), [a, b])
          check(&Nx.left_shift/2, [a, Nx.clip(Nx.abs(b), 0, 1)])
          check(&Nx.negate/1, [a])
          check(&Nx.as_type(&1, :s32), [a])
        end
      end

      test "c128 and unknown devices are refused with a way out" do
        assert_raise ArgumentError, ~r/complex128.*\{:c, 64\}/s, fn ->
          Nx.tensor([1.0], type: :c128, backend: @backend)
        end

        assert_raise ArgumentError, ~r/complex128/, fn -> Nx.as_type(emlx(bin([1.0])), :c128) end

        assert_raise ArgumentError, ~r/unknown EMLX device/, fn ->
          Nx.tensor(1, backend: {EMLX.Backend, device: :tpu})
        end
      end

      test "f64 on the GPU is refused, naming the CPU" do
        assert_raise ArgumentError, ~r/float64 on the GPU.*device: :cpu/s, fn ->
          Nx.tensor([1.0], type: :f64, backend: {EMLX.Backend, device: :gpu})
        end
      end

      test "bf16 tensors hold bf16" do
        t = Nx.tensor([1.5, -2.25, 3.0e10], type: :bf16, backend: @backend)
        assert EMLX.scalar_type(EMLX.Backend.from_nx(t)) == :bfloat16
        assert_same(t, Nx.tensor([1.5, -2.25, 3.0e10], type: :bf16, backend: Nx.BinaryBackend))
      end

      test "f64 stays f64" do
        t = Nx.tensor([0.1, 1.0e300], type: :f64, backend: backend(:f64))
        assert EMLX.scalar_type(EMLX.Backend.from_nx(t)) == :float64
        assert Nx.to_flat_list(Nx.multiply(t, 3)) == [0.30000000000000004, 3.0e300]
      end
    end

    describe "copies and memory" do
      test "backend_copy and backend_transfer between backends" do
        t = Nx.tensor([[1, 2], [3, 4]], names: [:a, :b], backend: @backend)
        copy = Nx.backend_copy(t, @backend)
        assert :ok = Nx.backend_deallocate(t)
        assert Nx.to_flat_list(copy) == [1, 2, 3, 4]
        assert copy.names == [:a, :b]

        bin = Nx.backend_transfer(copy, Nx.BinaryBackend)
        assert %Nx.BinaryBackend{} = bin.data
        assert Nx.to_flat_list(bin) == [1, 2, 3, 4]
        assert Nx.backend_deallocate(copy) == :already_deallocated
        assert_raise ArgumentError, fn -> Nx.to_binary(copy) end

        back = Nx.backend_transfer(bin, @backend)
        assert %EMLX.Backend{ref: {@device, _}} = back.data
        assert Nx.backend_transfer(back, @backend) == back
      end

      test "inspect shows the device, unless configured not to" do
        t = Nx.tensor([1, 2], backend: @backend)
        assert inspect(t) =~ "EMLX.Backend<#{@device}>"
        assert inspect(Nx.iota({100}, backend: @backend), limit: 3) =~ "[0, 1, 2, ...]"
      end

      test "tensors of other backends are taken as operands" do
        result = Nx.add(Nx.tensor([1, 2], backend: @backend), Nx.tensor([10, 20], backend: Nx.BinaryBackend))
        assert %EMLX.Backend{ref: {@device, _}} = result.data
        assert Nx.to_flat_list(result) == [11, 22]
      end

      test "init options" do
        assert EMLX.Backend.init(device: :cpu) == [device: :cpu]
        assert [device: d] = EMLX.Backend.init([])
        assert d in [:cpu, :gpu]
        assert_raise ArgumentError, fn -> EMLX.Backend.init(foo: 1) end
      end
    end

    # `i` as a `bits`-bit integer of `kind` (two's complement).
    defp wrap(i, kind, bits) do
      r = rem(i, 2 ** bits)
      if kind == :s and r >= 2 ** (bits - 1), do: r - 2 ** bits, else: r
    end

    # The first `bits` bits of a bitstring.
    defp binary_part_bits(binary, bits) do
      <<part::bitstring-size(^bits), _::bitstring>> = binary
      part
    end
  end
end
