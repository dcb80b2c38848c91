defmodule EMLX.Telemetry do
  @moduledoc """
  `:telemetry` events emitted by EMLX.

  `telemetry` is an optional dependency: add `{:telemetry, "~> 1.0"}` to
  your project to receive these events. Without it EMLX emits nothing and
  checking costs one `:persistent_term` lookup per call.

  ## Spans

  Each span emits `:start`, then `:stop` or `:exception`, with the
  conventions of `:telemetry.span/3`: `:start` measures `:monotonic_time`
  and `:system_time`; `:stop` and `:exception` measure `:duration` and
  `:monotonic_time` (native time units); every event of one span carries
  the same `:telemetry_span_context` in its metadata; `:exception` adds
  `:kind`, `:reason` and `:stacktrace`.

    * `[:emlx, :eval, :start | :stop | :exception]` — `EMLX.eval/1`: the
      round trip through the command queue, from submitting the job to the
      reply. Metadata: `:device`, `:queue` (the queue's id) and `:count`
      (tensors evaluated). `:stop` also measures `:mlx_duration`: the part
      spent running the job on the queue's thread (MLX's evaluation), in
      native time units; the rest of `:duration` is waiting in the queue and
      messaging.

    * `[:emlx, :to_binary, :start | :stop | :exception]` — `EMLX.to_blob/1,2`
      (and so `Nx.to_binary/1` on EMLX tensors). Metadata: `:device`,
      `:queue`, `:shape`, `:dtype` — the Nx type, as EMLX 0.4 reports it
      (`{:f, 32}`; for `Nx.to_binary/1` the tensor's own type, such as
      `{:f, 8}` or `{:s, 4}`) — `:mlx_dtype` (the MLX dtype holding it, such
      as `:float32`) and `:limit` (element limit or `nil`). `:stop` also
      measures `:byte_size` (of the binary returned, also in its metadata)
      and `:mlx_duration`.

  ## Memory

    * `[:emlx, :memory, :stats]` — emitted on demand by `memory_stats/0`,
      measuring `:active_memory`, `:peak_memory` and `:cache_memory` (bytes,
      as `EMLX.memory_info/0`). Call it periodically to chart memory.

  ## Example

      :telemetry.attach(
        "log-emlx-eval",
        [:emlx, :eval, :stop],
        fn _event, %{duration: d, mlx_duration: m}, _meta, _config ->
          IO.puts("eval: \#{d} total, \#{m} in MLX (native units)")
        end,
        nil
      )
  """

  @key {__MODULE__, :enabled}

  @doc """
  Whether `:telemetry` is available, so that EMLX emits events. Decided on
  first use and remembered.

      iex> EMLX.Telemetry.enabled?() == Code.ensure_loaded?(:telemetry)
      true
  """
  def enabled? do
    case :persistent_term.get(@key, nil) do
      nil ->
        enabled = Code.ensure_loaded?(:telemetry) and function_exported?(:telemetry, :execute, 3)
        :persistent_term.put(@key, enabled)
        enabled

      enabled ->
        enabled
    end
  end

  @doc """
  Samples MLX's memory counters, emits `[:emlx, :memory, :stats]` with them
  (when telemetry is available) and returns them.

      iex> stats = EMLX.Telemetry.memory_stats()
      iex> Map.keys(stats) |> Enum.sort()
      [:active_memory, :cache_memory, :peak_memory]
  """
  def memory_stats do
    stats = EMLX.memory_info()
    execute([:emlx, :memory, :stats], stats, %{})
    stats
  end

  @doc false
  # Emits an event when telemetry is available.
  def execute(event, measurements, metadata) do
    if enabled?(), do: apply(:telemetry, :execute, [event, measurements, metadata])
    :ok
  end

  @doc false
  # A span around `fun`, which returns `{result, extra_stop_measurements,
  # extra_stop_metadata}`; returns `result`. Without telemetry, just runs it.
  def span(prefix, metadata, fun) do
    if enabled?() do
      emit_span(prefix, metadata, fun)
    else
      {result, _measurements, _metadata} = fun.()
      result
    end
  end

  defp emit_span(prefix, metadata, fun) do
    metadata = Map.put(metadata, :telemetry_span_context, make_ref())
    start = System.monotonic_time()
    execute(prefix ++ [:start], %{monotonic_time: start, system_time: System.system_time()}, metadata)

    try do
      fun.()
    catch
      kind, reason ->
        stop = System.monotonic_time()

        execute(
          prefix ++ [:exception],
          %{duration: stop - start, monotonic_time: stop},
          Map.merge(metadata, %{kind: kind, reason: reason, stacktrace: __STACKTRACE__})
        )

        :erlang.raise(kind, reason, __STACKTRACE__)
    else
      {result, measurements, stop_metadata} ->
        stop = System.monotonic_time()

        execute(
          prefix ++ [:stop],
          Map.merge(measurements, %{duration: stop - start, monotonic_time: stop}),
          Map.merge(metadata, stop_metadata)
        )

        result
    end
  end
end
