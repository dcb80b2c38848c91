if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Defn.ServingTest do
    # Nx.Serving with `compiler: EMLX`: inline runs, batched runs through a
    # serving process, partitions (one command queue each) and streaming
    # hooks. Values against the same function on Nx.BinaryBackend.
    use EMLX.BackendCase, async: false

    import Nx.Defn

    @opts [compiler: EMLX, device: :cpu]

    defn(predict(x), do: x |> Nx.multiply(2) |> Nx.add(Nx.sum(x, axes: [1], keep_axes: true)) |> Nx.tanh())

    defn streamed(x) do
      x = hook(x * 2, :doubled)
      x + 1
    end

    defp expected(batch), do: Nx.with_default_backend(Nx.BinaryBackend, fn -> predict(batch) end)

    defp batch(rows), do: Nx.tensor(rows, type: :f32, backend: Nx.BinaryBackend)

    test "an inline serving runs the compiled function" do
      serving = Nx.Serving.jit(&predict/1, @opts)
      input = batch([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
      result = Nx.Serving.run(serving, Nx.Batch.stack([input[0], input[1]]))
      assert %EMLX.Backend{} = result.data
      assert_same(result, expected(input), atol: 1.0e-6)
    end

    test "a serving process batches concurrent requests, over several partitions" do
      serving = Nx.Serving.jit(&predict/1, Keyword.put(@opts, :max_concurrency, 2))
      name = :"emlx_serving_#{System.unique_integer([:positive])}"

      start_supervised!({Nx.Serving, serving: serving, name: name, batch_size: 4, batch_timeout: 20, partitions: true})

      rows = for i <- 1..24, do: [i / 10, -i / 7, 1.0]

      results =
        rows
        |> Task.async_stream(fn row -> Nx.Serving.batched_run(name, Nx.Batch.stack([batch(row)])) end,
          max_concurrency: 12,
          timeout: EMLX.TestDevice.shared_queue_timeout()
        )
        |> Enum.map(fn {:ok, result} -> result end)

      for {row, result} <- Enum.zip(rows, results) do
        assert_same(result, expected(batch([row])), atol: 1.0e-6)
      end
    end

    test "streaming hooks deliver the hooked values" do
      serving = Nx.Serving.jit(&streamed/1, @opts) |> Nx.Serving.streaming(hooks: [:doubled])
      name = :"emlx_streaming_#{System.unique_integer([:positive])}"
      start_supervised!({Nx.Serving, serving: serving, name: name, batch_size: 2})

      events = Nx.Serving.batched_run(name, Nx.Batch.stack([batch([1.0, 2.0])])) |> Enum.to_list()
      assert [{:doubled, doubled}, {:batch, result, _}] = events
      assert Nx.to_flat_list(doubled) == [2.0, 4.0]
      assert Nx.to_flat_list(result) == [3.0, 5.0]
    end
  end
end
