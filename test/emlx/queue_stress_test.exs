defmodule EMLX.QueueStressTest do
  # 32 processes x 200 mixed jobs over 4 queues. Each job's result is
  # checked bit for bit against the same job run single-threaded on the
  # default queue, and against values computed in Elixir (all data are small
  # integers, exact in int32 and float32). Afterwards no queue thread is left.
  #
  # async: false because it counts the VM's queue threads.
  use ExUnit.Case, async: false

  import EMLX.QueueHelpers
  alias EMLX.CommandQueue

  @processes 32
  @jobs 200
  @queues 4

  # Job (i, j): its inputs, what to do with them, and the expected bytes.
  defp inputs(i, j) do
    n = 2 + rem(i + j, 5) * 2
    a = for k <- 0..(n - 1), do: rem(i * 7 + j * 3 + k * 5, 19) - 9
    b = for k <- 0..(n - 1), do: rem(i * 11 + j + k * 3, 13) - 6
    {a, b}
  end

  defp f32(values), do: for(v <- values, into: <<>>, do: <<v * 1.0::float-32-native>>)

  # {function building and reading the result on `other` / current queue, oracle bytes}
  defp job(i, j, other) do
    {a, b} = inputs(i, j)

    case rem(i * 31 + j, 6) do
      0 ->
        # ops + to_blob: (a + b) * a
        {fn -> EMLX.to_blob(EMLX.multiply(EMLX.add(t(a), t(b)), t(a))) end,
         int_blob(Enum.zip_with(a, b, fn x, y -> (x + y) * x end))}

      1 ->
        # item of a float32 sum
        {fn -> <<EMLX.item(EMLX.sum(EMLX.astype(t(a), :float32), [0], false))::float-64>> end,
         <<Enum.sum(a) * 1.0::float-64>>}

      2 ->
        # eval, then to_blob of the evaluated tensor
        {fn ->
           x = EMLX.subtract(t(a), t(b))
           :ok = EMLX.eval(x)
           EMLX.to_blob(x)
         end, int_blob(Enum.zip_with(a, b, &(&1 - &2)))}

      3 ->
        # cross-queue: a lazy tensor built on another queue, used here
        {fn ->
           x = CommandQueue.with_queue(other, fn -> EMLX.multiply(t(a), t(b)) end)
           EMLX.to_blob(EMLX.add(x, t(a)))
         end, int_blob(Enum.zip_with(a, b, fn x, y -> x * y + x end))}

      4 ->
        # matrix product in float32: [2, n/2] x [n/2, 2]
        h = div(length(a), 2)

        {fn ->
           m = EMLX.reshape(EMLX.astype(t(a), :float32), {2, h})
           w = EMLX.transpose(EMLX.reshape(EMLX.astype(t(b), :float32), {2, h}), [1, 0])
           EMLX.to_blob(EMLX.tensordot(m, w, [1], [0]))
         end, f32(matmul(Enum.chunk_every(a, h), Enum.chunk_every(b, h)))}

      5 ->
        # to_blob with a limit, of a transposed (strided) view
        {fn -> EMLX.to_blob(EMLX.transpose(EMLX.reshape(t(a), {2, div(length(a), 2)}), [1, 0]), 3) end,
         a |> Enum.chunk_every(div(length(a), 2)) |> Enum.zip_with(& &1) |> List.flatten() |> Enum.take(3) |> int_blob()}
    end
  end

  # rows of m times rows of w (w given transposed): m . w^T
  defp matmul(m, w), do: for(r <- m, c <- w, do: Enum.sum(Enum.zip_with(r, c, &(&1 * &2))))

  defp t(values), do: EMLX.from_blob(int_blob(values), {length(values)}, :int32, :cpu)

  defp defaults, do: if(EMLX.NIF.gpu_available(), do: 2, else: 1)

  setup do
    # Queues of earlier (async) tests end when their owners exit; wait for
    # them so the thread count starts from the application's own queues.
    assert eventually(fn -> EMLX.NIF.queue_threads() == defaults() end),
           "#{EMLX.NIF.queue_threads()} queue threads alive, expected #{defaults()}"

    :ok
  end

  test "32 processes x 200 mixed jobs over 4 queues match single-threaded results bit for bit" do
    baseline = EMLX.NIF.queue_threads()
    queues = for _ <- 1..@queues, do: CommandQueue.new!(:cpu)
    assert EMLX.NIF.queue_threads() == baseline + @queues
    default = %CommandQueue{ref: CommandQueue.default(:cpu), device: :cpu}

    # Single-threaded, on the default queue: the reference results.
    expected =
      for i <- 1..@processes, j <- 1..@jobs, into: %{} do
        {run, oracle} = job(i, j, default)
        result = run.()
        assert result == oracle, "job #{i}/#{j}: #{inspect(result)} != oracle #{inspect(oracle)}"
        {{i, j}, result}
      end

    got =
      1..@processes
      |> Task.async_stream(
        fn i ->
          mine = Enum.at(queues, rem(i, @queues))
          other = Enum.at(queues, rem(i + 1, @queues))

          # Odd processes keep every op lazy (each read is a job); even ones
          # let tiny results be computed as they are built, when their
          # queue is idle.
          mode = if rem(i, 2) == 1, do: &EMLX.lazy/1, else: & &1.()

          CommandQueue.with_queue(mine, fn ->
            mode.(fn ->
              for j <- 1..@jobs do
                {run, _oracle} = job(i, j, other)
                {{i, j}, run.()}
              end
            end)
          end)
        end,
        max_concurrency: @processes,
        ordered: false,
        timeout: 120_000
      )
      |> Enum.flat_map(fn {:ok, results} -> results end)
      |> Map.new()

    assert map_size(got) == @processes * @jobs
    mismatches = for {key, value} <- got, expected[key] != value, do: key
    assert mismatches == []

    infos = Enum.map(queues, &CommandQueue.info/1)
    assert Enum.all?(infos, &(&1.failed == 0 and &1.cancelled == 0 and &1.dropped == 0))
    # Every lazy process did all its reads on its own queue (or, cross-queue,
    # on the other one): together at least one job per (i, j).
    assert Enum.sum(Enum.map(infos, & &1.completed)) >= div(@processes, 2) * @jobs

    Enum.each(queues, &CommandQueue.close/1)
    assert Enum.all?(queues, &(not CommandQueue.info(&1).running))
    assert EMLX.NIF.queue_threads() == baseline
  end

  test "a queue nothing refers to any more ends its thread" do
    baseline = EMLX.NIF.queue_threads()

    {pid, mon} =
      spawn_monitor(fn ->
        q = CommandQueue.new!(:cpu, owner: nil)
        x = CommandQueue.with_queue(q, fn -> EMLX.add(t([1]), t([2])) end)
        3 = EMLX.item(x)
      end)

    assert_receive {:DOWN, ^mon, :process, ^pid, :normal}, 5_000
    # Not closed by anyone and ownerless: it ends because its handle and its
    # tensors were garbage collected with the process.
    assert eventually(fn -> EMLX.NIF.queue_threads() == baseline end)
  end

  test "a queue stays alive while a tensor built on it is held" do
    baseline = EMLX.NIF.queue_threads()
    parent = self()

    spawn(fn ->
      q = CommandQueue.new!(:cpu, owner: nil)
      send(parent, {:tensor, CommandQueue.with_queue(q, fn -> EMLX.add(t([20]), t([22])) end)})
    end)

    assert_receive {:tensor, x}
    # The creator is gone, but x still needs its queue to be evaluated.
    assert EMLX.to_blob(x) == int_blob([42])
    assert EMLX.NIF.queue_threads() == baseline + 1
  end
end
