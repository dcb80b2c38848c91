defmodule EMLX.CommandQueueTest do
  # The queue API, binding, the cross-queue rule and ordering. Expected
  # values are computed by hand. Lifetime and faults: queue_fault_test.exs.
  use ExUnit.Case, async: true

  import EMLX.QueueHelpers
  alias EMLX.CommandQueue

  describe "new/2 and new!/2" do
    test "a queue on :cpu is a fresh thread with its own stream" do
      a = CommandQueue.new!(:cpu)
      b = CommandQueue.new!(:cpu)
      assert %CommandQueue{device: :cpu} = a
      assert a.id != b.id and a.ref != b.ref
      assert CommandQueue.info(a).stream != CommandQueue.info(b).stream
      assert %{running: true, closed: false, pending: 0, capacity: 65_536} = CommandQueue.info(a)
    end

    test "bad devices and options are rejected with a clear message" do
      assert {:error, "unknown device :tpu: expected :cpu or :gpu"} = CommandQueue.new(:tpu)
      assert_raise ArgumentError, ~r/unknown device/, fn -> CommandQueue.new!(:tpu) end
      assert_raise ArgumentError, ~r/:capacity .* positive integer/, fn -> CommandQueue.new!(:cpu, capacity: 0) end
      assert_raise ArgumentError, ~r/:owner .* pid or nil/, fn -> CommandQueue.new!(:cpu, owner: :me) end
      assert_raise ArgumentError, ~r/keyword list/, fn -> CommandQueue.new!(:cpu, :fast) end
    end

    test ":gpu fails cleanly where MLX has no GPU" do
      if EMLX.NIF.gpu_available() do
        assert {:ok, %CommandQueue{device: :gpu}} = CommandQueue.new(:gpu)
      else
        assert {:error, message} = CommandQueue.new(:gpu)
        assert message =~ "no GPU"
      end
    end

    test "a dead owner is refused" do
      pid = spawn(fn -> :ok end)
      ref = Process.monitor(pid)
      assert_receive {:DOWN, ^ref, _, _, _}
      assert_raise ArgumentError, ~r/owner .* live local process/, fn -> CommandQueue.new!(:cpu, owner: pid) end
    end
  end

  describe "with_queue/2" do
    test "binds ops to the queue, nests, and restores the previous binding" do
      outer = CommandQueue.new!(:cpu)
      inner = CommandQueue.new!(:cpu)
      on = fn -> EMLX.NIF.tensor_queue_id(EMLX.ones({1}, :int32, :cpu)) end
      default_id = on.()

      CommandQueue.with_queue(outer, fn ->
        assert on.() == outer.id

        CommandQueue.with_queue(inner, fn ->
          assert on.() == inner.id
          assert CommandQueue.bound() == inner
        end)

        assert on.() == outer.id
      end)

      assert on.() == default_id
      assert CommandQueue.bound() == nil
      refute default_id in [outer.id, inner.id]
    end

    test "restores the binding when the function raises or throws" do
      q = CommandQueue.new!(:cpu)
      assert_raise RuntimeError, fn -> CommandQueue.with_queue(q, fn -> raise "boom" end) end
      assert CommandQueue.bound() == nil
      assert catch_throw(CommandQueue.with_queue(q, fn -> throw(:out) end)) == :out
      assert CommandQueue.bound() == nil
    end

    test "returns the function's value and evaluates on the bound queue" do
      q = CommandQueue.new!(:cpu)
      t = CommandQueue.with_queue(q, fn -> EMLX.lazy(fn -> EMLX.add(ints(q, [1, 2]), ints(q, [10, 20])) end) end)
      assert EMLX.to_blob(t) == int_blob([11, 22])
      # from_blob x2, add: graph building only; the to_blob is the one job.
      assert CommandQueue.info(q).completed == 1
    end
  end

  describe "cross-queue rule" do
    test "a lazy tensor of queue A used in an op on queue B is evaluated on A first" do
      a = CommandQueue.new!(:cpu)
      b = CommandQueue.new!(:cpu)

      x =
        CommandQueue.with_queue(a, fn -> EMLX.lazy(fn -> EMLX.multiply(ints(a, [1, 2, 3]), ints(a, [4, 5, 6])) end) end)

      assert EMLX.NIF.needs_eval_for(b.ref, x)

      y = CommandQueue.with_queue(b, fn -> EMLX.lazy(fn -> EMLX.add(x, ints(b, [100, 100, 100])) end) end)
      assert EMLX.NIF.tensor_queue_id(y) == b.id
      refute EMLX.NIF.needs_eval_for(b.ref, x)
      assert EMLX.to_blob(y) == int_blob([104, 110, 118])
      assert EMLX.to_blob(x) == int_blob([4, 10, 18])
      # x's evaluation ran on A, y's on B.
      assert CommandQueue.info(a).completed >= 1
      assert CommandQueue.info(b).completed >= 1
    end

    test "inputs from several queues, lists of tensors and deep graphs" do
      [a, b, c] = for _ <- 1..3, do: CommandQueue.new!(:cpu)
      # 1 + 1 + ... (20 times) on A; 5 * 3 on C.
      xa =
        CommandQueue.with_queue(a, fn ->
          Enum.reduce(1..19, ints(a, [1, 1]), fn _, t -> EMLX.add(t, ints(a, [1, 1])) end)
        end)

      xc = CommandQueue.with_queue(c, fn -> EMLX.multiply(ints(c, [5, 5]), ints(c, [3, 3])) end)

      y = CommandQueue.with_queue(b, fn -> EMLX.subtract(xa, xc) end)
      assert EMLX.to_blob(y) == int_blob([5, 5])
      assert EMLX.item(CommandQueue.with_queue(b, fn -> EMLX.sum(EMLX.multiply(xa, xc), [0], false) end)) == 600
    end

    test "a lazy tensor shared by processes bound to other queues is right for each" do
      shared_q = CommandQueue.new!(:cpu)
      shared = CommandQueue.with_queue(shared_q, fn -> EMLX.add(ints(shared_q, [7, 8]), ints(shared_q, [1, 1])) end)

      results =
        1..8
        |> Task.async_stream(fn k ->
          q = CommandQueue.new!(:cpu)
          CommandQueue.with_queue(q, fn -> EMLX.to_blob(EMLX.multiply(shared, ints(q, [k, k]))) end)
        end)
        |> Enum.map(fn {:ok, blob} -> blob end)

      assert results == for(k <- 1..8, do: int_blob([8 * k, 9 * k]))
    end

    test "a tensor whose evaluation is still running on its queue is waited for, not read early" do
      # Many processes on their own queues use one lazy tensor at once: the
      # first evaluates it on its queue; the others may see it scheduled but
      # not computed yet, and must wait for it rather than read its buffer
      # (which, donated from x, still holds x's values until the add runs).
      owner = CommandQueue.new!(:cpu)
      users = for _ <- 1..8, do: CommandQueue.new!(:cpu)
      n = 500_000
      blob = int_blob(Enum.to_list(1..n))

      for round <- 1..20 do
        shared =
          CommandQueue.with_queue(owner, fn ->
            x = EMLX.from_blob(blob, {n}, :int32, :cpu)
            EMLX.add(EMLX.multiply(x, ints(owner, [2])), ints(owner, [round]))
          end)

        sums =
          users
          |> Task.async_stream(fn q ->
            CommandQueue.with_queue(q, fn -> EMLX.item(EMLX.sum(EMLX.astype(shared, :int64), [0], false)) end)
          end)
          |> Enum.map(fn {:ok, sum} -> sum end)

        # the sum of 2k + round for k = 1..n
        assert sums == List.duplicate(n * (n + 1) + round * n, 8), "round #{round}: #{inspect(sums)}"
      end
    end

    test "evaluating lazy tensors of two queues together is refused clearly" do
      a = CommandQueue.new!(:cpu)
      b = CommandQueue.new!(:cpu)
      ta = CommandQueue.with_queue(a, fn -> EMLX.lazy(fn -> EMLX.add(ints(a, [1]), ints(a, [1])) end) end)
      tb = CommandQueue.with_queue(b, fn -> EMLX.lazy(fn -> EMLX.add(ints(b, [1]), ints(b, [1])) end) end)
      error = assert_raise ArgumentError, fn -> EMLX.Native.eval([ta, tb]) end
      assert error.message =~ "one command queue"
      refute error.message =~ "There is no Stream"
      # Evaluated tensors may be mixed freely; only the lazy ones need a queue.
      EMLX.eval(ta)
      assert :ok = EMLX.Native.eval([ta, tb])
      assert EMLX.to_blob(tb) == int_blob([2])
    end
  end

  describe "ordering" do
    test "jobs on one queue complete in submission order" do
      q = CommandQueue.new!(:cpu)

      jobs =
        for k <- 1..60 do
          {t, s} =
            CommandQueue.with_queue(q, fn ->
              EMLX.lazy(fn ->
                t = EMLX.add(ints(q, [k, -k]), ints(q, [k, k]))
                {t, EMLX.sum(t, [0], false)}
              end)
            end)

          case rem(k, 4) do
            0 -> {submit_blob(t), {:ok, int_blob([2 * k, 0])}}
            1 -> {submit_item(s), {:ok, 2 * k}}
            2 -> {submit_eval(t), :ok}
            3 -> {submit_sync(q), :ok}
          end
        end

      arrivals =
        for _ <- jobs do
          receive do
            {tag, reply, ns} when is_reference(tag) and is_integer(ns) -> {tag, reply}
          after
            10_000 -> flunk("a reply is missing")
          end
        end

      assert arrivals == jobs
      assert %{completed: 60, failed: 0} = CommandQueue.info(q)
    end

    test "synchronize waits for the jobs sent before it" do
      q = CommandQueue.new!(:cpu)
      tag = submit_eval(slow_tensor(q, 1))
      assert CommandQueue.synchronize(q) == :ok
      # The eval reply was sent before synchronize's, so it is already here.
      assert_received {^tag, :ok, ns} when ns > 0
    end
  end

  describe "reading evaluated tensors" do
    test "item and to_blob of an evaluated tensor answer without a queue job" do
      q = CommandQueue.new!(:cpu)
      t = CommandQueue.with_queue(q, fn -> EMLX.lazy(fn -> EMLX.add(ints(q, [20, 1]), ints(q, [22, 1])) end) end)
      s = CommandQueue.with_queue(q, fn -> EMLX.lazy(fn -> EMLX.sum(t, [0], false) end) end)
      # The first reads evaluate, on the queue.
      assert EMLX.to_blob(t) == int_blob([42, 2])
      assert EMLX.item(s) == 44
      jobs = CommandQueue.info(q).completed
      assert jobs == 2

      assert EMLX.to_blob(t) == int_blob([42, 2])
      assert EMLX.to_blob(t, 1) == int_blob([42])
      assert EMLX.item(s) == 44
      assert CommandQueue.info(q).completed == jobs
    end

    test "a non-contiguous view of an evaluated tensor still goes through its queue" do
      q = CommandQueue.new!(:cpu)
      m = CommandQueue.with_queue(q, fn -> EMLX.reshape(ints(q, [1, 2, 3, 4]), {2, 2}) end)
      EMLX.eval(m)
      jobs = CommandQueue.info(q).completed
      assert EMLX.to_blob(CommandQueue.with_queue(q, fn -> EMLX.transpose(m, [1, 0]) end)) == int_blob([1, 3, 2, 4])
      assert CommandQueue.info(q).completed == jobs + 1
    end
  end

  describe "capacity" do
    test "a full queue refuses jobs with a clear error and recovers" do
      q = CommandQueue.new!(:cpu, capacity: 2)
      slow = submit_eval(slow_tensor(q, 3))
      small = ints(q, [3, 4])

      {accepted, error} =
        Enum.reduce_while(1..1000, {[], nil}, fn _, {acc, _} ->
          try do
            {:cont, {[submit_blob(queued(q, small)) | acc], nil}}
          rescue
            e in EMLX.NIFError -> {:halt, {acc, e}}
          end
        end)

      assert %EMLX.NIFError{message: message} = error
      assert message =~ "command queue #{q.id} is full"
      assert message =~ ":capacity"
      # Behind the slow job, 1 or 2 jobs fit (more only if the machine stalled
      # this process for the whole slow job).
      assert accepted != []
      assert await_reply(slow) == :ok
      for tag <- Enum.reverse(accepted), do: assert(await_reply(tag) == {:ok, int_blob([3, 4])})
      assert EMLX.to_blob(small) == int_blob([3, 4])
    end
  end
end
