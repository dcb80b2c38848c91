# Loaded by bench/run.exs only when Nx is available.

defmodule Bench.NxBlock do
  @moduledoc """
  A pre-norm transformer block, written once in `defn` (as a Bumblebee-style
  model would be), for the GPU transformer-block workload:

      h = x + Wo · causal_attention(RMSNorm(x) · Wq, · Wk, · Wv)
      out = h + W2 · (silu(RMSNorm(h) · W1) * (RMSNorm(h) · W3))

  Attention and RMSNorm go through `EMLX.Fast` (MLX's fused kernels; the
  references use mx.fast and torch's fused SDPA). bench/ref.py's `block`
  is the same computation on the same data.
  """
  import Nx.Defn

  defn forward(x, {wq, wk, wv, wo, w1, w2, w3, g1, g2}, opts \\ []) do
    opts = keyword!(opts, [:heads])
    {b, t, d} = Nx.shape(x)
    heads = opts[:heads]
    hd = div(d, heads)

    h = EMLX.Fast.rms_norm(x, g1, 1.0e-5)
    q = h |> Nx.dot(wq) |> split_heads(b, t, heads, hd)
    k = h |> Nx.dot(wk) |> split_heads(b, t, heads, hd)
    v = h |> Nx.dot(wv) |> split_heads(b, t, heads, hd)
    att = EMLX.Fast.scaled_dot_product_attention_causal(q, k, v, attention_scale(hd))
    att = att |> Nx.transpose(axes: [0, 2, 1, 3]) |> Nx.reshape({b, t, d})
    x = x + Nx.dot(att, wo)

    h = EMLX.Fast.rms_norm(x, g2, 1.0e-5)
    gate = Nx.dot(h, w1)
    x + Nx.dot(gate * Nx.sigmoid(gate) * Nx.dot(h, w3), w2)
  end

  deftransformp(attention_scale(hd), do: 1.0 / :math.sqrt(hd))

  defnp split_heads(t, b, s, heads, hd) do
    t |> Nx.reshape({b, s, heads, hd}) |> Nx.transpose(axes: [0, 2, 1, 3])
  end

  @doc """
  `layers` blocks one after the other (the parameters a tuple of each
  block's), as a model stacks them.
  """
  deftransform stack(x, layers, opts) do
    layers |> Tuple.to_list() |> Enum.reduce(x, &forward(&2, &1, opts))
  end

  @doc """
  The data (sin waves, scaled like an initialised model) and the function
  one call runs: `params.layers` blocks (default 1) applied eagerly on
  `backend`, or through `Nx.Defn.jit/2` with `jit_opts` (e.g.
  `compiler: EMLX`) when given. Layer k's weights use the wave scales of
  layer 1 times k (bench/ref.py's `block` builds the same).
  """
  def build(%{batch: b, seq: t, dim: d, heads: heads, hidden: hid, dtype: dtype} = p, backend, jit_opts) do
    type = if dtype == "bfloat16", do: :bf16, else: :f32

    w = fn rows, cols, s ->
      Bench.NxWork.wave(rows * cols, s, type, backend) |> Nx.reshape({rows, cols}) |> Nx.multiply(0.02)
    end

    ones = fn n -> Nx.broadcast(Nx.tensor(1.0, type: type, backend: backend), {n}) end

    layer = fn k ->
      {w.(d, d, 0.0011 * k), w.(d, d, 0.0012 * k), w.(d, d, 0.0013 * k), w.(d, d, 0.0014 * k), w.(d, hid, 0.0015 * k),
       w.(hid, d, 0.0016 * k), w.(d, hid, 0.0017 * k), ones.(d), ones.(d)}
    end

    layers = List.to_tuple(for k <- 1..Map.get(p, :layers, 1), do: layer.(k))
    x = Bench.NxWork.wave(b * t * d, 0.001, type, backend) |> Nx.reshape({b, t, d})
    Enum.each([x | Enum.flat_map(Tuple.to_list(layers), &Tuple.to_list/1)], &Bench.NxWork.force/1)

    run =
      if jit_opts == [],
        do: &stack(&1, &2, heads: heads),
        else: Nx.Defn.jit(&stack(&1, &2, heads: heads), jit_opts)

    fn ->
      Nx.default_backend(backend)
      run.(x, layers) |> Bench.NxWork.force()
    end
  end
end
