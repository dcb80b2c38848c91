defmodule EMLX.Reliability.RepliesTest do
  # A caller never waits forever: every job gets exactly one reply, even
  # when the job panics, when encoding its result panics, or when the queue
  # thread itself dies (faults injected with EMLX.NIF.queue_fault/3). And a
  # stream mismatch, which the queues are built never to cause, is reported
  # as EMLX's own typed error, not as MLX's message.
  #
  # Each test uses its own queue. Not async: a dying queue thread changes
  # the VM's thread count, which other suites compare.
  use ExUnit.Case, async: false

  import EMLX.QueueHelpers
  alias EMLX.CommandQueue

  defp fault(%CommandQueue{ref: q}, kind) do
    ref = make_ref()
    :ok = EMLX.NIF.queue_fault(q, kind, ref)
    ref
  end

  # `a`: an evaluated int32 tensor on `q`; the queue still computes right.
  defp serves?(q) do
    a = ints(q, [3, 4])
    EMLX.to_blob(CommandQueue.with_queue(q, fn -> EMLX.multiply(a, a) end)) == int_blob([9, 16])
  end

  defp ints(values), do: EMLX.from_blob(int_blob(values), {length(values)}, :int32, :cpu)

  defp internal_error?({:error, {EMLX.NIFError, message}}, text),
    do: message =~ "internal error in EMLX" and message =~ text

  defp internal_error?(_, _), do: false

  test "a job that panics is answered with an error, and the queue goes on" do
    q = CommandQueue.new!(:cpu)
    assert internal_error?(await_reply(fault(q, :panic_in_job)), "a command queue job panicked")
    assert serves?(q)
    CommandQueue.close(q)
  end

  test "a panic while encoding a reply is answered with an error, and the queue goes on" do
    q = CommandQueue.new!(:cpu)

    # Before replies were guarded, this job was never answered.
    assert internal_error?(await_reply(fault(q, :panic_in_reply), 5_000), "encoding the result")
    assert serves?(q)
    assert CommandQueue.info(q).failed == 0
    CommandQueue.close(q)
  end

  test "a queue thread that dies answers its job and every waiting one, and the queue is closed" do
    q = CommandQueue.new!(:cpu)
    threads = EMLX.NIF.queue_threads()
    ready = ints(q, [1, 2])

    # A slow job first, so that the others wait in the channel behind the crash.
    slow = submit_eval(slow_tensor(q))
    crash = fault(q, :crash_thread)
    waiting = for _ <- 1..5, do: submit_blob(queued(q, ready))

    assert await_reply(slow) == :ok
    assert {:error, {EMLX.NIFError, crashed}} = await_reply(crash)
    assert crashed =~ "ended before answering this job"

    for ref <- waiting do
      assert {:error, {EMLX.NIFError, message}} = await_reply(ref)
      assert message =~ "ended before running this job"
    end

    # The replies go out just before the thread ends.
    assert CommandQueue.info(q).closed
    assert eventually(fn -> not CommandQueue.info(q).running end)
    assert eventually(fn -> EMLX.NIF.queue_threads() == threads - 1 end)

    # The closed queue refuses new work at once; evaluated tensors stay readable
    # (through the default queue); the rest of EMLX goes on.
    assert_raise EMLX.NIFError, ~r/closed/, fn -> CommandQueue.with_queue(q, fn -> EMLX.add(ready, ready) end) end
    assert EMLX.to_blob(ready) == int_blob([1, 2])
    assert EMLX.to_blob(EMLX.add(ints([5]), ints([6]))) == int_blob([11])
  end

  test "callers waiting through the public API get an exception when the thread dies" do
    q = CommandQueue.new!(:cpu)
    parent = self()
    lazy = slow_tensor(q, 8)

    waiters =
      for _ <- 1..4 do
        spawn(fn ->
          result =
            try do
              {:ok, EMLX.to_blob(EMLX.sum(lazy, [0, 1], false))}
            rescue
              e -> {:raised, e.__struct__}
            end

          send(parent, {:done, self(), result})
        end)
      end

    Process.sleep(20)
    fault(q, :crash_thread)

    for pid <- waiters do
      assert_receive {:done, ^pid, result}, 30_000
      # Each waiter's job ran before the crash (a value) or was answered with an error.
      assert match?({:ok, _}, result) or result == {:raised, EMLX.NIFError}
    end
  end

  test "evaluating a graph on a queue that does not own its stream is EMLX's typed error" do
    q = CommandQueue.new!(:cpu)
    other = CommandQueue.new!(:cpu)
    lazy = CommandQueue.with_queue(other, fn -> EMLX.lazy(fn -> EMLX.add(ints(other, [1]), ints(other, [2])) end) end)

    assert {:error, {EMLX.NIFError, message}} = await_reply(fault(q, {:eval_foreign, lazy}))
    assert message =~ "internal error in EMLX: a graph node of stream"
    refute message =~ "There is no Stream"

    # Nothing was evaluated: the tensor's own queue still computes it.
    assert EMLX.to_blob(lazy) == int_blob([3])
    assert serves?(q)
    Enum.each([q, other], &CommandQueue.close/1)
  end

  test "the cross-queue signal is its own exception type, naming the argument" do
    other = CommandQueue.new!(:cpu)
    lazy = CommandQueue.with_queue(other, fn -> EMLX.lazy(fn -> EMLX.add(ints(other, [1]), ints(other, [2])) end) end)
    here = ints([10])
    q = :persistent_term.get({EMLX.CommandQueue, :cpu})

    error = assert_raise EMLX.CrossQueueError, fn -> EMLX.NIF.op(q, :add, [here, lazy]) end
    assert error.argument == 2
    assert error.message =~ "add: argument 2: the tensor is an unevaluated result of another command queue"

    # Through EMLX the rule applies: the input is evaluated on its queue first.
    assert EMLX.to_blob(EMLX.add(here, lazy)) == int_blob([13])
    CommandQueue.close(other)
  end
end
