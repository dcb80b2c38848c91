# Loaded by bench/run.exs only when Nx and EMLX.Backend are available: the
# rows of `compiler: EMLX` (Nx.Defn.jit with EMLX as the defn compiler).

defmodule Bench.NxTransformer do
  @moduledoc """
  A 2-layer pre-norm transformer block forward (causal self-attention and a
  GELU MLP), written once in defn; bench/ref.py's `transformer` is the same
  math in raw MLX.
  """
  import Nx.Defn

  defn forward(x, layers, opts \\ []) do
    opts = keyword!(opts, heads: 4)
    {l1, l2} = layers
    x |> layer(l1, heads: opts[:heads]) |> layer(l2, heads: opts[:heads])
  end

  defnp layer(x, {ln1, wq, wk, wv, wo, ln2, w1, w2}, opts \\ []) do
    x = x + attention(norm(x, ln1), wq, wk, wv, wo, heads: opts[:heads])
    h = norm(x, ln2) |> Nx.dot(w1)
    x + Nx.dot(gelu(h), w2)
  end

  defnp norm(x, {gamma, beta}) do
    mean = Nx.mean(x, axes: [-1], keep_axes: true)
    var = Nx.mean((x - mean) ** 2, axes: [-1], keep_axes: true)
    (x - mean) * Nx.rsqrt(var + 1.0e-5) * gamma + beta
  end

  defnp(gelu(x), do: 0.5 * x * (1 + Nx.tanh(0.7978845608 * (x + 0.044715 * x ** 3))))

  defnp attention(x, wq, wk, wv, wo, opts \\ []) do
    {b, s, d} = Nx.shape(x)
    {heads, hd} = head_split(d, opts[:heads])
    split = fn t -> t |> Nx.reshape({b, s, heads, hd}) |> Nx.transpose(axes: [0, 2, 1, 3]) end
    q = split.(Nx.dot(x, wq))
    k = split.(Nx.dot(x, wk))
    v = split.(Nx.dot(x, wv))
    scores = Nx.dot(q, [3], [0, 1], k, [3], [0, 1]) / Nx.sqrt(hd)
    causal = Nx.greater_equal(Nx.iota({s, 1}), Nx.iota({1, s}))
    scores = scores + Nx.select(causal, 0.0, -1.0e9)
    e = Nx.exp(scores - Nx.reduce_max(scores, axes: [-1], keep_axes: true))
    p = e / Nx.sum(e, axes: [-1], keep_axes: true)
    out = Nx.dot(p, [3], [0, 1], v, [2], [0, 1])
    out |> Nx.transpose(axes: [0, 2, 1, 3]) |> Nx.reshape({b, s, d}) |> Nx.dot(wo)
  end

  deftransformp(head_split(d, heads), do: {heads, div(d, heads)})

  @doc "Inputs and weights built with the harness's sin(iota * scale) formula."
  def inputs(%{batch: b, seq: s, hidden: d, ffn: f}, backend) do
    w = fn {r, c}, scale ->
      Bench.NxWork.wave(r * c, scale, :f32, backend) |> Nx.reshape({r, c}) |> Nx.multiply(0.05)
    end

    ln = {Nx.broadcast(Nx.tensor(1.0, backend: backend), {d}), Nx.broadcast(Nx.tensor(0.0, backend: backend), {d})}

    layer = fn k ->
      {ln, w.({d, d}, 0.001 * k), w.({d, d}, 0.002 * k), w.({d, d}, 0.003 * k), w.({d, d}, 0.004 * k), ln,
       w.({d, f}, 0.005 * k), w.({f, d}, 0.006 * k)}
    end

    x = Bench.NxWork.wave(b * s * d, 0.007, :f32, backend) |> Nx.reshape({b, s, d})
    {x, {layer.(1), layer.(2)}}
  end
end

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
      Nx.default_backend({ctx.backend, device: ctx.device})
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
    params = %{batch: 1, seq: 128, hidden: 256, heads: 4, ffn: 1024}
    d = params.hidden
    # Per layer: 4 d x d projections and 2 d x ffn, plus the attention products.
    flops = 2 * (2 * params.seq * (4 * d * d + 2 * d * params.ffn) + 2 * 2 * params.seq * params.seq * d)

    rows =
      for {id, label, opts} <- [
            {:jit, "Nx.Defn.jit(forward, compiler: EMLX)", []},
            {:jit_fused, "Nx.Defn.jit(forward, compiler: EMLX, fuse: true)", [fuse: true]}
          ] do
        runner(ctx, id, label, :subject, fn dev ->
          {x, layers} = Bench.NxTransformer.inputs(params, {EMLX.Backend, device: dev})
          f = jit(&Bench.NxTransformer.forward/2, dev, opts)
          fn -> f.(x, layers) end
        end)
      end

    evaluator =
      runner(ctx, :evaluator, "Nx.Defn.Evaluator on EMLX.Backend", :reference, fn dev ->
        {x, layers} = Bench.NxTransformer.inputs(params, {EMLX.Backend, device: dev})

        fn ->
          Nx.Defn.jit_apply(&Bench.NxTransformer.forward/2, [x, layers], compiler: Nx.Defn.Evaluator)
          |> Bench.NxWork.force()
        end
      end)

    %{
      id: "jit_transformer",
      measure: [settle_ms: 150, max_reps: 15],
      group: "compiler",
      title: "2-layer transformer block forward, jitted",
      size: "batch 1, seq 128, hidden 256, 4 heads",
      dtype: "f32",
      flops: flops,
      goals: %{mlx: {:max_ratio, 1.2}},
      runners: rows ++ [evaluator, mlx(ctx, "transformer", params)],
      notes: ["pre-norm layers: causal attention (composed softmax) and a tanh-GELU MLP; raw MLX runs the same math"]
    }
  end
end
