defmodule EMLX.TinyEvalTest do
  # Tiny results computed as they are built (native/src/ops.rs,
  # `evaluate_tiny`; native/bridge/inline_cpu.cc, `eval_small_graph`): when
  # each happens, when it does not (EMLX.lazy/1, large graphs, a busy
  # queue, GPU builds), and that values and errors are those of a later
  # evaluation. Values are checked against arithmetic done here.
  # async: false: one test sets MLX's process-wide memory limit.
  use ExUnit.Case, async: false
  import EMLX.QueueHelpers

  alias EMLX.CommandQueue

  # CPU queues run MLX's kernels inline unless MLX has a GPU in this build
  # (its CPU streams then keep their threads) or EMLX_CPU_STREAM_THREADS=1;
  # only such queues compute in the NIF.
  defp inline?, do: not EMLX.NIF.gpu_available() and System.get_env("EMLX_CPU_STREAM_THREADS") != "1"

  defp ready?(t), do: EMLX.NIF.tensor_ready(t)

  test "a tiny op of computed inputs is computed as it is built, without a job" do
    q = CommandQueue.new!(:cpu)
    {a, b} = {ints(q, [1, -2, 3]), ints(q, [10, 20, -30])}
    t = CommandQueue.with_queue(q, fn -> EMLX.multiply(EMLX.add(a, b), a) end)
    assert ready?(t) == inline?()
    before = CommandQueue.info(q)
    assert EMLX.to_blob(t) == int_blob([11, -36, -81])
    # A computed tensor is read by the NIF itself.
    if inline?(), do: assert(CommandQueue.info(q).completed == before.completed)
  end

  test "inside EMLX.lazy/1 the result stays a graph node, with the same value" do
    q = CommandQueue.new!(:cpu)
    {a, b} = {ints(q, [7, 8]), ints(q, [1, 2])}
    t = CommandQueue.with_queue(q, fn -> EMLX.lazy(fn -> EMLX.subtract(a, b) end) end)
    refute ready?(t)
    # Nested: the outer function's mode comes back afterwards.
    u = EMLX.lazy(fn -> EMLX.lazy(fn -> EMLX.add(a, a) end) end)
    refute ready?(u)
    v = CommandQueue.with_queue(q, fn -> EMLX.add(a, a) end)
    assert ready?(v) == inline?()
    assert EMLX.to_blob(t) == int_blob([6, 6])
    assert EMLX.to_blob(u) == int_blob([14, 16])
    assert EMLX.to_blob(v) == int_blob([14, 16])
  end

  test "a lazy tiny input is computed with the op that reads it" do
    q = CommandQueue.new!(:cpu)
    a = ints(q, [2, 3])
    x = CommandQueue.with_queue(q, fn -> EMLX.lazy(fn -> EMLX.multiply(a, a) end) end)
    y = CommandQueue.with_queue(q, fn -> EMLX.add(x, a) end)
    assert ready?(y) == inline?()
    assert EMLX.to_blob(y) == int_blob([6, 12])
    assert EMLX.to_blob(x) == int_blob([4, 9])
  end

  test "graphs over 64 KiB, tiny results of large inputs included, stay lazy" do
    n = 20_000
    big = EMLX.from_blob(int_blob(Enum.to_list(1..n)), {n}, :int32, :cpu)
    doubled = EMLX.add(big, big)
    refute ready?(doubled)
    # 80 KB of input for a 4-byte sum: the work is the input's, not the result's.
    total = EMLX.sum(big, [0], false)
    refute ready?(total)
    assert EMLX.item(total) == div(n * (n + 1), 2)
    # Just under the limit: 2 x 16 KB in, 16 KB out.
    small = EMLX.from_blob(int_blob(Enum.to_list(1..4000)), {4000}, :int32, :cpu)
    assert ready?(EMLX.add(small, small)) == inline?()
    assert EMLX.to_blob(doubled, 3) == int_blob([2, 4, 6])
  end

  test "a tiny op on a busy queue stays lazy and is computed in order" do
    q = CommandQueue.new!(:cpu)
    a = ints(q, [5])
    # Four 1024x1024 products: the job is still waiting or running (tens of
    # milliseconds) when the op is built right after it is sent.
    slow = submit_eval(slow_tensor(q, 4))
    t = CommandQueue.with_queue(q, fn -> EMLX.add(a, a) end)
    refute ready?(t)
    assert EMLX.to_blob(t) == int_blob([10])
    assert_receive {^slow, :ok, _ns}, 30_000
  end

  test "an op computed as built refuses what the evaluation would (the memory guard)" do
    a = EMLX.scalar_tensor(1.5, :float32, :cpu)
    previous = EMLX.set_memory_limit(0)

    try do
      assert_raise EMLX.NIFError, ~r/memory limit of 0 bytes/, fn -> EMLX.add(a, a) |> EMLX.eval() end
    after
      EMLX.set_memory_limit(previous)
    end

    assert EMLX.add(a, a) |> EMLX.item() == 3.0
  end

  test "casts of computed small integers (done on the host) match MLX's own" do
    x = EMLX.from_blob(int_blob([0, 2, -1, 256, -129]), {5}, :int32, :cpu)

    for dtype <- [:bool, :uint8, :int8, :uint16, :int64] do
      host = EMLX.astype(x, dtype)
      graph = EMLX.lazy(fn -> EMLX.astype(x, dtype) end)
      assert EMLX.scalar_type(host) == dtype
      assert EMLX.to_blob(host) == EMLX.to_blob(graph), "#{dtype}"
    end

    assert EMLX.to_blob(EMLX.astype(x, :bool)) == <<0, 1, 1, 1, 1>>
    assert EMLX.to_blob(EMLX.astype(x, :uint8)) == <<0, 2, 255, 0, 127>>
  end

  test "many processes building tiny ops on one queue at once" do
    q = CommandQueue.new!(:cpu)

    sums =
      1..8
      |> Task.async_stream(
        fn k ->
          CommandQueue.with_queue(q, fn ->
            one = ints(q, [k])
            Enum.reduce(1..200, one, fn _, acc -> EMLX.add(acc, one) end) |> EMLX.item()
          end)
        end,
        max_concurrency: 8
      )
      |> Enum.map(fn {:ok, v} -> v end)

    assert sums == for(k <- 1..8, do: 201 * k)
  end
end
