defmodule EMLX.API.FromBlobTest do
  # from_blob of large binaries uses the binary's own bytes where MLX's
  # allocator allows it (the CPU build of libmlx): values, that MLX never
  # writes into them, that they live as long as the tensor, slices of one
  # binary (aligned or not), and that MLX allocates no copy.
  # async: false, as the memory counters read here are the VM's and MLX's.
  use ExUnit.Case, async: false

  import Bitwise, only: [<<<: 2]

  @n 1 <<< 20

  # The CPU build of libmlx (the default on Linux) reads binaries in place.
  @in_place :os.type() == {:unix, :linux} and System.get_env("MLX_DIR") in [nil, ""] and
              not EMLX.NIF.gpu_available()

  defp floats(n, f), do: for(i <- 0..(n - 1), into: <<>>, do: <<f.(i)::float-32-native>>)

  defp decode(bin), do: for(<<x::float-32-native <- bin>>, do: x)

  test "a large binary becomes a tensor of its values, without MLX allocating a copy" do
    bin = floats(@n, &(&1 * 0.5))
    before = EMLX.memory_info().active_memory
    t = EMLX.from_blob(bin, {@n}, :float32, :cpu)
    :ok = EMLX.eval(t)
    grown = EMLX.memory_info().active_memory - before
    if @in_place, do: assert(grown < div(@n * 4, 4)), else: assert(grown >= @n * 4)
    assert EMLX.to_blob(t) == bin
    assert EMLX.add(t, t) |> EMLX.to_blob(3) |> decode() == [0.0, 1.0, 2.0]
  end

  test "ops whose input could be reused in place never write into the binary" do
    bin = floats(@n, &(&1 * 1.0))
    original = :binary.copy(bin)
    t = EMLX.from_blob(bin, {@n}, :float32, :cpu)
    # t's array is only referenced by the graph once deallocated: MLX would
    # donate an owned buffer to the result here.
    r = EMLX.multiply(t, EMLX.scalar_tensor(2.0, :float32, :cpu)) |> EMLX.exp()
    EMLX.deallocate(t)
    :ok = EMLX.eval(r)
    assert bin == original

    for {x, y} <- Enum.zip(decode(EMLX.to_blob(r, 3)), [1.0, :math.exp(2.0), :math.exp(4.0)]) do
      assert_in_delta x, y, y * 1.0e-6
    end
  end

  test "the bytes outlive the Elixir binary; slices of one binary, aligned or not" do
    {t, slices} =
      (fn ->
         big = floats(3 * @n + 1, &(&1 * 1.0))
         # Offsets 0 and 4·n are float-aligned; 4·n + 1 is not (copied).
         slices = [{0, @n}, {4 * @n, @n}, {4 * 2 * @n + 1, @n - 1}]
         tensors = for {off, len} <- slices, do: EMLX.from_blob(binary_part(big, off, len * 4), {len}, :float32, :cpu)
         {tensors, for({off, len} <- slices, do: binary_part(big, off, len * 4) |> :binary.copy())}
       end).()

    :erlang.garbage_collect()

    for {tensor, expected} <- Enum.zip(t, slices) do
      assert EMLX.to_blob(EMLX.add(tensor, EMLX.scalar_tensor(0.0, :float32, :cpu))) == expected
    end

    assert decode(binary_part(hd(slices), 0, 12)) == [0.0, 1.0, 2.0]
  end

  test "the binary is released once no tensor uses it" do
    :erlang.garbage_collect()
    before = :erlang.memory(:binary)
    parent = self()

    pid =
      spawn(fn ->
        bin = :binary.copy(<<1.5::float-32-native>>, 4 * @n)
        t = EMLX.from_blob(bin, {4 * @n}, :float32, :cpu)
        :ok = EMLX.eval(t)
        send(parent, :ready)

        receive do
          :done -> :ok
        end
      end)

    ref = Process.monitor(pid)
    assert_receive :ready, 5_000
    during = :erlang.memory(:binary)
    send(pid, :done)
    assert_receive {:DOWN, ^ref, :process, ^pid, _}, 5_000
    :erlang.garbage_collect()
    Process.sleep(100)
    after_ = :erlang.memory(:binary)
    assert during - before >= 4 * @n * 4 - (1 <<< 20)
    assert after_ - before < 4 <<< 20
  end

  test "small binaries, empty binaries and every element type" do
    assert EMLX.from_blob(<<>>, {0}, :float32, :cpu) |> EMLX.shape() == {0}
    assert EMLX.from_blob(<<1, 2, 3>>, {3}, :uint8, :cpu) |> EMLX.to_blob() == <<1, 2, 3>>

    for {type, size} <- [uint8: 1, int16: 2, float16: 2, int32: 4, float64: 8, int64: 8] do
      bin = :binary.copy(<<7::size(size * 8)-native>>, 10_000)
      assert EMLX.from_blob(bin, {10_000}, type, :cpu) |> EMLX.to_blob() == bin
    end
  end

  test "a size mismatch is an ArgumentError" do
    assert_raise ArgumentError, ~r/needs/, fn -> EMLX.from_blob(floats(2000, & &1), {2001}, :float32, :cpu) end
  end
end
