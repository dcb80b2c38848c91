# Loaded by bench/run.exs only when Nx and EMLX.Backend are available: the
# rows of `compiler: EMLX` (Nx.Defn.jit with EMLX as the defn compiler). The
# transformer is bench/harness/nx_block.exs's block, two of them.

defmodule Bench.CompilerWorkloads do
  @moduledoc "The workloads that compare `compiler: EMLX` with raw MLX and with eager EMLX.Backend."

  alias Bench.Measure

  @big 16 * 1024 * 1024

  def all(ctx) do
    [jit_call(ctx), elementwise(ctx), mlp(ctx), transformer(ctx)]
  end

  defp mlx(ctx, workload, params, id \\ :mlx, label \\ "raw MLX") do
    Bench.Driver.runner(ctx.py, id, label, :reference, %{impl: "mlx", workload: workload, params: params}, ctx.py_why)
  end

  # A runner that builds its data on EMLX.Backend and calls `make.(device)`'s
  # function; `role` says whether it is measured or a reference.
  defp runner(ctx, id, label, role, make) do
    Measure.local(id, label, role, fn ->
      Nx.default_backend(ctx.backend)
      make.(ctx.device)
    end)
  end

  defp jit(fun, device, opts \\ []), do: Nx.Defn.jit(fun, [compiler: EMLX, device: device] ++ opts)

  defp jit_call(ctx) do
    setup = fn device ->
      a = Bench.NxWork.wave(4, 0.001, :f32, {EMLX.Backend, device: device})
      {a, Nx.cos(a) |> tap(&Bench.NxWork.force/1)}
    end

    jitted =
      runner(ctx, :jit, "Nx.Defn.jit(&Nx.add/2, compiler: EMLX)", :subject, fn d ->
        {a, b} = setup.(d)
        f = jit(&Nx.add/2, d)
        fn -> f.(a, b) end
      end)

    compiled =
      runner(ctx, :compiled, "Nx.Defn.compile(&Nx.add/2, compiler: EMLX)", :subject, fn d ->
        {a, b} = setup.(d)
        f = Nx.Defn.compile(&Nx.add/2, [a, b], compiler: EMLX, device: d)
        fn -> f.(a, b) end
      end)

    eager =
      runner(ctx, :eager, "eager Nx.add on EMLX.Backend + eval", :reference, fn d ->
        {a, b} = setup.(d)
        fn -> Nx.add(a, b) |> Bench.NxWork.force() end
      end)

    %{
      id: "jit_call",
      group: "compiler",
      title: "a jitted one-op function called in a loop (add, evaluated)",
      size: "4 elements",
      dtype: "f32",
      goals: %{mlx: {:max_diff, 5000.0}},
      runners: [jitted, compiled, eager, mlx(ctx, "jit_call", %{})],
      notes: ["raw MLX: mx.eval(mx.add(a, b)); each EMLX call returns an evaluated tensor"]
    }
  end

  defp elementwise(ctx) do
    setup = fn device ->
      b = {EMLX.Backend, device: device}
      x = Bench.NxWork.wave(@big, 0.001, :f32, b)
      y = Nx.cos(x)
      z = Nx.sin(y)
      Enum.each([x, y, z], &Bench.NxWork.force/1)
      {x, y, z}
    end

    fun = fn x, y, z -> x |> Nx.exp() |> Nx.multiply(y) |> Nx.add(z) end

    rows =
      for {id, label, opts} <- [
            {:jit, "Nx.Defn.jit, compiler: EMLX", []},
            {:jit_fused, "Nx.Defn.jit, compiler: EMLX, fuse: true", [fuse: true]},
            {:jit_unfused, "Nx.Defn.jit, compiler: EMLX, fuse: false", [fuse: false]}
          ] do
        runner(ctx, id, label, :subject, fn d ->
          {x, y, z} = setup.(d)
          f = jit(fun, d, opts)
          fn -> f.(x, y, z) end
        end)
      end

    eager =
      runner(ctx, :eager, "eager Nx on EMLX.Backend", :reference, fn d ->
        {x, y, z} = setup.(d)
        fn -> fun.(x, y, z) |> Bench.NxWork.force() end
      end)

    %{
      id: "jit_elementwise",
      group: "compiler",
      title: "element-wise exp(x) * y + z, jitted",
      size: "16M",
      dtype: "f32",
      bytes: 4 * @big * 4,
      goals: %{mlx: {:min_speed, 0.95}},
      runners: rows ++ [eager, mlx(ctx, "elementwise", %{n: @big})],
      notes: ["the default fuse is true on the GPU, false on the CPU"]
    }
  end

  defp mlp(ctx) do
    params = %{batch: 64, inputs: 784, hidden: 512, classes: 10}

    rows =
      for {id, label, opts} <- [
            {:jit, "Nx.Defn.jit(step, compiler: EMLX)", []},
            {:jit_fused, "Nx.Defn.jit(step, compiler: EMLX, fuse: true)", [fuse: true]}
          ] do
        runner(ctx, id, label, :subject, fn d ->
          {ps, x, y} = mlp_data(params, {EMLX.Backend, device: d})
          step = jit(&Bench.NxMLP.step/3, d, opts)
          fn -> step.(ps, x, y) end
        end)
      end

    eager =
      runner(ctx, :eager, "Nx.Defn.Evaluator on EMLX.Backend", :reference, fn d ->
        {ps, x, y} = mlp_data(params, {EMLX.Backend, device: d})

        fn ->
          Nx.Defn.jit_apply(&Bench.NxMLP.step/3, [ps, x, y], compiler: Nx.Defn.Evaluator) |> Bench.NxWork.force()
        end
      end)

    %{
      id: "jit_mlp_step",
      measure: [settle_ms: 150, max_reps: 15],
      group: "compiler",
      title: "MLP grad step, jitted",
      size: "batch 64, 784-512-10",
      dtype: "f32",
      flops: 3 * 2 * 64 * (784 * 512 + 512 * 10),
      goals: %{mlx: {:max_ratio, 1.1}},
      runners: rows ++ [eager, mlx(ctx, "mlp", params)],
      notes: ["raw MLX: mx.grad of the same loss"]
    }
  end

  defp mlp_data(%{batch: batch, inputs: i, hidden: h, classes: k}, b) do
    ps = {
      Bench.NxWork.wave(i * h, 0.001, :f32, b) |> Nx.reshape({i, h}) |> Nx.multiply(0.05),
      Nx.broadcast(Nx.tensor(0.0, backend: b), {h}),
      Bench.NxWork.wave(h * k, 0.002, :f32, b) |> Nx.reshape({h, k}) |> Nx.multiply(0.05),
      Nx.broadcast(Nx.tensor(0.0, backend: b), {k})
    }

    x = Bench.NxWork.wave(batch * i, 0.003, :f32, b) |> Nx.reshape({batch, i})
    rows = Nx.iota({batch, 1}, backend: b) |> Nx.remainder(k)
    y = Nx.equal(rows, Nx.iota({1, k}, backend: b)) |> Nx.as_type(:f32)
    Enum.each([ps, x, y], &Bench.NxWork.force/1)
    {ps, x, y}
  end

  defp transformer(ctx) do
    params = %{batch: 1, seq: 128, dim: 256, heads: 4, hidden: 1024, dtype: "float32", layers: 2}
    %{seq: t, dim: d, hidden: h} = params
    # Per layer: the Q, K, V, O and three MLP projections, and the causal half
    # of attention's two products.
    flops = 2 * (2 * t * (4 * d * d + 3 * d * h) + div(4 * t * t * d, 2))

    block = fn id, label, role, jit_opts ->
      runner(ctx, id, label, role, fn dev -> Bench.NxBlock.build(params, {EMLX.Backend, device: dev}, jit_opts) end)
    end

    rows = [
      block.(:jit, "Nx.Defn.jit(stack, compiler: EMLX)", :subject, compiler: EMLX, device: ctx.device),
      block.(:jit_fused, "Nx.Defn.jit(stack, compiler: EMLX, fuse: true)", :subject,
        compiler: EMLX,
        device: ctx.device,
        fuse: true
      ),
      block.(:evaluator, "Nx.Defn.Evaluator on EMLX.Backend", :reference, compiler: Nx.Defn.Evaluator)
    ]

    %{
      id: "jit_transformer",
      measure: [settle_ms: 150, max_reps: 15],
      group: "compiler",
      title: "2-layer transformer block forward, jitted",
      size: "batch 1, seq 128, hidden 256, 4 heads, MLP 1024",
      dtype: "f32",
      flops: flops,
      goals: %{mlx: {:max_ratio, 1.2}},
      runners:
        rows ++
          [
            mlx(ctx, "block", Map.put(params, :compiled, false), :mlx, "raw MLX"),
            mlx(ctx, "block", Map.put(params, :compiled, true), :mlx_compiled, "raw MLX, mx.compile")
          ],
      notes: [
        "pre-norm blocks: RMSNorm and causal attention through EMLX.Fast (mx.fast in raw MLX), a SwiGLU MLP; " <>
          "bench/harness/nx_block.exs, bench/ref.py (block)"
      ]
    }
  end
end
