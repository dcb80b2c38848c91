# A small decoder-only transformer on EMLX, end to end: random weights built
# here (2 layers, RoPE, RMSNorm, SwiGLU, grouped-query attention, a KV cache),
# its linear layers quantized to 4 bits, generating 32 tokens greedily for a
# batch of prompts through Nx.Serving, with EMLX.Fast's fused ops. Its tokens
# are checked against the same model (the same, dequantized, weights) run on
# Nx.BinaryBackend, and tokens/s are printed for both.
#
#   bin/dev mix run examples/tiny_decoder.exs [--compiler Nx.Defn.Evaluator] [--dense]
#
# The model is written in defn: --compiler names the defn compiler the
# serving uses (default EMLX: the whole generation, its loop included, runs
# as one program on a command queue; Nx.Defn.Evaluator runs it op by op).
# --dense keeps the weights dense (float32) instead of 4-bit.

if not Code.ensure_loaded?(EMLX.Backend) do
  IO.puts("This example needs Nx (EMLX.Backend is not part of this build).")
  System.halt(0)
end

defmodule TinyDecoder do
  import Nx.Defn

  @config %{vocab: 256, d: 128, heads: 4, kv_heads: 2, head_dim: 32, hidden: 256, layers: 2, max_len: 48, eps: 1.0e-5}
  def config, do: @config

  ## Weights

  # Random weights, scaled by 1/sqrt(fan in); linear weights are {out, in}.
  def random_params(seed) do
    c = @config
    key = Nx.Random.key(seed)

    {layers, key} =
      Enum.map_reduce(1..c.layers, key, fn _, key ->
        {wq, key} = linear_weight(key, c.heads * c.head_dim, c.d)
        {wk, key} = linear_weight(key, c.kv_heads * c.head_dim, c.d)
        {wv, key} = linear_weight(key, c.kv_heads * c.head_dim, c.d)
        {wo, key} = linear_weight(key, c.d, c.heads * c.head_dim)
        {gate, key} = linear_weight(key, c.hidden, c.d)
        {up, key} = linear_weight(key, c.hidden, c.d)
        {down, key} = linear_weight(key, c.d, c.hidden)
        {attn_norm, key} = Nx.Random.uniform(key, 0.8, 1.2, shape: {c.d})
        {mlp_norm, key} = Nx.Random.uniform(key, 0.8, 1.2, shape: {c.d})
        {%{attn_norm: attn_norm, wq: wq, wk: wk, wv: wv, wo: wo, mlp_norm: mlp_norm, gate: gate, up: up, down: down}, key}
      end)

    {embedding, key} = Nx.Random.normal(key, 0.0, 1.0, shape: {c.vocab, c.d})
    {head, _key} = linear_weight(key, c.vocab, c.d)
    %{embedding: embedding, layers: List.to_tuple(layers), norm: Nx.broadcast(1.0, {c.d}), head: head}
  end

  defp linear_weight(key, out, inner) do
    {w, key} = Nx.Random.normal(key, 0.0, 1.0 / :math.sqrt(inner), shape: {out, inner})
    {w, key}
  end

  @linear [:wq, :wk, :wv, :wo, :gate, :up, :down]

  # The linear weights quantized (4-bit affine codes in groups of 64), the
  # rest as they are.
  def quantize(params) do
    layers = for l <- Tuple.to_list(params.layers), do: Map.new(l, fn {k, w} -> {k, if(k in @linear, do: q4(w), else: w)} end)
    %{params | layers: List.to_tuple(layers), head: q4(params.head)}
  end

  defp q4(w), do: EMLX.Quantization.quantize(w, type: {:s, 4}, group_size: 64)

  # The same model dense: the dequantized values of the quantized weights,
  # moved to `backend`.
  def dense(params, backend) do
    to = fn
      %Nx.Tensor{} = t -> if EMLX.Quantization.quantized?(t), do: EMLX.Quantization.dequantize(t), else: t
    end

    layers = for l <- Tuple.to_list(params.layers), do: Map.new(l, fn {k, w} -> {k, Nx.backend_copy(to.(w), backend)} end)

    %{
      embedding: Nx.backend_copy(params.embedding, backend),
      layers: List.to_tuple(layers),
      norm: Nx.backend_copy(params.norm, backend),
      head: Nx.backend_copy(to.(params.head), backend)
    }
  end

  # Empty KV caches, one {k, v} pair per layer: {B, max_len, kv_heads, head_dim}.
  def caches(batch, backend) do
    c = @config
    zeros = Nx.broadcast(Nx.tensor(0.0, backend: backend), {batch, c.max_len, c.kv_heads, c.head_dim})
    List.to_tuple(for _ <- 1..c.layers, do: {zeros, zeros})
  end

  ## The model

  # Greedy generation of `steps` tokens after `prompt` ({B, P} integers):
  # a prefill step, then one step per token in a while loop that carries the
  # KV caches and the position. Returns the {B, steps} generated tokens.
  defn generate(prompt, params, caches, opts \\ []) do
    opts = keyword!(opts, steps: 32)
    steps = opts[:steps]
    {b, p} = Nx.shape(prompt)
    key_mask = Nx.broadcast(1, {b, config_max_len()})

    {logits, caches} = forward(prompt, Nx.iota({b, p}, axis: 1), 0, caches, params, key_mask)
    token = Nx.argmax(logits, axis: -1) |> Nx.as_type(:s32)
    # Built from an input so that it lives on the inputs' backend.
    tokens = Nx.broadcast(prompt[[.., 0..0]] * 0, {b, steps}) |> Nx.put_slice([0, 0], Nx.new_axis(token, 1))

    {tokens, _token, _caches, _params, _mask, _i} =
      while {tokens, token, caches, params, key_mask, i = 1}, i < steps do
        position = p + i - 1
        ids = Nx.broadcast(position, {b, 1})
        {logits, caches} = forward(Nx.new_axis(token, 1), ids, position, caches, params, key_mask)
        token = Nx.argmax(logits, axis: -1) |> Nx.as_type(:s32)
        {Nx.put_slice(tokens, [0, i], Nx.new_axis(token, 1)), token, caches, params, key_mask, i + 1}
      end

    tokens
  end

  deftransformp config_max_len, do: @config.max_len

  # The logits of the last position, and the updated caches.
  deftransformp forward(tokens, positions, offset, caches, params, key_mask) do
    x = Nx.take(params.embedding, tokens)

    {x, caches} =
      params.layers
      |> Tuple.to_list()
      |> Enum.zip(Tuple.to_list(caches))
      |> Enum.map_reduce(x, fn {layer, {kc, vc}}, x ->
        {x, kc, vc} = block(x, positions, offset, kc, vc, layer, key_mask)
        {{kc, vc}, x}
      end)
      |> then(fn {caches, x} -> {x, List.to_tuple(caches)} end)

    last = x[[.., -1, ..]]
    {linear(EMLX.Fast.rms_norm(last, params.norm, @config.eps), params.head), caches}
  end

  @scale 1 / :math.sqrt(32)

  defn block(x, positions, offset, kc, vc, layer, key_mask) do
    {b, t, _} = Nx.shape(x)
    h = EMLX.Fast.rms_norm(x, layer.attn_norm, 1.0e-5)
    q = linear(h, layer.wq) |> Nx.reshape({b, t, 4, 32}) |> rope(positions)
    k = linear(h, layer.wk) |> Nx.reshape({b, t, 2, 32}) |> rope(positions)
    v = linear(h, layer.wv) |> Nx.reshape({b, t, 2, 32})
    # Grouped-query attention over the cache: 4 query heads share 2 KV heads.
    {attn, kc, vc} = EMLX.Fast.kv_cache_sdpa_update(q, k, v, kc, vc, offset, key_mask, @scale)
    attn = attn |> Nx.transpose(axes: [0, 2, 1, 3]) |> Nx.reshape({b, t, 4 * 32})
    x = x + linear(attn, layer.wo)
    h = EMLX.Fast.rms_norm(x, layer.mlp_norm, 1.0e-5)
    x = x + linear(EMLX.Fast.swiglu(linear(h, layer.gate), linear(h, layer.up)), layer.down)
    {x, kc, vc}
  end

  defnp rope(x, positions), do: EMLX.Fast.rope_with_positions(x, positions, 32, false, 10_000.0, 1.0)

  # x · wᵀ for a {out, in} weight; a quantized one multiplies on its codes.
  defnp linear(x, w), do: Nx.dot(x, [Nx.rank(x) - 1], w, [1])
end

{opts, _} = OptionParser.parse!(System.argv(), strict: [compiler: :string, dense: :boolean])
compiler = Module.concat([opts[:compiler] || "EMLX"])
Code.ensure_loaded!(compiler)

device = EMLX.default_device()
emlx = {EMLX.Backend, device: device}
Nx.global_default_backend(emlx)
config = TinyDecoder.config()
batch_size = 2
steps = 32

IO.puts("""
Tiny decoder on EMLX (#{device}), defn compiler #{inspect(compiler)}
  #{config.layers} layers, d_model #{config.d}, #{config.heads} query heads / #{config.kv_heads} KV heads of #{config.head_dim}, \
SwiGLU #{config.hidden}, vocabulary #{config.vocab}
  linear weights: #{if opts[:dense], do: "dense float32", else: "4-bit affine codes, groups of 64"}; \
#{steps} tokens per prompt, batch of #{batch_size}
""")

params = TinyDecoder.random_params(42) |> Nx.backend_copy(emlx)
params = if opts[:dense], do: params, else: TinyDecoder.quantize(params)
prompts = Nx.tensor([[1, 5, 9, 14, 27, 33, 48, 60], [200, 3, 77, 150, 8, 91, 120, 7]], type: :s32, backend: emlx)

# The serving: each batch runs the jitted generate/4 with the (quantized)
# weights and fresh caches on EMLX.Backend.
serving =
  Nx.Serving.new(
    fn defn_opts ->
      generate = Nx.Defn.jit(&TinyDecoder.generate(&1, &2, &3, steps: steps), defn_opts)
      fn batch -> generate.(batch, params, TinyDecoder.caches(batch.size, emlx)) end
    end,
    compiler: compiler
  )

{:ok, _} = Nx.Serving.start_link(serving: serving, name: TinyDecoder.Serving, batch_size: batch_size, batch_timeout: 1)
batch = Nx.Batch.stack([prompts[0], prompts[1]])

time = fn fun ->
  {us, value} = :timer.tc(fun)
  {us / 1.0e6, value}
end

# MLX computes lazily: reading the tokens back is part of each timed run.
# The first run loads MLX's kernels; the second is timed.
run = fn -> TinyDecoder.Serving |> Nx.Serving.batched_run(batch) |> Nx.backend_copy(Nx.BinaryBackend) end
{first, _} = time.(run)
{seconds, tokens} = time.(run)

# The reference: the same model with the dequantized weights, dense, on
# Nx.BinaryBackend (with EMLX.Fast's plain-Nx formulas), in this process.
binary = TinyDecoder.dense(params, Nx.BinaryBackend)

reference =
  Nx.with_default_backend(Nx.BinaryBackend, fn ->
    ref_serving =
      Nx.Serving.new(fn _ ->
        generate = Nx.Defn.jit(&TinyDecoder.generate(&1, &2, &3, steps: steps), compiler: Nx.Defn.Evaluator)
        fn batch -> generate.(batch, binary, TinyDecoder.caches(batch.size, Nx.BinaryBackend)) end
      end)

    ref_batch = Nx.Batch.stack([Nx.backend_copy(prompts[0], Nx.BinaryBackend), Nx.backend_copy(prompts[1], Nx.BinaryBackend)])
    time.(fn -> Nx.Serving.run(ref_serving, ref_batch) end)
  end)

{ref_seconds, ref_tokens} = reference
%Nx.Tensor{data: %Nx.BinaryBackend{}} = ref_tokens
generated = batch_size * steps

for {row, i} <- Enum.with_index(Nx.to_list(tokens)) do
  IO.puts("prompt #{i}: #{inspect(Nx.to_list(prompts[i]))}")
  IO.puts("  EMLX:            #{inspect(row)}")
  IO.puts("  Nx.BinaryBackend: #{inspect(Enum.at(Nx.to_list(ref_tokens), i))}")
end

same = Nx.to_list(tokens) == Nx.to_list(ref_tokens)

IO.puts("""

EMLX.Backend through Nx.Serving: #{generated} tokens in #{Float.round(seconds, 3)} s = \
#{Float.round(generated / seconds, 1)} tokens/s (first run, loading MLX's kernels: #{Float.round(first, 3)} s)
Nx.BinaryBackend, same model:     #{generated} tokens in #{Float.round(ref_seconds, 3)} s = \
#{Float.round(generated / ref_seconds, 1)} tokens/s
tokens #{if same, do: "identical", else: "DIFFERENT"} on both backends
""")

# An orderly stop (applications stopped, EMLX's command queues closed)
# rather than the halt `mix run` ends with: a halt runs MLX's static
# destructors while a queue thread may still be freeing or computing arrays.
System.stop(if same, do: 0, else: 1)
Process.sleep(:infinity)
