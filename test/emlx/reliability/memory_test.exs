defmodule EMLX.Reliability.MemoryTest do
  # MLX's memory counters under EMLX: deallocate frees at once, the memory
  # limit is enforced with an exception (MLX's CPU allocator does not enforce
  # it itself and segfaults on a failed allocation), clear_cache empties the
  # cache, absurd sizes raise. Not async: the counters and the limit are
  # global to the VM.
  use ExUnit.Case, async: false

  @mb 1_000_000

  setup do
    limit = EMLX.set_memory_limit(0)
    EMLX.set_memory_limit(limit)
    on_exit(fn -> EMLX.set_memory_limit(limit) end)
    :ok
  end

  defp active, do: EMLX.memory_info().active_memory

  # 2 + 3 = 5 on the default queue: the VM and the queue still work.
  defp alive? do
    a = EMLX.scalar_tensor(2, :int32, :cpu)
    EMLX.item(EMLX.add(a, EMLX.scalar_tensor(3, :int32, :cpu))) == 5
  end

  test "deallocate frees the buffer at once, while the tensor is still referenced" do
    t = EMLX.full(1.5, {4 * @mb}, :float32, :cpu)
    :ok = EMLX.eval(t)
    held = active()
    assert held >= 16 * @mb

    assert EMLX.deallocate(t) == :ok
    # `t` is still bound here, so no garbage collection can have freed it.
    assert active() <= held - 16 * @mb
    assert EMLX.deallocate(t) == :already_deallocated
    assert_raise ArgumentError, ~r/deallocated/, fn -> EMLX.to_blob(t) end
  end

  test "a dropped tensor is freed by garbage collection" do
    parent = self()

    pid =
      spawn(fn ->
        t = EMLX.full(2.0, {16 * @mb}, :float32, :cpu)
        :ok = EMLX.eval(t)
        send(parent, {:held, active()})
        receive do: (:done -> :ok)
      end)

    assert_receive {:held, held}, 10_000
    assert held >= 64 * @mb
    # The process exits; its heap, and the only handle on the tensor, go.
    # (Other memory freed meanwhile only lowers the figure further.)
    send(pid, :done)
    assert_eventually(fn -> active() <= held - 64 * @mb end)
  end

  test "set_memory_limit + an oversized allocation raises EMLX.NIFError, not a crash" do
    # The limit bounds each buffer; 32 MB is far below what the cases ask.
    limit = 32 * @mb
    previous = EMLX.set_memory_limit(limit)
    assert EMLX.set_memory_limit(limit) == limit

    error =
      assert_raise EMLX.NIFError, fn -> EMLX.eval(EMLX.ones({64 * @mb}, :float32, :cpu)) end

    assert error.message =~ "needs 256000000 bytes, more than MLX's memory limit of #{limit} bytes"

    # An oversized intermediate is refused too, though the result is small.
    assert_raise EMLX.NIFError, ~r/memory limit/, fn ->
      EMLX.ones({64 * @mb}, :float32, :cpu) |> EMLX.sum([0], false) |> EMLX.item()
    end

    # A copy in from a binary is charged as well (bytes not aligned for
    # float32 are copied; aligned ones are used in place, allocating nothing).
    assert_raise EMLX.NIFError, ~r/memory limit/, fn ->
      unaligned = binary_part(:binary.copy(<<0>>, 40 * @mb + 1), 1, 40 * @mb)
      EMLX.from_blob(unaligned, {10 * @mb}, :float32, :cpu)
    end

    # Under the limit all is well.
    assert EMLX.ones({@mb}, :float32, :cpu) |> EMLX.sum([0], false) |> EMLX.item() == 1.0e6
    assert alive?()
    EMLX.set_memory_limit(previous)
    assert EMLX.ones({64 * @mb}, :uint8, :cpu) |> EMLX.sum([0], false) |> EMLX.item() == 64 * @mb
  end

  test "a memory limit of 0 refuses every allocation until it is raised again" do
    previous = EMLX.set_memory_limit(0)
    assert_raise EMLX.NIFError, ~r/memory limit of 0 bytes/, fn -> EMLX.eval(EMLX.ones({16}, :float32, :cpu)) end
    EMLX.set_memory_limit(previous)
    assert alive?()
  end

  test "clear_cache returns cached buffers (cache_memory drops to 0)" do
    for _ <- 1..4 do
      t = EMLX.full(1.0, {@mb}, :float32, :cpu)
      :ok = EMLX.eval(t)
      :ok = EMLX.deallocate(t)
    end

    # Freed buffers under the cache limit stay in MLX's cache.
    assert EMLX.memory_info().cache_memory >= 4 * @mb
    assert EMLX.clear_cache() == :ok
    assert EMLX.memory_info().cache_memory == 0
    assert alive?()
  end

  test "set_cache_limit(0) keeps nothing in the cache" do
    previous = EMLX.set_cache_limit(0)

    try do
      EMLX.clear_cache()
      t = EMLX.full(1.0, {@mb}, :float32, :cpu)
      :ok = EMLX.eval(t)
      :ok = EMLX.deallocate(t)
      assert EMLX.memory_info().cache_memory == 0
    after
      EMLX.set_cache_limit(previous)
    end
  end

  test "peak memory follows allocations and resets" do
    EMLX.reset_peak_memory()
    t = EMLX.full(1.0, {8 * @mb}, :uint8, :cpu)
    :ok = EMLX.eval(t)
    assert EMLX.memory_info().peak_memory >= 8 * @mb
    :ok = EMLX.deallocate(t)
    EMLX.reset_peak_memory()
    assert EMLX.memory_info().peak_memory < 8 * @mb
  end

  # {name, fun}: each must raise ArgumentError or EMLX.NIFError (when the op
  # is built or when it is evaluated), and the VM must live on.
  @absurd [
    {"full {2_000_000_000, 2_000_000_000} float32 (16 EB)",
     quote(do: EMLX.full(0, {2_000_000_000, 2_000_000_000}, :float32, :cpu) |> EMLX.eval())},
    {"ones {1_000_000, 1_000_000} float32 (4 TB)",
     quote(do: EMLX.ones({1_000_000, 1_000_000}, :float32, :cpu) |> EMLX.eval())},
    {"ones whose byte count overflows 2^64",
     quote(do: EMLX.ones({2_147_483_647, 2_147_483_647, 8}, :float32, :cpu) |> EMLX.eval())},
    {"to_blob of a scalar broadcast to 10^18 elements",
     quote(
       do: EMLX.scalar_tensor(1, :int8, :cpu) |> EMLX.broadcast_to({1_000_000_000, 1_000_000_000}) |> EMLX.to_blob()
     )},
    {"sum of a 10^12-element float32 broadcast product",
     quote(
       do:
         EMLX.multiply(EMLX.ones({1_000_000, 1}, :float32, :cpu), EMLX.ones({1, 1_000_000}, :float32, :cpu))
         |> EMLX.sum([0, 1], false)
         |> EMLX.item()
     )},
    {"eye 2^31-1 x 2^31-1", quote(do: EMLX.eye(2_147_483_647, 2_147_483_647, :float32, :cpu) |> EMLX.eval())},
    {"arange of 10^300 elements", quote(do: EMLX.arange(0, 1.0e300, 1, false, :cpu) |> EMLX.eval())}
  ]

  for {name, code} <- @absurd do
    test "absurd allocation raises instead of aborting: #{name}" do
      error =
        try do
          unquote(code)
        rescue
          e -> e
        else
          value -> flunk("returned #{inspect(value)}")
        end

      assert error.__struct__ in [ArgumentError, EMLX.NIFError]
      assert Exception.message(error) =~ ~r/bytes|size|memory|shape/i
      assert alive?()
    end
  end

  defp assert_eventually(fun, tries \\ 200) do
    cond do
      fun.() -> :ok
      tries == 0 -> flunk("condition not reached in 2 s: #{inspect(EMLX.memory_info())}")
      true -> Process.sleep(10) && assert_eventually(fun, tries - 1)
    end
  end
end
