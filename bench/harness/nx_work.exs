# Loaded by bench/run.exs only when Nx is available.

defmodule Bench.NxMLP do
  @moduledoc "A 2-layer MLP (ReLU, cross-entropy) whose step is forward + backward through Nx.Defn.grad."
  import Nx.Defn

  defn loss({w1, b1, w2, b2}, x, y) do
    hidden = Nx.max(Nx.dot(x, w1) + b1, 0)
    logits = Nx.dot(hidden, w2) + b2
    m = stop_grad(Nx.reduce_max(logits, axes: [1], keep_axes: true))
    logp = logits - m - Nx.log(Nx.sum(Nx.exp(logits - m), axes: [1], keep_axes: true))
    -Nx.mean(Nx.sum(y * logp, axes: [1]))
  end

  defn(step(params, x, y), do: grad(params, &loss(&1, x, y)))
end

defmodule Bench.NxXor do
  @moduledoc """
  The tiny training loop of Axon's xor example, written with plain Nx: a
  2-8-1 MLP (tanh, sigmoid), binary cross-entropy, one SGD step from the
  gradient of Nx.Defn.grad, run by Nx's default compiler (Nx.Defn.Evaluator,
  op by op on the backend).
  """
  import Nx.Defn

  defn predict({w1, b1, w2, b2}, x) do
    x |> Nx.dot(w1) |> Nx.add(b1) |> Nx.tanh() |> Nx.dot(w2) |> Nx.add(b2) |> Nx.sigmoid()
  end

  defn loss(params, x, y) do
    p = predict(params, x)
    -Nx.mean(y * Nx.log(p + 1.0e-7) + (1 - y) * Nx.log(1 - p + 1.0e-7))
  end

  defn step({w1, b1, w2, b2} = params, x, y) do
    {g1, gb1, g2, gb2} = grad(params, &loss(&1, x, y))
    {w1 - 0.1 * g1, b1 - 0.1 * gb1, w2 - 0.1 * g2, b2 - 0.1 * gb2}
  end
end

defmodule Bench.NxWork do
  @moduledoc """
  The Nx-level workloads, written once against Nx and run on a given
  backend: `EMLX.Backend` (subject) or `Nx.BinaryBackend` (reference).
  Each `build/3` makes the data and returns the function one call runs.
  A lazy backend's result is forced (`force/1`): through the backend's
  device ref and `EMLX.eval/1` for EMLX.Backend, `Nx.to_binary/1` otherwise
  (BinaryBackend results are already computed, so that costs nothing).
  """

  def build(workload, params, backend) do
    Nx.default_backend(backend)
    fun = make(workload, params, backend)
    # Every call re-asserts the process's default backend: constants created
    # inside Nx (defn's literals) must land on the same backend as the data.
    fn ->
      Nx.default_backend(backend)
      fun.()
    end
  end

  def wave(n, scale, type, backend) do
    Nx.iota({n}, type: :f32, backend: backend) |> Nx.multiply(scale) |> Nx.sin() |> Nx.as_type(type)
  end

  defp type(:float32), do: :f32
  defp type(:bfloat16), do: :bf16
  defp type("float32"), do: :f32
  defp type("bfloat16"), do: :bf16

  def force(%Nx.Tensor{data: %{__struct__: mod}} = t) when mod != Nx.BinaryBackend do
    if Code.ensure_loaded?(mod) and function_exported?(mod, :from_nx, 1) do
      EMLX.eval(mod.from_nx(t))
    else
      Nx.to_binary(t)
    end
  end

  def force(%Nx.Tensor{} = t), do: Nx.to_binary(t)
  def force(tuple) when is_tuple(tuple), do: tuple |> Tuple.to_list() |> Enum.each(&force/1)

  defp chain(x, _c, 0), do: x
  defp chain(x, c, n), do: chain(Nx.add(x, c), c, n - 1)

  defp make(:dispatch_build, %{ops: ops}, b) do
    c = Nx.broadcast(Nx.tensor(1.0e-3, type: :f32, backend: b), {4})
    x0 = wave(4, 0.001, :f32, b)
    fn -> chain(x0, c, ops) end
  end

  defp make(:dispatch_eval, p, b) do
    build = make(:dispatch_build, p, b)
    fn -> force(build.()) end
  end

  defp make(:round_trip, _p, b) do
    x = wave(4, 0.001, :f32, b)
    y = Nx.cos(x)
    fn -> Nx.add(x, y) |> Nx.to_binary() end
  end

  defp make(:matmul, %{n: n, dtype: t}, b) do
    x = wave(n * n, 0.001, type(t), b) |> Nx.reshape({n, n})
    y = Nx.cos(x)
    fn -> Nx.dot(x, y) |> force() end
  end

  defp make(:elementwise, %{n: n}, b) do
    x = wave(n, 0.001, :f32, b)
    y = Nx.cos(x)
    z = Nx.sin(y)
    fn -> Nx.exp(x) |> Nx.multiply(y) |> Nx.add(z) |> force() end
  end

  defp make(:sum, %{shape: shape, axes: axes}, b) do
    x = wave(Enum.product(shape), 0.001, :f32, b) |> Nx.reshape(List.to_tuple(shape))
    fn -> Nx.sum(x, axes: axes) |> force() end
  end

  defp make(:softmax, %{n: n}, b) do
    x = wave(n * n, 0.01, :f32, b) |> Nx.reshape({n, n})

    fn ->
      e = Nx.exp(Nx.subtract(x, Nx.reduce_max(x, axes: [-1], keep_axes: true)))
      Nx.divide(e, Nx.sum(e, axes: [-1], keep_axes: true)) |> force()
    end
  end

  defp make(:mlp, %{batch: batch, inputs: i, hidden: h, classes: k}, b) do
    params = {
      wave(i * h, 0.001, :f32, b) |> Nx.reshape({i, h}) |> Nx.multiply(0.05),
      Nx.broadcast(Nx.tensor(0.0, backend: b), {h}),
      wave(h * k, 0.002, :f32, b) |> Nx.reshape({h, k}) |> Nx.multiply(0.05),
      Nx.broadcast(Nx.tensor(0.0, backend: b), {k})
    }

    x = wave(batch * i, 0.003, :f32, b) |> Nx.reshape({batch, i})
    rows = Nx.iota({batch, 1}, backend: b) |> Nx.remainder(k)
    y = Nx.equal(rows, Nx.iota({1, k}, backend: b)) |> Nx.as_type(:f32)
    fn -> Bench.NxMLP.step(params, x, y) |> force() end
  end

  defp make(:xor_step, %{batch: batch}, b) do
    # The same data on every backend: a wave for the weights, 0/1 inputs.
    w1 = wave(16, 0.7, :f32, b) |> Nx.reshape({2, 8})
    w2 = wave(8, 1.3, :f32, b) |> Nx.reshape({8, 1})
    params = {w1, Nx.broadcast(Nx.tensor(0.0, backend: b), {8}), w2, Nx.broadcast(Nx.tensor(0.0, backend: b), {1})}
    i = Nx.iota({batch, 1}, backend: b)
    x = Nx.concatenate([Nx.remainder(i, 2), Nx.remainder(Nx.quotient(i, 2), 2)], axis: 1) |> Nx.as_type(:f32)
    y = Nx.logical_xor(x[[.., 0]], x[[.., 1]]) |> Nx.as_type(:f32) |> Nx.reshape({batch, 1})
    # A training loop reads the new parameters back at each step's end.
    fn -> Bench.NxXor.step(params, x, y) |> Tuple.to_list() |> Enum.each(&Nx.to_binary/1) end
  end

  defp make(:random_uniform, %{shape: shape}, _b) do
    key = Nx.Random.key(42)
    fn -> key |> Nx.Random.uniform(shape: List.to_tuple(shape)) |> elem(0) |> Nx.to_binary() end
  end

  defp make(:scalar_read_each, %{ops: ops}, b) do
    c = Nx.tensor(1.0e-3, type: :f32, backend: b)
    x0 = Nx.tensor(0.5, type: :f32, backend: b)

    fn ->
      Enum.reduce(1..ops, x0, fn _, x ->
        x = Nx.add(x, c)
        Nx.to_number(x)
        x
      end)
    end
  end

  defp make(:to_binary, %{bytes: bytes}, b) do
    x = wave(div(bytes, 4), 0.001, :f32, b)
    force(x)
    fn -> Nx.to_binary(x) end
  end

  defp make(:from_binary_slices, %{bytes: bytes, pieces: pieces}, b) do
    bin = Bench.Workloads.wave(div(bytes, 4), 0.001, :float32, :cpu) |> EMLX.to_blob() |> :binary.copy()
    piece = div(bytes, pieces)

    fn ->
      for(i <- 0..(pieces - 1), do: Nx.from_binary(binary_part(bin, i * piece, piece), :f32, backend: b))
      |> Enum.each(&force/1)
    end
  end

  defp make(:from_pointer, %{bytes: bytes}, b) do
    source = wave(div(bytes, 4), 0.001, :f32, b)
    pointer = Nx.to_pointer(source, mode: :local)

    # The pointer is only valid while `source` lives: the closure returns
    # it, so that it stays referenced.
    fn ->
      Nx.from_pointer(b, pointer, :f32, {div(bytes, 4)}) |> force()
      source
    end
  end

  defp make(:from_binary, %{bytes: bytes}, b) do
    # Built with the EMLX functions: 16M elements on BinaryBackend take seconds.
    bin = Bench.Workloads.wave(div(bytes, 4), 0.001, :float32, :cpu) |> EMLX.to_blob() |> :binary.copy()
    fn -> Nx.from_binary(bin, :f32, backend: b) |> force() end
  end
end
