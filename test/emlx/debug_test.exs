defmodule EMLX.DebugTest do
  # EMLX.Debug: the checks themselves (index_check/3, non_finite/2,
  # raise_if!/1) against indices and values inspected by hand; and, with
  # the compile-time flags switched on (EMLX.Debug recompiled with
  # :enable_bounds_check and :detect_non_finites set, then restored), the
  # eager backend paths raise where Nx.BinaryBackend would and leave valid
  # calls alone. Sync: the recompiled module is global.
  use ExUnit.Case, async: false
  import EMLX.FusedOracle

  doctest EMLX.Debug

  defp ints(list), do: tensor(list, :int32)

  test "the flags are off by default" do
    refute EMLX.Debug.bounds_check?()
    refute EMLX.Debug.detect_non_finites?()
  end

  describe "index_check/3" do
    test "one limit: every index in 0..limit - 1" do
      for {list, bad} <- [{[0, 1, 2], false}, {[0, 3], true}, {[-1, 0], true}, {[[2, 0], [1, 1]], false}] do
        {flag, message} = EMLX.Debug.index_check(:take, ints(list), 3)
        assert EMLX.item(flag) == bad
        assert message == "take: index out of bounds: every index must be in 0..2"
      end
    end

    test "a limit per entry of the last axis" do
      for {list, bad} <- [{[[1, 4], [0, 0]], false}, {[[2, 0]], true}, {[[0, 5]], true}, {[[0, -1]], true}] do
        {flag, message} = EMLX.Debug.index_check(:gather, ints(list), [2, 5])
        assert EMLX.item(flag) == bad, inspect(list)
        assert message == "gather: index out of bounds: the indices along the last axis must be in 0..1, 0..4"
      end
    end

    test "unsigned and 64-bit indices" do
      big = EMLX.from_blob(<<0xFFFF_FFFF_FFFF_FFFF::64-native>>, {1}, :uint64, :cpu)
      assert {true, _} = big |> then(&EMLX.Debug.index_check(:take, &1, 10)) |> read()
      assert {false, _} = tensor([9], :uint8) |> then(&EMLX.Debug.index_check(:take, &1, 10)) |> read()
    end
  end

  defp read({flag, message}), do: {EMLX.item(flag), message}

  test "non_finite/2: NaN and infinities of float types; never for integers" do
    bits = fn list -> for(x <- list, into: <<>>, do: x) end
    nan = EMLX.from_blob(bits.([<<1.0::float-32-native>>, <<0x7FC00000::32-native>>]), {2}, :float32, :cpu)
    inf = EMLX.from_blob(bits.([<<0xFF800000::32-native>>]), {1}, :float32, :cpu)
    assert {true, "dot produced NaN or Inf" <> _} = read(EMLX.Debug.non_finite(:dot, nan))
    assert {true, _} = read(EMLX.Debug.non_finite(:dot, EMLX.astype(inf, :bfloat16)))
    assert {false, _} = read(EMLX.Debug.non_finite(:dot, tensor([1.0, -2.0])))
    assert {false, _} = read(EMLX.Debug.non_finite(:dot, ints([1, 2])))
    assert EMLX.Debug.raise_if!(EMLX.Debug.non_finite(:dot, tensor([1.0]))) == :ok

    assert_raise ArgumentError, ~r/^conv produced NaN or Inf/, fn ->
      EMLX.Debug.raise_if!(EMLX.Debug.non_finite(:conv, nan))
    end
  end

  if Code.ensure_loaded?(Nx) do
    describe "with the flags on" do
      setup do
        recompile(true)
        on_exit(fn -> recompile(false) end)
      end

      defp recompile(on) do
        Application.put_env(:emlx, :enable_bounds_check, on)
        Application.put_env(:emlx, :detect_non_finites, on)
        previous = Code.get_compiler_option(:ignore_module_conflict)
        Code.put_compiler_option(:ignore_module_conflict, true)

        try do
          Code.compile_file("lib/emlx/debug.ex")
        after
          Code.put_compiler_option(:ignore_module_conflict, previous)
        end

        assert EMLX.Debug.bounds_check?() == on
      end

      defp e(list, type \\ :f32), do: Nx.tensor(list, type: type, backend: {EMLX.Backend, device: :cpu})

      test "indices out of range raise ArgumentError; in-range ones give Nx.BinaryBackend's values" do
        t = e([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])

        assert_raise ArgumentError, ~r/take: index out of bounds: every index must be in 0..2/, fn ->
          Nx.take(t, e([0, 3], :s32))
        end

        assert_raise ArgumentError, ~r/take: index out of bounds/, fn -> Nx.take(t, e([-1], :s32)) end

        assert_raise ArgumentError, ~r/take_along_axis: index out of bounds: every index must be in 0..1/, fn ->
          Nx.take_along_axis(t, e([[0, 2], [1, 0], [0, 0]], :s32), axis: 1)
        end

        assert_raise ArgumentError,
                     ~r/gather: index out of bounds: the indices along the last axis must be in 0..2, 0..1/,
                     fn ->
                       Nx.gather(t, e([[2, 1], [0, 2]], :s32))
                     end

        assert_raise ArgumentError, ~r/indexed_add: index out of bounds/, fn ->
          Nx.indexed_add(t, e([[3, 0]], :s32), e([1.0]))
        end

        assert_raise ArgumentError, ~r/indexed_put: index out of bounds/, fn ->
          Nx.indexed_put(t, e([[0, -1]], :s32), e([1.0]))
        end

        expected = Nx.take(Nx.backend_copy(t, Nx.BinaryBackend), Nx.tensor([2, 0]))
        assert Nx.to_list(Nx.take(t, e([2, 0], :s32))) == Nx.to_list(expected)
        assert Nx.to_list(Nx.gather(t, e([[2, 1]], :s32))) == [6.0]
        assert Nx.to_list(Nx.indexed_put(t, e([[1, 1]], :s32), e([9.0]))) == [[1.0, 2.0], [3.0, 9.0], [5.0, 6.0]]
      end

      test "NaN or Inf results of dot, conv and the fused ops raise ArgumentError; finite ones pass" do
        nan = e([:nan, 1.0, 1.0])
        ones = e([1.0, 1.0, 1.0])
        assert_raise ArgumentError, ~r/^dot produced NaN or Inf/, fn -> Nx.dot(nan, ones) end
        assert Nx.to_number(Nx.dot(ones, ones)) == 3.0
        assert_raise ArgumentError, ~r/^dot produced NaN or Inf/, fn -> Nx.dot(e([3.0e38]), e([10.0])) end

        x = e([[[:infinity, 1.0, 1.0, 1.0]]])
        k = e([[[1.0, 1.0]]])
        assert_raise ArgumentError, ~r/^conv produced NaN or Inf/, fn -> Nx.conv(x, k) end
        assert Nx.to_flat_list(Nx.conv(e([[[1.0, 2.0, 3.0]]]), k)) == [3.0, 5.0]

        assert_raise ArgumentError, ~r/^rms_norm produced NaN or Inf/, fn ->
          EMLX.Fast.rms_norm(e([[:nan, 1.0]]), e([1.0, 1.0]), 1.0e-5)
        end

        assert_raise ArgumentError, ~r/^einsum produced NaN or Inf/, fn -> EMLX.Fast.einsum("i,i->", [nan, ones]) end
        assert Nx.to_number(EMLX.Fast.einsum("i,i->", [ones, ones])) == 3.0
      end

      test "compiled with compiler: EMLX, the checks run with the compiled function" do
        take = Nx.Defn.jit(&Nx.take(&1, &2), compiler: EMLX)
        t = e([1.0, 2.0, 3.0])
        assert Nx.to_list(take.(t, e([2, 0], :s32))) == [3.0, 1.0]
        assert_raise ArgumentError, ~r/take: index out of bounds/, fn -> take.(t, e([3, 0], :s32)) end

        dot = Nx.Defn.jit(&Nx.dot/2, compiler: EMLX)
        assert Nx.to_number(dot.(t, t)) == 14.0
        assert_raise ArgumentError, ~r/^dot produced NaN or Inf/, fn -> dot.(e([:nan, 1.0, 1.0]), t) end
      end
    end
  end
end
