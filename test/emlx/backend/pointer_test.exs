if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.PointerTest do
    use EMLX.BackendCase, async: true

    @backend EMLX.TestDevice.backend()

    test ":local pointers share MLX's buffer; from_pointer copies it" do
      t = Nx.tensor([[1.5, 2.5], [3.5, 4.5]], backend: @backend)
      %Nx.Pointer{kind: :local, address: address, data_size: 16} = pointer = Nx.to_pointer(t, mode: :local)
      assert is_integer(address) and address > 0

      copy = Nx.from_pointer(@backend, pointer, :f32, {2, 2}, names: [:a, :b])
      assert copy.names == [:a, :b]
      assert_same(copy, Nx.tensor([[1.5, 2.5], [3.5, 4.5]], names: [:a, :b], backend: Nx.BinaryBackend))
      # The copy outlives the original.
      Nx.backend_deallocate(t)
      assert Nx.to_flat_list(copy) == [1.5, 2.5, 3.5, 4.5]
    end

    # Copies from 16 MiB are split between threads (data_in.cc): every byte
    # of each part, the uneven last one included, lands where it belongs.
    test "large copies, split between threads, are exact to the last byte" do
      for n <- [16 * 1024 * 1024 + 12, 24 * 1024 * 1024 + 4096 * 3 + 7] do
        source = :rand.bytes(n)
        t = Nx.from_binary(source, :u8, backend: @backend) |> Nx.add(0)
        copy = Nx.from_pointer(@backend, Nx.to_pointer(t, mode: :local), :u8, {n})
        assert Nx.to_binary(copy) == source
      end
    end

    test ":ipc pointers go through shared memory, handed over once" do
      t = Nx.iota({3}, type: :s64, backend: @backend)
      %Nx.Pointer{kind: :ipc, handle: name, data_size: 24} = pointer = Nx.to_pointer(t, mode: :ipc)
      assert is_binary(name)
      assert Nx.to_flat_list(Nx.from_pointer(@backend, pointer, :s64, {3})) == [0, 1, 2]
      assert_raise ArgumentError, ~r/cannot open shared memory/, fn -> Nx.from_pointer(@backend, pointer, :s64, {3}) end
    end

    test "size mismatches, unknown modes and wide-stored types raise" do
      t = Nx.tensor([1, 2], type: :s32, backend: @backend)
      pointer = Nx.to_pointer(t)
      assert_raise ArgumentError, ~r/holds 8 bytes/, fn -> Nx.from_pointer(@backend, pointer, :s32, {3}) end
      assert_raise ArgumentError, ~r/mode/, fn -> Nx.to_pointer(t, mode: :shared) end

      assert_raise ArgumentError, ~r/wider MLX type/, fn ->
        Nx.to_pointer(Nx.tensor([1.0], type: :f8, backend: @backend))
      end
    end
  end
end
