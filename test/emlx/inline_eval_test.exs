defmodule EMLX.InlineEvalTest do
  # How CPU queues evaluate (native/src/queue.rs, native/bridge/inline_cpu.cc):
  # small graphs on an idle queue in the calling NIF, the rest on the queue
  # thread, both without MLX's stream threads; ordering with jobs already
  # sent, failures, concurrency, and garbage collection before large
  # evaluations. Values are checked against arithmetic done here.
  # async: false: the last test reads MLX's process-wide peak memory.
  use ExUnit.Case, async: false
  import EMLX.QueueHelpers
  import EMLX.APIHelpers, only: [tensor: 3, to_list: 1]

  alias EMLX.CommandQueue

  defp info(q), do: CommandQueue.info(q)

  test "a small graph on an idle queue is evaluated in the NIF, with the right values" do
    q = CommandQueue.new!(:cpu)

    t =
      CommandQueue.with_queue(q, fn ->
        EMLX.lazy(fn -> EMLX.multiply(EMLX.add(ints(q, [1, 2, 3]), ints(q, [10, 20, 30])), ints(q, [2, 2, 2])) end)
      end)

    before = info(q)
    assert EMLX.to_blob(t) == int_blob([22, 44, 66])
    assert EMLX.item(CommandQueue.with_queue(q, fn -> EMLX.lazy(fn -> EMLX.sum(t, [0], false) end) end)) == 132
    later = info(q)
    # CPU queues evaluate inline unless MLX has a GPU in this build (its CPU
    # streams then keep their threads) or EMLX_CPU_STREAM_THREADS=1.
    assert later.evaluates_inline == inline_expected?()
    assert later.inline - before.inline == if(later.evaluates_inline, do: 2, else: 0)
    assert later.completed - before.completed == 2
  end

  defp inline_expected?, do: not EMLX.NIF.gpu_available() and System.get_env("EMLX_CPU_STREAM_THREADS") != "1"

  test "a large graph is evaluated on the queue thread" do
    q = CommandQueue.new!(:cpu)
    one = ints(q, [1, 1])

    t =
      CommandQueue.with_queue(q, fn ->
        EMLX.lazy(fn -> Enum.reduce(1..300, one, fn _, acc -> EMLX.add(acc, one) end) end)
      end)

    before = info(q)
    assert EMLX.to_blob(t) == int_blob([301, 301])
    later = info(q)
    assert later.inline == before.inline
    assert later.completed == before.completed + 1
  end

  test "a graph of many nodes is collected for before its evaluation, however small its arrays" do
    q = CommandQueue.new!(:cpu)
    one = ints(q, [1, 1])

    chain = fn n ->
      CommandQueue.with_queue(q, fn ->
        EMLX.lazy(fn -> Enum.reduce(1..n, one, fn _, acc -> EMLX.add(acc, one) end) end)
      end)
    end

    {short, long} = {chain.(300), chain.(600)}
    ref = make_ref()
    # An inline queue walks a graph it cannot evaluate in the NIF to decide:
    # past 512 nodes it asks for a collection (nothing is sent then).
    if inline_expected?(), do: assert(EMLX.NIF.eval_now([long], ref) == :collect)
    assert EMLX.NIF.eval_now([short], ref) == :ok
    assert_receive {^ref, :ok, _ns}
    assert EMLX.to_blob(long) == int_blob([601, 601])
    assert EMLX.to_blob(short) == int_blob([301, 301])
  end

  test "a read sent while a job runs waits for the job (no overtaking)" do
    q = CommandQueue.new!(:cpu)
    slow = submit_eval(slow_tensor(q, 2))
    small = CommandQueue.with_queue(q, fn -> EMLX.add(ints(q, [1]), ints(q, [2])) end)
    assert EMLX.to_blob(small) == int_blob([3])
    # The slow job's reply was sent before the small read's job ran.
    assert_received {^slow, :ok, _ns}
  end

  # (Linear algebra on invalid input gives NaN rather than failing, so the
  # failure here is MLX's memory limit refusing the evaluation's buffer.)
  test "a failing evaluation raises EMLX.NIFError in the NIF, and the queue carries on" do
    q = CommandQueue.new!(:cpu)

    CommandQueue.with_queue(q, fn ->
      lazy = EMLX.lazy(fn -> EMLX.add(ints(q, [1, 2]), ints(q, [3, 4])) end)
      before = info(q)
      previous = EMLX.set_memory_limit(0)

      try do
        assert_raise EMLX.NIFError, ~r/memory limit/, fn -> EMLX.eval(lazy) end
      after
        EMLX.set_memory_limit(previous)
      end

      after_failure = info(q)
      assert after_failure.failed == before.failed + 1
      assert after_failure.inline == before.inline + if(after_failure.evaluates_inline, do: 1, else: 0)
      assert EMLX.to_blob(lazy) == int_blob([4, 6])
      ok = EMLX.add(ints(q, [5]), ints(q, [6]))
      assert EMLX.to_blob(ok) == int_blob([11])
    end)
  end

  test "many processes evaluating small graphs on one queue at once" do
    q = CommandQueue.new!(:cpu)

    results =
      1..8
      |> Enum.map(fn p ->
        Task.async(fn ->
          for i <- 1..150 do
            t = CommandQueue.with_queue(q, fn -> EMLX.multiply(ints(q, [p, i]), ints(q, [i, p])) end)
            EMLX.to_blob(t) == int_blob([p * i, p * i])
          end
        end)
      end)
      |> Enum.flat_map(&Task.await(&1, 60_000))

    assert Enum.all?(results)
  end

  test "dead intermediates are collected before a large evaluation, so MLX reuses their buffers" do
    q = CommandQueue.new!(:cpu)
    n = 4_000_000
    bytes = 4 * n

    {x, y} =
      CommandQueue.with_queue(q, fn ->
        x = EMLX.arange(0, n, 1, false, :cpu) |> EMLX.multiply(EMLX.scalar_tensor(1.0e-6, :float32, :cpu))
        y = EMLX.cos(x)
        :ok = EMLX.eval(x)
        :ok = EMLX.eval(y)
        {x, y}
      end)

    # Free what building x and y left behind (dropped graphs are freed by
    # the queue thread: synchronize waits for that) before measuring.
    :erlang.garbage_collect()
    :ok = CommandQueue.synchronize(q)
    EMLX.reset_peak_memory()
    base = EMLX.memory_info().active_memory
    # exp(x) and the product are garbage once the pipeline has built the sum;
    # the eval follows at once (the VM frees what a garbage collection drops
    # a little later, so EMLX.eval waits for that).
    r =
      CommandQueue.with_queue(q, fn ->
        r = x |> EMLX.exp() |> EMLX.multiply(y) |> EMLX.add(y)
        :ok = EMLX.eval(r)
        r
      end)

    peak = EMLX.memory_info().peak_memory - base
    # One new buffer: the intermediates were collected and MLX reused their
    # buffers in place. (A queue on MLX's own CPU stream threads, as in
    # builds with a GPU, never walks a graph from the NIF; the result's own
    # size decides there, and it is large.)
    assert peak < 2 * bytes, "peak #{peak} bytes for #{bytes}-byte arrays"
    <<first::float-32-native, _::binary>> = EMLX.to_blob(r)
    assert_in_delta first, 2.0, 1.0e-6
  end

  test "an LU factorization computed inside a larger graph (its buffer taken over by the next op)" do
    # MLX 0.32.4's LUF records its result's byte count as its element count;
    # an op that then reuses (donates) that buffer in place wrote past its
    # end. Built lazily, each solve and factorization below is one graph
    # whose LU result only the next op reads. Checked by arithmetic here
    # (a @ x == b; row i of a is row p[i] of l @ u); clearing MLX's buffer
    # cache makes a corrupted heap fail at once.
    for n <- [1, 2, 3, 5, 8], round <- 1..4 do
      a = for i <- 0..(n - 1), do: for(j <- 0..(n - 1), do: 0.1 * (i * n + j) + if(i == j, do: n + round, else: 0.0))
      b = for i <- 0..(n - 1), do: [i - 1.0, 2.0 * i]

      {ea, eb} = {tensor(a, :float32, :cpu), tensor(b, :float32, :cpu)}
      x = EMLX.lazy(fn -> ea |> EMLX.linalg_solve(eb) |> EMLX.add(EMLX.scalar_tensor(0.0, :float32, :cpu)) end)
      [p, l, u] = EMLX.lazy(fn -> EMLX.linalg_lu(ea) end)
      shifted = EMLX.lazy(fn -> EMLX.add(u, EMLX.scalar_tensor(1.0, :float32, :cpu)) end)

      assert_close(matmul(a, to_list(x)), b, 1.0e-4)
      perm = to_list(p)
      lu = matmul(to_list(l), to_list(u))
      assert_close(Enum.map(perm, &Enum.at(lu, &1)), a, 1.0e-4)
      assert_close(to_list(shifted), Enum.map(to_list(u), fn row -> Enum.map(row, &(&1 + 1.0)) end), 1.0e-5)
      EMLX.clear_cache()
    end
  end

  defp matmul(a, b) do
    cols = Enum.zip_with(b, & &1)
    for row <- a, do: for(col <- cols, do: Enum.zip_with(row, col, &(&1 * &2)) |> Enum.sum())
  end

  defp assert_close(got, want, tol) do
    pairs = Enum.zip(List.flatten(got), List.flatten(want))
    assert length(List.flatten(got)) == length(List.flatten(want))

    assert Enum.all?(pairs, fn {g, w} -> abs(g - w) <= tol * max(1.0, abs(w)) end),
           "got #{inspect(got)}, want #{inspect(want)}"
  end
end
