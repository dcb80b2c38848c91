defmodule EMLX.TelemetryTest do
  # The [:emlx, ...] telemetry events. Needs the optional telemetry package.
  use ExUnit.Case, async: false

  @moduletag :telemetry

  import EMLX.QueueHelpers, only: [int_blob: 1]
  alias EMLX.CommandQueue

  @events [
    [:emlx, :eval, :start],
    [:emlx, :eval, :stop],
    [:emlx, :eval, :exception],
    [:emlx, :to_binary, :start],
    [:emlx, :to_binary, :stop],
    [:emlx, :to_binary, :exception],
    [:emlx, :memory, :stats]
  ]

  def forward(event, measurements, metadata, pid), do: send(pid, {:event, event, measurements, metadata})

  setup do
    id = {__MODULE__, self()}
    :ok = apply(:telemetry, :attach_many, [id, @events, &__MODULE__.forward/4, self()])
    on_exit(fn -> apply(:telemetry, :detach, [id]) end)
  end

  defp ints(values), do: EMLX.from_blob(int_blob(values), {length(values)}, :int32, :cpu)

  test "telemetry is detected" do
    assert EMLX.Telemetry.enabled?()
  end

  test "eval emits start and stop with the round trip and the time in MLX" do
    q = CommandQueue.new!(:cpu)
    t = CommandQueue.with_queue(q, fn -> EMLX.lazy(fn -> EMLX.add(ints([1, 2]), ints([3, 4])) end) end)
    assert EMLX.eval(t) == :ok

    assert_received {:event, [:emlx, :eval, :start], %{monotonic_time: _, system_time: _}, start_meta}
    assert %{device: :cpu, queue: id, count: 1, telemetry_span_context: ctx} = start_meta
    assert id == q.id
    assert_received {:event, [:emlx, :eval, :stop], %{duration: d, mlx_duration: m}, %{telemetry_span_context: ^ctx}}
    assert is_integer(d) and is_integer(m) and m > 0 and m <= d
  end

  test "eval of an already evaluated tensor still reports, with no MLX time" do
    t = ints([1])
    assert EMLX.eval(t) == :ok
    assert_received {:event, [:emlx, :eval, :stop], %{mlx_duration: 0}, _}
  end

  test "to_blob emits to_binary events with byte counts" do
    t = EMLX.lazy(fn -> EMLX.add(ints([1, 2, 3]), ints([1, 1, 1])) end)
    assert EMLX.to_blob(t) == int_blob([2, 3, 4])

    assert_received {:event, [:emlx, :to_binary, :start], _,
                     %{shape: {3}, dtype: {:s, 32}, mlx_dtype: :int32, limit: nil, device: :cpu}}

    assert_received {:event, [:emlx, :to_binary, :stop], %{byte_size: 12, duration: d, mlx_duration: m},
                     %{byte_size: 12}}

    assert m > 0 and m <= d

    assert EMLX.to_blob(t, 2) == int_blob([2, 3])
    assert_received {:event, [:emlx, :to_binary, :stop], %{byte_size: 8}, %{limit: 2}}
  end

  if Code.ensure_loaded?(Nx) do
    test "Nx.to_binary reports the tensor's Nx type, as EMLX 0.4 handlers expect" do
      for {type, mlx, bytes} <- [
            {{:f, 32}, :float32, 12},
            {{:bf, 16}, :bfloat16, 6},
            {{:f, 8}, :uint8, 3},
            {{:s, 4}, :int8, 2}
          ] do
        t = Nx.tensor([1, 2, 3], type: type, backend: {EMLX.Backend, device: :cpu})
        binary = Nx.to_binary(t)
        # The binary is Nx's own layout for the type (4-bit integers packed).
        assert binary == Nx.to_binary(Nx.tensor([1, 2, 3], type: type, backend: Nx.BinaryBackend))
        assert_received {:event, [:emlx, :to_binary, :start], _, %{dtype: ^type, mlx_dtype: ^mlx, shape: {3}}}
        assert_received {:event, [:emlx, :to_binary, :stop], %{byte_size: ^bytes}, %{dtype: ^type, byte_size: ^bytes}}
      end
    end
  end

  test "a failing evaluation emits :exception and the error still raises" do
    # A scan of 2^31 + 2 elements: refused on the queue thread before MLX
    # evaluates it (MLX's scan counts in 32 bits).
    refused =
      EMLX.ones({1, 1}, :uint8, :cpu) |> EMLX.broadcast_to({2, 1_073_741_825}) |> EMLX.cumulative_sum(1, false, true)

    assert_raise ArgumentError, ~r/cannot evaluate CumSum/, fn -> EMLX.eval(refused) end
    assert_received {:event, [:emlx, :eval, :exception], %{duration: _}, %{kind: :error, reason: %ArgumentError{}}}
    refute_received {:event, [:emlx, :eval, :stop], _, _}

    huge = EMLX.ones({1}, :float32, :cpu) |> EMLX.broadcast_to({1_048_576, 1_048_576})
    assert_raise EMLX.NIFError, fn -> EMLX.to_blob(huge, 1) end
    assert_received {:event, [:emlx, :to_binary, :exception], _, %{kind: :error, shape: {1_048_576, 1_048_576}}}
  end

  test "memory_stats emits the memory counters it returns" do
    stats = EMLX.Telemetry.memory_stats()
    assert_received {:event, [:emlx, :memory, :stats], ^stats, %{}}
    assert %{active_memory: a, peak_memory: p, cache_memory: c} = stats
    assert Enum.all?([a, p, c], &(is_integer(&1) and &1 >= 0))
    assert p >= a
  end
end
