defmodule EMLX.QueueFaultTest do
  # Queue lifetime and faults: owners and callers that die, jobs that fail
  # inside MLX, closing. After each fault the queue (or the default queue)
  # must go on serving correct results, and no reply may go missing.
  use ExUnit.Case, async: true

  import EMLX.QueueHelpers
  alias EMLX.CommandQueue

  # A process that owns a new queue and waits to be killed.
  defp owned_queue do
    parent = self()

    owner =
      spawn(fn ->
        send(parent, {:queue, CommandQueue.new!(:cpu)})
        Process.sleep(:infinity)
      end)

    assert_receive {:queue, q}
    {owner, q}
  end

  defp closed_reply?({:error, {EMLX.NIFError, message}}),
    do: message =~ "closed before this job ran"

  defp closed_reply?(_), do: false

  # Replies to jobs queued behind a slow job when their queue closed: each is
  # the right value or the "closed" error, and once one is an error all later
  # ones are (they ran in order, and nothing runs after the close).
  defp check_waiting_replies(replies, value) do
    assert Enum.all?(replies, &(&1 == {:ok, value} or closed_reply?(&1))), inspect(replies)
    assert replies |> Enum.drop_while(&(not closed_reply?(&1))) |> Enum.all?(&closed_reply?/1)
    Enum.count(replies, &closed_reply?/1)
  end

  # Runs `scenario` until it returns a truthy value, at most `times` times:
  # the scenarios below need a slow job to still be running when the next
  # step happens, which a machine stalled for that long could defeat.
  defp until_observed(times, scenario) do
    Enum.find_value(1..times, fn _ -> scenario.() end) || flunk("not observed in #{times} attempts")
  end

  describe "owner exits" do
    test "mid-job: the running job finishes, waiting jobs get an error, the thread ends" do
      {q, ready, lazy, cancelled} =
        until_observed(3, fn ->
          {owner, q} = owned_queue()
          ready = ints(q, [1, 2])
          lazy = CommandQueue.with_queue(q, fn -> EMLX.lazy(fn -> EMLX.add(ready, ready) end) end)

          slow = submit_eval(slow_tensor(q))
          waiting = for _ <- 1..5, do: submit_blob(queued(q, ready))
          Process.exit(owner, :kill)

          # The slow job was running (or about to): it ends either way.
          reply = await_reply(slow)
          assert reply == :ok or closed_reply?(reply)
          cancelled = check_waiting_replies(Enum.map(waiting, &await_reply/1), int_blob([1, 2]))
          cancelled > 0 && {q, ready, lazy, cancelled}
        end)

      assert eventually(fn -> not CommandQueue.info(q).running end)
      info = CommandQueue.info(q)
      assert info.closed
      assert info.cancelled >= cancelled
      assert info.pending == 0

      # No new work on the closed queue, with an error that says why.
      assert_raise EMLX.NIFError, ~r/command queue #{q.id} is closed/, fn -> CommandQueue.synchronize(q) end

      assert_raise EMLX.NIFError, ~r/is closed/, fn ->
        CommandQueue.with_queue(q, fn -> EMLX.ones({1}, :int32, :cpu) end)
      end

      # Its evaluated tensors are still readable (on the default queue); its
      # unevaluated ones cannot be evaluated any more, and say so.
      assert EMLX.to_blob(ready) == int_blob([1, 2])
      assert EMLX.item(EMLX.sum(ready, [0], false)) == 3
      error = assert_raise EMLX.NIFError, fn -> EMLX.to_blob(lazy) end
      assert error.message =~ "unevaluated result of command queue #{q.id}, which is closed"
      assert_raise EMLX.NIFError, ~r/which is closed/, fn -> EMLX.add(lazy, ready) end
    end

    test "an idle queue closes as soon as its owner exits" do
      {owner, q} = owned_queue()
      Process.exit(owner, :kill)
      assert eventually(fn -> not CommandQueue.info(q).running end)
      assert CommandQueue.info(q).closed
    end

    test "the owner's exit closes the queue even after its handle was garbage collected" do
      parent = self()

      owner =
        spawn(fn ->
          pair =
            CommandQueue.with_queue(CommandQueue.new!(:cpu), fn ->
              EMLX.lazy(fn ->
                {EMLX.add(EMLX.ones({2}, :int32, :cpu), EMLX.ones({2}, :int32, :cpu)),
                 EMLX.multiply(EMLX.full(3, {2}, :int32, :cpu), EMLX.full(3, {2}, :int32, :cpu))}
              end)
            end)

          # Only the tensors leave; the queue handle becomes garbage here.
          send(parent, {:tensors, pair})
          :erlang.garbage_collect()
          Process.sleep(:infinity)
        end)

      assert_receive {:tensors, {first, second}}
      assert EMLX.to_blob(first) == int_blob([2, 2])
      Process.exit(owner, :kill)

      # (queue_info also takes a tensor: the info of the queue it was built on)
      assert eventually(fn -> EMLX.NIF.queue_info(second).closed end)
      assert_raise EMLX.NIFError, ~r/which is closed/, fn -> EMLX.to_blob(second) end

      # The evaluated one stays readable.
      assert EMLX.to_blob(first) == int_blob([2, 2])
    end

    test "the :owner option hands the queue to another process; nil means no owner" do
      holder = spawn(fn -> Process.sleep(:infinity) end)

      q =
        Task.async(fn -> CommandQueue.new!(:cpu, owner: holder) end)
        |> Task.await()

      # The creating task has exited, the owner lives: the queue works.
      assert CommandQueue.synchronize(q) == :ok
      Process.exit(holder, :kill)
      assert eventually(fn -> CommandQueue.info(q).closed end)

      free = Task.async(fn -> CommandQueue.new!(:cpu, owner: nil) end) |> Task.await()
      assert CommandQueue.synchronize(free) == :ok
      assert CommandQueue.close(free) == :ok
      refute CommandQueue.info(free).running
    end
  end

  describe "callers that exit" do
    test "a job whose caller died before it started is skipped, and the queue serves the next" do
      until_observed(3, fn ->
        q = CommandQueue.new!(:cpu)
        slow = submit_eval(slow_tensor(q))
        doomed_input = CommandQueue.with_queue(q, fn -> EMLX.multiply(ints(q, [3]), ints(q, [3])) end)

        {pid, mon} = spawn_monitor(fn -> submit_blob(doomed_input) end)
        assert_receive {:DOWN, ^mon, :process, ^pid, :normal}

        assert await_reply(slow) == :ok
        assert EMLX.to_blob(CommandQueue.with_queue(q, fn -> EMLX.add(ints(q, [1]), ints(q, [1])) end)) == int_blob([2])
        # The skipped job's tensor is intact for anyone else.
        assert EMLX.to_blob(doomed_input) == int_blob([9])
        # Skipped, unless this process stalled past the whole slow job.
        assert %{failed: 0, dropped: dropped} = CommandQueue.info(q)
        dropped == 1
      end)
    end

    test "a caller killed while its own job runs: the reply is discarded harmlessly" do
      q = CommandQueue.new!(:cpu)
      parent = self()

      {pid, mon} =
        spawn_monitor(fn ->
          send(parent, {:submitted, submit_eval(slow_tensor(q))})
          Process.sleep(:infinity)
        end)

      assert_receive {:submitted, _tag}
      Process.exit(pid, :kill)
      assert_receive {:DOWN, ^mon, :process, ^pid, :killed}

      assert CommandQueue.synchronize(q) == :ok
      assert EMLX.item(CommandQueue.with_queue(q, fn -> EMLX.sum(ints(q, [4, 5]), [0], false) end)) == 9
      assert CommandQueue.info(q).running
    end
  end

  describe "jobs that fail inside MLX" do
    test "jobs refused at evaluation raise and the queue serves the next job" do
      q = CommandQueue.new!(:cpu)
      # A scan of 2^31 + 2 elements: the bridge throws on the queue thread,
      # before MLX evaluates it (MLX's scan counts in 32 bits).
      refused =
        CommandQueue.with_queue(q, fn ->
          EMLX.ones({1, 1}, :uint8, :cpu)
          |> EMLX.broadcast_to({2, 1_073_741_825})
          |> EMLX.cumulative_sum(1, false, true)
        end)

      assert_raise ArgumentError, ~r/cannot evaluate CumSum/, fn -> EMLX.eval(refused) end

      # 2^40 float32 elements (4 TiB) as a broadcast view is fine, but reading
      # it back needs a contiguous copy: MLX's CPU allocator would hand back a
      # null buffer (and crash the VM); the eval guard refuses it instead.
      view =
        CommandQueue.with_queue(q, fn ->
          EMLX.ones({1}, :float32, :cpu) |> EMLX.broadcast_to({1_048_576, 1_048_576})
        end)

      error = assert_raise EMLX.NIFError, fn -> EMLX.to_blob(view, 1) end
      assert error.message =~ "4398046511104 bytes"
      assert error.message =~ "memory limit"

      assert EMLX.to_blob(CommandQueue.with_queue(q, fn -> EMLX.add(ints(q, [20]), ints(q, [22])) end)) ==
               int_blob([42])

      assert %{failed: 2, running: true} = CommandQueue.info(q)
    end

    test "a huge broadcast view is not refused: only real allocations count" do
      q = CommandQueue.new!(:cpu)

      view =
        CommandQueue.with_queue(q, fn ->
          EMLX.ones({1}, :float32, :cpu) |> EMLX.broadcast_to({1_048_576, 1_048_576})
        end)

      assert EMLX.eval(view) == :ok
      assert EMLX.shape(view) == {1_048_576, 1_048_576}
    end

    test "bad input found on the queue thread raises ArgumentError; the queue goes on" do
      q = CommandQueue.new!(:cpu)
      v = ints(q, [1, 2, 3])
      error = assert_raise ArgumentError, fn -> EMLX.item(queued(q, v)) end
      assert error.message =~ "exactly one element"
      assert EMLX.item(CommandQueue.with_queue(q, fn -> EMLX.lazy(fn -> EMLX.sum(v, [0], false) end) end)) == 6
      assert CommandQueue.info(q).failed == 1
    end

    test "a deallocated tensor is refused before any job is sent" do
      q = CommandQueue.new!(:cpu)
      t = ints(q, [1])
      EMLX.deallocate(t)
      assert_raise ArgumentError, ~r/deallocated/, fn -> EMLX.to_blob(t) end
      assert CommandQueue.info(q).failed == 0
    end
  end

  describe "close/1" do
    test "waiting jobs get an error reply, nothing is lost, closing twice is fine" do
      until_observed(3, fn ->
        q = CommandQueue.new!(:cpu)
        ready = ints(q, [5])
        slow = submit_eval(slow_tensor(q))
        waiting = for _ <- 1..10, do: submit_blob(queued(q, ready))

        assert CommandQueue.close(q) == :ok
        # close/1 returns once the thread has ended.
        refute CommandQueue.info(q).running
        assert CommandQueue.close(q) == :ok

        reply = await_reply(slow)
        assert reply == :ok or closed_reply?(reply)
        cancelled = check_waiting_replies(Enum.map(waiting, &await_reply/1), int_blob([5]))
        assert EMLX.to_blob(ready) == int_blob([5])
        cancelled > 0
      end)
    end

    test "the default queue is not affected by other queues closing" do
      for _ <- 1..5, do: CommandQueue.close(CommandQueue.new!(:cpu))
      assert EMLX.to_blob(EMLX.add(EMLX.ones({2}, :int32, :cpu), EMLX.ones({2}, :int32, :cpu))) == int_blob([2, 2])
    end
  end
end
