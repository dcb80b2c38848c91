defmodule EMLX.Reliability.FaultsTest do
  # Faults from the BEAM side: a process killed in the middle of an
  # evaluation, NIF calls racing an application stop and restart, tensors
  # dropped by garbage collection while evaluations run. None may crash the
  # VM, leak queue threads or leave MLX memory behind. (Queue faults, an
  # owner or caller dying or an MLX error inside a job, are in the queue
  # tests.) Not async: queue threads and MLX memory are counted VM-wide.
  use ExUnit.Case, async: false

  import ExUnit.CaptureLog

  alias EMLX.NIF

  @mb 1_000_000

  setup do
    settle()
    %{threads: NIF.queue_threads(), active: active()}
  end

  defp active, do: EMLX.memory_info().active_memory

  defp alive? do
    a = EMLX.from_blob(<<1.5::float-32-native, -2.0::float-32-native>>, {2}, :float32, :cpu)
    EMLX.to_blob(EMLX.multiply(a, a)) == <<2.25::float-32-native, 4.0::float-32-native>>
  end

  # Garbage-collects every process, then waits for the queues' pending
  # release jobs and the resource destructors.
  defp settle do
    for pid <- Process.list(), do: :erlang.garbage_collect(pid)
    Process.sleep(20)

    # (While the application is stopped there is no default queue to wait for.)
    case :persistent_term.get({EMLX.CommandQueue, :cpu}, nil) do
      nil -> :ok
      ref -> EMLX.CommandQueue.synchronize(%EMLX.CommandQueue{ref: ref})
    end

    EMLX.clear_cache()
  end

  defp eventually(fun, what, tries \\ 500) do
    cond do
      fun.() ->
        :ok

      tries == 0 ->
        flunk("#{what} (threads #{NIF.queue_threads()}, memory #{inspect(EMLX.memory_info())})")

      true ->
        settle()
        eventually(fun, what, tries - 1)
    end
  end

  defp back_to_baseline(ctx) do
    eventually(fn -> NIF.queue_threads() == ctx.threads end, "queue threads back to #{ctx.threads}")
    eventually(fn -> active() <= ctx.active + @mb end, "MLX active memory back to #{ctx.active} B")
  end

  # A graph that takes a while to evaluate (a few hundred ms here): 64
  # chained 512x512 products of a matrix of 1/512s, which is its own square
  # (exactly, in float32).
  defp slow_graph(device_or_queue \\ :cpu) do
    build = fn ->
      m = EMLX.full(1 / 512, {512, 512}, :float32, :cpu)
      Enum.reduce(1..64, m, fn _, acc -> EMLX.tensordot(acc, m, [1], [0]) end)
    end

    case device_or_queue do
      :cpu -> build.()
      %EMLX.CommandQueue{} = q -> EMLX.CommandQueue.with_queue(q, build)
    end
  end

  describe "a process killed mid-eval" do
    test "on the default queue: no crash, the queue goes on, memory comes back", ctx do
      killed_mid_eval =
        for _round <- 1..3, reduce: 0 do
          killed ->
            parent = self()

            pid =
              spawn(fn ->
                g = slow_graph()
                send(parent, {:evaluating, self()})
                EMLX.eval(g)
                send(parent, {:finished, self()})
              end)

            assert_receive {:evaluating, ^pid}, 10_000
            Process.sleep(5)
            Process.exit(pid, :kill)
            # (An eval that beat the kill is no fault, but it tests nothing.)
            receive do
              {:finished, ^pid} -> killed
            after
              0 -> killed + 1
            end
        end

      assert killed_mid_eval > 0

      # The killed callers' jobs still run to the end; their replies go nowhere.
      assert alive?()
      # The same graph evaluated by a live caller: 512 x 512 entries of 1/512.
      assert EMLX.item(EMLX.sum(slow_graph(), [0, 1], false)) == 512.0
      back_to_baseline(ctx)
    end

    test "on its own queue, which keeps working for other processes", ctx do
      q = EMLX.CommandQueue.new!(:cpu)
      parent = self()

      pid =
        spawn(fn ->
          g = slow_graph(q)
          send(parent, {:evaluating, self()})
          EMLX.eval(g)
        end)

      assert_receive {:evaluating, ^pid}, 10_000
      Process.exit(pid, :kill)
      assert EMLX.CommandQueue.synchronize(q) == :ok

      sum = EMLX.CommandQueue.with_queue(q, fn -> EMLX.sum(EMLX.ones({1000}, :int32, :cpu), [0], false) end)
      assert EMLX.item(sum) == 1000
      assert :ok = NIF.queue_close(q.ref)
      back_to_baseline(ctx)
    end

    test "while thousands of its jobs are still queued", ctx do
      parent = self()

      pid =
        spawn(fn ->
          t = EMLX.full(3.0, {64 * 1024}, :float32, :cpu)

          for i <- 1..3000 do
            :ok = NIF.eval([EMLX.add(t, EMLX.scalar_tensor(i, :float32, :cpu))], make_ref())
          end

          send(parent, {:queued, self()})
          Process.sleep(:infinity)
        end)

      assert_receive {:queued, ^pid}, 30_000
      Process.exit(pid, :kill)
      assert alive?()
      back_to_baseline(ctx)
    end

    test "while copying a large binary in on a dirty scheduler", ctx do
      blob = :binary.copy(<<1.0::float-32-native>>, 4 * @mb)

      pids =
        for _ <- 1..4 do
          spawn(fn -> Stream.repeatedly(fn -> EMLX.from_blob(blob, {4 * @mb}, :float32, :cpu) end) |> Stream.run() end)
        end

      Process.sleep(200)
      Enum.each(pids, &Process.exit(&1, :kill))
      assert alive?()
      back_to_baseline(ctx)
    end
  end

  describe "application shutdown" do
    test "NIF calls racing Application.stop(:emlx) and a restart raise or succeed; nothing crashes", ctx do
      parent = self()

      worker = fn ->
        Stream.repeatedly(fn ->
          try do
            a = EMLX.full(2.0, {256}, :float32, :cpu)
            <<x::float-32-native, _::binary>> = EMLX.to_blob(EMLX.add(a, a))
            if x == 4.0, do: :ok, else: {:wrong, x}
          rescue
            e in [ArgumentError, EMLX.NIFError] -> {:raised, e.__struct__}
            e -> {:unexpected, e}
          end
        end)
        |> Enum.reduce_while(%{}, fn outcome, acc ->
          receive do
            :stop -> {:halt, acc}
          after
            0 -> {:cont, Map.update(acc, outcome, 1, &(&1 + 1))}
          end
        end)
        |> then(&send(parent, {:outcomes, self(), &1}))
      end

      log =
        capture_log(fn ->
          workers = for _ <- 1..6, do: spawn(worker)
          Process.sleep(100)
          assert :ok = Application.stop(:emlx)

          # Stopped: direct NIF calls still answer, and EMLX calls work or
          # raise an ArgumentError that says to start the application.
          assert is_integer(NIF.queue_threads())
          assert alive_or_not_started?()
          Process.sleep(100)
          assert {:ok, _} = Application.ensure_all_started(:emlx)
          Process.sleep(100)
          Enum.each(workers, &send(&1, :stop))

          outcomes =
            for w <- workers do
              assert_receive {:outcomes, ^w, outcomes}, 30_000
              outcomes
            end

          all = Enum.reduce(outcomes, %{}, &Map.merge(&1, &2, fn _, a, b -> a + b end))
          assert Map.get(all, :ok, 0) > 0
          bad = Map.drop(all, [:ok, {:raised, ArgumentError}, {:raised, EMLX.NIFError}])
          assert bad == %{}, "unexpected outcomes: #{inspect(bad)}"
        end)

      assert is_binary(log)
      assert alive?()
      # The queues of the first start are released once nothing refers to them.
      back_to_baseline(ctx)
    end

    test "stop, calls while stopped, then restart: a clean start each time", ctx do
      defaults = if NIF.gpu_available(), do: 2, else: 1

      capture_log(fn ->
        for _ <- 1..3 do
          evaluated = EMLX.full(7, {3}, :int32, :cpu)
          :ok = EMLX.eval(evaluated)
          lazy = EMLX.lazy(fn -> EMLX.add(evaluated, evaluated) end)

          assert :ok = Application.stop(:emlx)
          # The application's queues end with it.
          eventually(fn -> NIF.queue_threads() == ctx.threads - defaults end, "default queue threads ended")
          assert alive_or_not_started?()
          assert_raise EMLX.NIFError, ~r/closed/, fn -> EMLX.to_blob(lazy) end

          assert {:ok, _} = Application.ensure_all_started(:emlx)
          assert alive?()
          # An evaluated tensor of the closed queue is read on the new default
          # queue; an unevaluated one can no longer be computed.
          assert EMLX.to_blob(evaluated) == <<7::32-native, 7::32-native, 7::32-native>>
          assert_raise EMLX.NIFError, ~r/closed/, fn -> EMLX.to_blob(lazy) end
        end
      end)

      back_to_baseline(ctx)
    end
  end

  describe "application restarts under load (crashed the VM before the fixes)" do
    setup do
      on_exit(fn -> Application.ensure_all_started(:emlx) end)
    end

    test "60 stop/start cycles back to back", ctx do
      capture_log(fn ->
        for _ <- 1..60 do
          assert :ok = Application.stop(:emlx)
          assert {:ok, _} = Application.ensure_all_started(:emlx)
        end
      end)

      assert alive?()
      back_to_baseline(ctx)
    end

    test "stop/start cycles while processes copy large binaries in (dirty NIFs)", ctx do
      blob = :binary.copy(<<1.0::float-32-native>>, 100_000)

      workers =
        for _ <- 1..3 do
          spawn(fn ->
            Stream.repeatedly(fn ->
              try do
                EMLX.from_blob(blob, {100_000}, :float32, :cpu)
              rescue
                e in [ArgumentError, EMLX.NIFError] -> e
              end
            end)
            |> Stream.run()
          end)
        end

      capture_log(fn ->
        for _ <- 1..60 do
          assert :ok = Application.stop(:emlx)
          assert {:ok, _} = Application.ensure_all_started(:emlx)
        end
      end)

      Enum.each(workers, &Process.exit(&1, :kill))
      assert alive?()
      back_to_baseline(ctx)
    end
  end

  defp alive_or_not_started? do
    alive?()
  rescue
    e in ArgumentError -> e.message =~ "not started"
  end

  describe "garbage collection during evaluation" do
    test "tensors dropped by GC while other processes evaluate: right answers, no leak", ctx do
      evaluators =
        for i <- 1..4 do
          Task.async(fn ->
            for j <- 1..150 do
              a = EMLX.full(i * 1.0, {1024}, :float32, :cpu)
              b = EMLX.full(j * 1.0, {1024}, :float32, :cpu)
              s = EMLX.sum(EMLX.multiply(a, b), [0], false)
              # Garbage from earlier iterations is collected mid-loop.
              if rem(j, 10) == 0, do: :erlang.garbage_collect()
              EMLX.item(s) == i * j * 1024.0
            end
          end)
        end

      droppers =
        for _ <- 1..4 do
          Task.async(fn ->
            for _ <- 1..150 do
              # Short-lived processes whose heaps (and tensors) die with them:
              # evaluated buffers, lazy nodes and a 200-node unevaluated chain.
              spawn(fn ->
                t = EMLX.full(1.0, {16 * 1024}, :float32, :cpu)
                :ok = EMLX.eval(t)
                _lazy = EMLX.exp(t)
                _chain = Enum.reduce(1..200, t, fn _, acc -> EMLX.add(acc, t) end)
              end)

              :erlang.garbage_collect()
            end

            true
          end)
        end

      results = Task.await_many(evaluators ++ droppers, 120_000)
      assert results |> List.flatten() |> Enum.all?()
      assert alive?()
      back_to_baseline(ctx)
    end

    test "an unevaluated 100,000-node graph dropped by GC is freed on the queue", ctx do
      {pid, ref} =
        spawn_monitor(fn ->
          t = EMLX.scalar_tensor(1, :int32, :cpu)
          chain = EMLX.lazy(fn -> Enum.reduce(1..100_000, t, fn _, acc -> EMLX.add(acc, t) end) end)
          assert EMLX.shape(chain) == {}
        end)

      assert_receive {:DOWN, ^ref, :process, ^pid, :normal}, 60_000
      assert alive?()
      back_to_baseline(ctx)
    end
  end
end
