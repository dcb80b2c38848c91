defmodule EMLX.Reliability.ReadinessTest do
  # Readiness read from many processes while the queue thread evaluates the
  # same tensor (EMLX.ReadinessStress): every read must give the oracle's
  # bytes, and nothing may raise. EMLX's own readiness flag is the only
  # state read off the queue thread; this is the workload that was run under
  # valgrind's helgrind (docs/thread_checking.md).
  #
  # Not async: it counts the VM's queue threads.
  use ExUnit.Case, async: false

  test "32 processes reading and using one tensor while it is evaluated" do
    threads = EMLX.NIF.queue_threads()
    assert EMLX.ReadinessStress.run(processes: 32, rounds: 8) == []
    # Its two queues are closed: no thread is left behind (a queue another
    # test closed just before may still be ending when `threads` is read).
    assert EMLX.QueueHelpers.eventually(fn -> EMLX.NIF.queue_threads() <= threads end)
  end

  test "an op that returns its input unchanged shares the input's readiness" do
    t = EMLX.lazy(fn -> EMLX.add(EMLX.scalar_tensor(1.0, :float32, :cpu), EMLX.scalar_tensor(2.0, :float32, :cpu)) end)
    # A reshape to the same shape is MLX's input itself.
    same = EMLX.reshape(t, {})
    other = EMLX.CommandQueue.new!(:cpu)
    assert EMLX.NIF.needs_eval_for(other.ref, same)
    :ok = EMLX.eval(t)
    # Evaluating the input made the alias ready too: another queue may use it.
    refute EMLX.NIF.needs_eval_for(other.ref, same)
    assert EMLX.item(same) == 3.0
    EMLX.CommandQueue.close(other)
  end
end
