defmodule Bench.Measure do
  @moduledoc """
  Interleaved measurement of one workload's runners.

  A runner is a map:

    * `:id` (atom), `:label` (string), `:role` (`:subject` or `:reference`);
    * `:prepare` — a zero-arity function returning `{:ok, rep}` or
      `{:skip, reason}`; it builds the data and warms the code up once.
      `rep` is a one-argument function: `rep.(inner)` runs the workload
      `inner` times back to back and returns the nanoseconds it took;
    * `:timeout_ms` (optional) — `prepare` (setup plus its warm-up run) must
      finish within this, or the runner is skipped (used for
      Nx.BinaryBackend, which would take minutes on the large sizes).

  All runners of a workload are measured in the same rounds: each round
  takes one sample of every runner, in an order rotated from round to round,
  so a load spike on a shared machine hits EMLX and its references alike.
  """

  @doc """
  Prepares and measures `runners`. Options: `:budget_ms` (time the
  samples of one runner may take in all), `:min_reps`, `:max_reps`,
  `:rep_ms` (a sample lasts at least this long: tiny workloads run several
  times per sample), `:settle_ms` (a pause before each sample: OpenBLAS's
  threads spin for about 0.1 s after a GEMM, and would otherwise steal the
  next runner's cores on a small machine), `:warm_up` (one untimed run
  before each sample: the runner before it may have used the same GPU
  from another process). Returns `%{id => result}` where a result is
  `%{status: :ok, median: ns, p25:, p75:, reps:, inner:, label:, role:}` or
  `%{status: :skipped, reason:, label:, role:}`, times per single call.
  """
  def run(runners, opts) do
    prepared = Enum.map(runners, &prepare/1)
    ready = for {r, {:ok, rep}} <- prepared, do: {r, rep}

    calibrated =
      Enum.map(ready, fn {r, rep} ->
        one = sample(r, rep, 1, opts)
        inner = max(1, ceil(opts[:rep_ms] * 1_000_000 / max(one, 1)))
        inner = min(inner, 100_000)
        reps = opts[:budget_ms] * 1_000_000 / max(one * inner, 1)
        reps = reps |> floor() |> max(opts[:min_reps]) |> min(opts[:max_reps])
        %{runner: r, rep: rep, inner: inner, reps: reps, samples: []}
      end)

    rounds = calibrated |> Enum.map(& &1.reps) |> Enum.max(fn -> 0 end)

    measured =
      Enum.reduce(1..rounds//1, calibrated, fn round, acc ->
        n = length(acc)
        order = Enum.to_list(0..(n - 1)//1)
        {first, second} = Enum.split(order, rem(round, max(n, 1)))

        Enum.reduce(second ++ first, acc, fn i, acc2 ->
          List.update_at(acc2, i, fn c ->
            if round <= c.reps,
              do: %{c | samples: [sample(c.runner, c.rep, c.inner, opts) / c.inner | c.samples]},
              else: c
          end)
        end)
      end)

    skipped =
      for {r, {:skip, reason}} <- prepared, into: %{} do
        {r.id, %{status: :skipped, reason: reason, label: r.label, role: r.role}}
      end

    ok =
      for c <- measured, into: %{} do
        s = Enum.sort(c.samples)

        {c.runner.id,
         %{
           status: :ok,
           label: c.runner.label,
           role: c.runner.role,
           median: quantile(s, 0.5),
           p25: quantile(s, 0.25),
           p75: quantile(s, 0.75),
           reps: length(s),
           inner: c.inner
         }}
      end

    Map.merge(skipped, ok)
  end

  defp prepare(%{prepare: prepare} = r) do
    result =
      case r[:timeout_ms] do
        nil ->
          safely(prepare)

        ms ->
          task = Task.async(fn -> safely(prepare) end)

          case Task.yield(task, ms) || Task.shutdown(task, :brutal_kill) do
            {:ok, result} -> result
            _ -> {:skip, "setup and one run take more than #{fmt_s(ms)}"}
          end
      end

    {r, result}
  end

  defp fmt_s(ms), do: "#{ms / 1000} s"

  defp safely(fun) do
    fun.()
  rescue
    e -> {:skip, "failed: " <> (Exception.message(e) |> String.split("\n") |> hd())}
  end

  # Elixir-side runners are garbage-collected before each sample, outside the
  # timed region, so MLX arrays of the previous sample are freed first.
  defp sample(_runner, rep, inner, opts) do
    :erlang.garbage_collect()
    if ms = opts[:settle_ms], do: Process.sleep(ms)
    if opts[:warm_up], do: rep.(1)
    rep.(inner)
  end

  @doc "Linear-interpolated quantile of a sorted, non-empty list."
  def quantile([x], _q), do: x

  def quantile(sorted, q) do
    pos = q * (length(sorted) - 1)
    lo = floor(pos)
    hi = min(lo + 1, length(sorted) - 1)
    a = Enum.at(sorted, lo)
    b = Enum.at(sorted, hi)
    a + (b - a) * (pos - lo)
  end

  @doc """
  A runner whose work is an Elixir function. `setup` returns the function
  that runs once per call (it is warmed up once here).
  """
  def local(id, label, role, setup, extra \\ []) do
    Map.merge(
      %{
        id: id,
        label: label,
        role: role,
        prepare: fn ->
          case setup.() do
            {:skip, reason} ->
              {:skip, reason}

            fun when is_function(fun, 0) ->
              fun.()
              {:ok, &time_loop(fun, &1)}
          end
        end
      },
      Map.new(extra)
    )
  end

  defp time_loop(fun, inner) do
    t0 = System.monotonic_time(:nanosecond)
    loop(fun, inner)
    System.monotonic_time(:nanosecond) - t0
  end

  defp loop(_fun, 0), do: :ok

  defp loop(fun, n) do
    fun.()
    loop(fun, n - 1)
  end
end
