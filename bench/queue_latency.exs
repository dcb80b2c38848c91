# Command-queue latency and isolation. Run: mix run bench/queue_latency.exs
# (no Nx needed). Options: --n ITERATIONS (default 2000), --slow STEPS
# (1024x1024 float32 matrix products in the slow job, default 8).
#
# 1. Round trip of `add` + `to_blob` through a queue, next to the time the
#    job ran on the queue thread (MLX's evaluation plus wrapping the buffer),
#    as the queue thread itself reports it in its reply, and an eval-only job
#    (`run_ns` there is mx::eval alone).
# 2. Isolation: a slow job on queue A; meanwhile add + to_blob round trips
#    on queue B, and one round trip on A, behind the slow job.
#
# Uses the internal job protocol (EMLX.NIF job + `{tag, reply, run_ns}`) to
# read the queue thread's own timing.

defmodule QueueLatencyBench do
  alias EMLX.CommandQueue

  def main(argv) do
    {opts, _, _} = OptionParser.parse(argv, strict: [n: :integer, slow: :integer])
    n = Keyword.get(opts, :n, 2000)
    slow_steps = Keyword.get(opts, :slow, 8)

    load =
      case File.read("/proc/loadavg") do
        {:ok, text} -> ", load average #{text |> String.split() |> Enum.take(3) |> Enum.join(" ")}"
        _ -> ""
      end

    IO.puts(
      "EMLX command queue latency (#{System.schedulers_online()} schedulers, " <>
        "#{:erlang.system_info(:logical_processors_available)} CPUs#{load}; MLX CPU, " <>
        "OPENBLAS_NUM_THREADS=#{System.get_env("OPENBLAS_NUM_THREADS", "unset")})\n"
    )

    round_trips(n)
    isolation(slow_steps)
  end

  ## 1. round trip vs. time on the queue thread

  defp round_trips(n) do
    q = CommandQueue.new!(:cpu)

    IO.puts("1. add + to_blob round trip vs. the job's time on the queue thread (µs, median / p90 / p99)")

    IO.puts(
      String.pad_trailing("", 28) <> "   round trip      |   on queue thread  |  eval-only job   | mx::eval alone"
    )

    for size <- [16, 65_536] do
      {a, b} = inputs(q, size)
      # warm up: MLX builds and caches its CPU kernels on first use
      for _ <- 1..200, do: {sample_blob(q, a, b), sample_eval(q, a, b)}

      # Interleaved, so that load from elsewhere hits both kinds alike.
      {blob, eval} = Enum.unzip(for _ <- 1..n, do: {sample_blob(q, a, b), sample_eval(q, a, b)})
      {rt, run} = Enum.unzip(blob)
      {ert, erun} = Enum.unzip(eval)

      IO.puts(
        String.pad_trailing("  #{size} x f32 (#{size * 4} B)", 28) <>
          " #{stats(rt)} | #{stats(run)} | #{stats(ert)} | #{stats(erun)}"
      )
    end

    IO.puts("""
      round trip: build `add` (NIF), send a to_blob job, receive the reply.
      on queue thread: the to_blob job's run time as measured by the queue
      thread (mx::eval + contiguity check + wrapping the buffer as a binary).
      eval-only job / mx::eval alone: the same add evaluated by an eval job;
      its queue-thread time is mx::eval alone.
    """)

    CommandQueue.close(q)
  end

  defp inputs(q, size) do
    CommandQueue.with_queue(q, fn ->
      a = EMLX.from_blob(floats(size, 1.0), {size}, :float32, :cpu)
      b = EMLX.from_blob(floats(size, 2.0), {size}, :float32, :cpu)
      {a, b}
    end)
  end

  defp floats(size, x), do: :binary.copy(<<x::float-32-native>>, size)

  # {round trip µs, queue-thread µs}
  defp sample_blob(q, a, b) do
    t0 = System.monotonic_time()
    c = CommandQueue.with_queue(q, fn -> EMLX.add(a, b) end)
    ref = make_ref()
    :ok = EMLX.NIF.to_blob(c, nil, ref)

    receive do
      {^ref, {:ok, _bin}, ns} -> {us_since(t0), ns / 1000}
    end
  end

  defp sample_eval(q, a, b) do
    t0 = System.monotonic_time()
    c = CommandQueue.with_queue(q, fn -> EMLX.add(a, b) end)
    ref = make_ref()
    :ok = EMLX.NIF.eval([c], ref)

    receive do
      {^ref, :ok, ns} -> {us_since(t0), ns / 1000}
    end
  end

  ## 2. isolation

  defp isolation(steps) do
    qa = CommandQueue.new!(:cpu)
    qb = CommandQueue.new!(:cpu)
    {a, b} = inputs(qb, 16)
    {a2, b2} = inputs(qa, 16)
    for _ <- 1..200, do: sample_blob(qb, a, b)

    idle = for _ <- 1..500, do: elem(sample_blob(qb, a, b), 0)

    # The slow job alone, for reference.
    {alone_us, _} = :timer.tc(fn -> EMLX.eval(slow(qa, steps)) end)

    # The slow job on A; round trips on B until it replies.
    slow_ref = make_ref()
    :ok = EMLX.NIF.eval([slow(qa, steps)], slow_ref)
    t0 = System.monotonic_time()
    # One job on A itself, queued behind the slow job.
    behind = Task.async(fn -> elem(sample_blob(qa, a2, b2), 0) end)
    during = loop_until_reply(qb, a, b, slow_ref, [])
    slow_us = us_since(t0)
    behind_us = Task.await(behind, 60_000)

    IO.puts("2. a slow job on queue A (#{steps} chained 1024x1024 f32 matrix products) vs. queue B")
    IO.puts("  slow job alone:                      #{round(alone_us / 1000)} ms")
    IO.puts("  slow job while B is busy:            #{round(slow_us / 1000)} ms")
    IO.puts("  B add+to_blob, A idle:               #{stats(idle)} µs (median / p90 / p99)")

    IO.puts(
      "  B add+to_blob, during A's slow job:  #{stats(during)} µs, max #{fmt(Enum.max(during))}, " <>
        "#{length(during)} round trips completed"
    )

    IO.puts("  A add+to_blob, behind its slow job:  #{round(behind_us / 1000)} ms")

    IO.puts("""
      B's jobs do not queue behind A's: they keep completing during the slow
      job, while the job sent to A itself waits for it. What still slows B is
      sharing CPU cores with A's matrix products (BLAS uses every core unless
      OPENBLAS_NUM_THREADS limits it), not A's queue.
    """)

    CommandQueue.close(qa)
    CommandQueue.close(qb)
  end

  defp slow(q, steps) do
    CommandQueue.with_queue(q, fn ->
      m = EMLX.ones({1024, 1024}, :float32, :cpu)
      Enum.reduce(1..steps, m, fn _, x -> EMLX.tensordot(x, m, [1], [0]) end)
    end)
  end

  defp loop_until_reply(q, a, b, ref, acc) do
    receive do
      {^ref, :ok, _ns} -> Enum.reverse(acc)
    after
      0 -> loop_until_reply(q, a, b, ref, [elem(sample_blob(q, a, b), 0) | acc])
    end
  end

  ## numbers

  defp us_since(t0), do: System.convert_time_unit(System.monotonic_time() - t0, :native, :nanosecond) / 1000

  defp stats(values) do
    sorted = Enum.sort(values)
    Enum.map_join([0.5, 0.9, 0.99], " / ", fn p -> fmt(pick(sorted, p)) end)
  end

  defp pick(sorted, p), do: Enum.at(sorted, min(length(sorted) - 1, floor(p * length(sorted))))

  defp fmt(us) when us >= 100, do: :erlang.float_to_binary(us * 1.0, decimals: 0)
  defp fmt(us), do: :erlang.float_to_binary(us * 1.0, decimals: 1)
end

QueueLatencyBench.main(System.argv())
