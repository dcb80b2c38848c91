defmodule Bench.Small do
  @moduledoc """
  Small-tensor workloads: what an interactive session, a tiny training loop
  or a sampler feels. Each op costs far more than its arithmetic here, so
  these compare per-op overheads: a training step of Axon's xor MLP, a small
  Nx.Random draw, a chain of scalar adds read one by one, and what EMLX
  costs while idle.
  """

  alias Bench.Workloads, as: W

  def all(ctx), do: [xor_step(ctx), random_uniform(ctx), scalar_read_each(ctx), idle(ctx)]

  defp xor_step(ctx) do
    params = %{batch: 32}

    %{
      id: "xor_step",
      group: "small",
      title: "xor MLP training step (2-8-1, Nx.Defn.grad + SGD, parameters read back)",
      size: "batch 32",
      dtype: "f32",
      goals: %{binary: {:max_ratio, 1.0}},
      runners: W.nx(ctx, :xor_step, params) ++ [W.mlx(ctx, "xor_step", params), W.numpy(ctx, "xor_step", params)],
      notes: [
        "plain Nx under Nx.Defn.Evaluator (Axon is not available offline); raw MLX uses mx.grad, numpy a hand-written backward pass"
      ]
    }
  end

  defp random_uniform(ctx) do
    params = %{shape: [32, 1]}

    %{
      id: "random_uniform",
      group: "small",
      title: "Nx.Random.uniform draw",
      size: "{32, 1}",
      dtype: "f32",
      goals: %{binary: {:max_ratio, 2.0}},
      runners:
        W.nx(ctx, :random_uniform, params) ++ compiled_uniform(ctx, params) ++ [W.mlx(ctx, "random_uniform", params)],
      notes: [
        "Nx.Random runs threefry as a defn of ~1000 small ops (two `while` loops); raw MLX draws with its own fused mx.random.uniform",
        "compiler: EMLX: the draw jitted, as it runs with `Nx.Defn.default_options(compiler: EMLX)`; with fuse: true the first run (the warm-up, untimed) compiles MLX's fused CPU kernels, seconds once per machine"
      ]
    }
  end

  # The same draw with EMLX as the defn compiler (where Nx.Random's loops
  # are counted loops, see EMLX.Defn.TripCount).
  # With fuse: true, MLX fuses the element-wise chains of threefry into a
  # few kernels (on the CPU compiled by the system C++ compiler the first
  # time each is met, seconds, then kept on disk: the warm-up run pays it).
  defp compiled_uniform(%{nx?: true, backend?: true} = ctx, %{shape: shape}) do
    for {id, label, opts} <- [
          {:nx_emlx_compiled, "Nx + EMLX.Backend, compiler: EMLX", []},
          {:nx_emlx_fused, "Nx + EMLX.Backend, compiler: EMLX, fuse: true", [fuse: true]}
        ] do
      Bench.Measure.local(id, label, :subject, fn ->
        Nx.default_backend(ctx.backend)
        key = Nx.Random.key(42)
        uniform = fn k -> Nx.Random.uniform(k, shape: List.to_tuple(shape)) end
        draw = Nx.Defn.jit(uniform, [compiler: EMLX, device: ctx.device] ++ opts)
        fn -> key |> draw.() |> elem(0) |> Nx.to_binary() end
      end)
    end
  end

  defp compiled_uniform(_ctx, _params), do: []

  @ops 100

  defp scalar_read_each(ctx) do
    d = ctx.device

    emlx =
      W.emlx(fn ->
        c = EMLX.scalar_tensor(1.0e-3, :float32, d)
        x0 = EMLX.scalar_tensor(0.5, :float32, d)

        fn ->
          Enum.reduce(1..@ops, x0, fn _, x ->
            x = EMLX.add(x, c)
            EMLX.item(x)
            x
          end)
        end
      end)

    params = %{ops: @ops}

    %{
      id: "scalar_read_each",
      group: "small",
      title: "scalar adds, each result read back",
      size: "#{@ops} x add of scalars",
      dtype: "f32",
      per: @ops,
      unit: "op",
      goals: %{},
      runners:
        [emlx, W.mlx(ctx, "scalar_read_each", params), W.numpy(ctx, "scalar_read_each", params)] ++
          W.nx(ctx, :scalar_read_each, params),
      notes: []
    }
  end

  @window_ms 200

  # CPU time the whole OS process (every thread) uses during a quiet window
  # right after a burst of small evaluations: what EMLX's threads cost
  # while idle. The reference does the same burst on Nx.BinaryBackend: the
  # BEAM's own schedulers also spin a little after work.
  defp idle(ctx) do
    d = ctx.device

    burst_emlx = fn ->
      a = EMLX.scalar_tensor(1.0, :float32, d)
      for _ <- 1..2000, do: EMLX.add(a, a) |> EMLX.to_blob()
    end

    subject = idle_runner(:emlx, "EMLX, after 2000 add + to_blob", :subject, burst_emlx)

    reference =
      if ctx.nx? do
        burst_binary = fn ->
          a = Nx.tensor(1.0, backend: Nx.BinaryBackend)
          for _ <- 1..2000, do: Nx.add(a, a) |> Nx.to_binary()
        end

        idle_runner(:binary, "BEAM alone, after 2000 Nx.BinaryBackend adds", :reference, burst_binary)
      else
        W.skip(:binary, "BEAM alone", :reference, "Nx is not available")
      end

    %{
      id: "idle",
      group: "small",
      measure: [rep_ms: 0, min_reps: 5, max_reps: 7],
      title: "idle: CPU time of all threads in the #{@window_ms} ms after a burst",
      size: "#{@window_ms} ms",
      dtype: "—",
      goals: %{},
      runners: [subject, reference],
      notes: ["CPU time summed over every thread of the OS process (/proc/self/task/*/schedstat)"]
    }
  end

  defp idle_runner(id, label, role, burst) do
    %{
      id: id,
      label: label,
      role: role,
      prepare: fn ->
        case cpu_ns() do
          nil ->
            {:skip, "needs Linux's /proc/self/task/*/schedstat"}

          _ ->
            {:ok,
             fn inner ->
               Enum.reduce(1..inner, 0, fn _, acc ->
                 burst.()
                 before = cpu_ns()
                 Process.sleep(@window_ms)
                 acc + (cpu_ns() - before)
               end)
             end}
        end
      end
    }
  end

  defp cpu_ns do
    case File.ls("/proc/self/task") do
      {:ok, tasks} ->
        Enum.reduce(tasks, 0, fn task, acc ->
          case File.read("/proc/self/task/#{task}/schedstat") do
            {:ok, text} -> acc + (text |> String.split() |> hd() |> String.to_integer())
            _ -> acc
          end
        end)

      _ ->
        nil
    end
  end
end
