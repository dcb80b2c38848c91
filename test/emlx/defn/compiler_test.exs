if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Defn.CompilerTest do
    # `compiler: EMLX`: options, caching, what each Nx.Defn.Expr node lowers
    # to, errors. Values are checked against Nx.Defn.Evaluator on
    # Nx.BinaryBackend (EMLX.BackendCase.check/3 runs every backend test
    # compiled as well).
    use EMLX.BackendCase, async: true

    import Nx.Defn, only: [defn: 2]

    @opts [compiler: EMLX, device: :cpu]
    @backend_eager {EMLX.Backend, device: :cpu}

    defn carry_weight(x, w) do
      {x, _w, _i} =
        while {x, w, i = 0}, i < 3 do
          {Nx.tanh(Nx.dot(x, [1], w, [1])), w, i + 1}
        end

      x
    end

    defp run(fun, args, opts \\ []), do: Nx.Defn.jit_apply(fun, args, Keyword.merge(@opts, opts))

    defp oracle(fun, args) do
      args = Enum.map(args, &Nx.backend_copy(&1, Nx.BinaryBackend))
      Nx.with_default_backend(Nx.BinaryBackend, fn -> Nx.Defn.jit_apply(fun, args, compiler: Nx.Defn.Evaluator) end)
    end

    defp same(fun, args, opts \\ []) do
      expected = oracle(fun, args)
      assert_same(run(fun, Enum.map(args, &emlx/1)), expected, opts)
    end

    describe "Nx.Defn.Compiler callbacks" do
      test "__to_backend__/1 names EMLX.Backend on the device" do
        assert Nx.Defn.to_backend(compiler: EMLX, device: :cpu) == {EMLX.Backend, device: :cpu}
      end

      test "__partitions_options__/1 gives each partition a command queue of its own" do
        parts = EMLX.__partitions_options__(device: :cpu, max_concurrency: 3)
        assert length(parts) == 3
        queues = Enum.map(parts, & &1[:command_queue])
        assert Enum.all?(queues, &match?(%EMLX.CommandQueue{device: :cpu}, &1))
        assert length(Enum.uniq_by(queues, & &1.id)) == 3
      end

      test "an unknown option raises, naming it" do
        assert_raise ArgumentError, ~r/unknown option :client for compiler: EMLX/, fn ->
          run(&Nx.add(&1, 1), [emlx(bin([1]))], client: :host)
        end
      end

      test "bad option values raise" do
        x = emlx(bin([1.0]))
        assert_raise ArgumentError, ~r/unknown device :tpu/, fn -> run(&Nx.exp/1, [x], device: :tpu) end
        assert_raise ArgumentError, ~r/:fuse must be a boolean/, fn -> run(&Nx.exp/1, [x], fuse: 1) end
        assert_raise ArgumentError, ~r/:hooks option must be a map/, fn -> run(&Nx.exp/1, [x], hooks: []) end

        assert_raise ArgumentError, ~r/:command_queue must be an EMLX.CommandQueue/, fn ->
          run(&Nx.exp/1, [x], command_queue: 1)
        end
      end

      test ":command_queue runs the program on that queue" do
        q = EMLX.CommandQueue.new!(:cpu)
        before = EMLX.CommandQueue.info(q).completed
        out = run(&Nx.multiply(&1, 3), [emlx(bin([1, 2]))], command_queue: q)
        assert Nx.to_flat_list(out) == [3, 6]
        assert EMLX.NIF.tensor_queue_id(out.data.ref) == q.id
        assert EMLX.CommandQueue.info(q).completed > before
      end

      test "the default defn options, and Nx.Defn.compile/3" do
        fun = fn x, y -> x |> Nx.multiply(y) |> Nx.sum() end
        compiled = Nx.Defn.compile(fun, [Nx.template({3}, :f32), Nx.template({3}, :f32)], @opts)
        assert compiled.(emlx(bin([1.0, 2.0, 3.0])), emlx(bin([4.0, 5.0, 6.0]))) |> Nx.to_number() == 32.0

        Nx.Defn.default_options(@opts)
        assert Nx.Defn.jit(fun).(emlx(bin([1.0])), emlx(bin([2.0]))) |> Nx.to_number() == 2.0
      after
        Nx.Defn.default_options([])
      end
    end

    describe "caching" do
      test "a second call with the same templates does no lowering" do
        me = self()

        fun = fn x ->
          send(me, :lowered)
          Nx.add(x, 1)
        end

        f = Nx.Defn.jit(fun, @opts)
        assert Nx.to_flat_list(f.(emlx(bin([1, 2])))) == [2, 3]
        assert_received :lowered
        assert Nx.to_flat_list(f.(emlx(bin([5, 6])))) == [6, 7]
        refute_received :lowered
        # Other templates: lowered again.
        assert Nx.to_flat_list(f.(emlx(bin([1.5])))) == [2.5]
        assert_received :lowered
      end

      test "many processes calling one compiled function get their own answers" do
        f = Nx.Defn.jit(&Nx.multiply(&1, &1), @opts)

        1..32
        |> Task.async_stream(
          fn i ->
            for j <- 1..20, do: assert(Nx.to_flat_list(f.(emlx(bin([i, j])))) == [i * i, j * j])
          end,
          timeout: EMLX.TestDevice.shared_queue_timeout()
        )
        |> Enum.each(&assert(match?({:ok, _}, &1)))
      end
    end

    describe "values" do
      test "parameters, constants, tensors of the expression, tuples and maps" do
        same(fn x, y -> {Nx.add(x, Nx.tensor([10, 20])), %{b: Nx.multiply(y, 3), c: Nx.tensor(7)}} end, [
          bin([1, 2]),
          bin([3, 4])
        ])

        same(fn x -> {x, Nx.tensor(3.5)} end, [bin([1.0])])
      end

      test "outputs keep names and vectorized axes" do
        x = Nx.iota({2, 3}, names: [:rows, :cols], backend: Nx.BinaryBackend)
        same(&Nx.multiply(&1, 2), [x])
        v = Nx.vectorize(bin([[1, 2], [3, 4]]), :batch)
        got = run(fn v -> Nx.sum(Nx.multiply(v, v)) end, [emlx(v)])
        assert got.vectorized_axes == [batch: 2]
        assert got |> Nx.devectorize() |> Nx.to_flat_list() == [5, 25]
      end

      test "narrow and wide types: f8, s4, f64, c64" do
        same(&Nx.multiply(&1, 3), [bin([1.0, -2.5, 4.0], type: {:f, 8})])
        same(&Nx.add(&1, 5), [bin([1, -2, 6], type: {:s, 4})])
        # float64 keeps its precise paths (the C library's exp), to the last bit.
        same(&Nx.exp/1, [bin([0.1, 0.5, 2.0], type: :f64)])
        same(&Nx.multiply(&1, Complex.new(0, 1)), [bin([Complex.new(1, 2)])])
      end

      test "creation ops: iota, eye, from_binary-backed constants" do
        same(fn x -> Nx.add(x, Nx.iota({2, 3}, axis: 1)) end, [bin([[1, 2, 3], [4, 5, 6]])])
        same(fn x -> Nx.dot(x, Nx.eye(2)) end, [bin([[1.0, 2.0], [3.0, 4.0]])])
      end

      test "quantized weights in Nx.dot" do
        w = Nx.iota({8, 64}, type: :f32, backend: {EMLX.Backend, device: :cpu}) |> Nx.divide(64) |> Nx.sin()
        qw = EMLX.Quantization.quantize(w, type: {:s, 4}, group_size: 64)
        x = emlx(random({2, 64}, {:f, 32}))
        expected = Nx.dot(x, [1], EMLX.Quantization.dequantize(qw), [1])
        got = run(&Nx.dot(&1, [1], &2, [1]), [x, qw])
        # The GPU computes float32 products in TF32 (EMLX.TestDevice.tf32/2).
        assert Nx.to_number(Nx.all_close(got, expected, EMLX.TestDevice.tf32(atol: 1.0e-4))) == 1
      end

      test "quantized weights of every mode, carried through a loop" do
        w = Nx.iota({64, 64}, type: :f32, backend: {EMLX.Backend, device: :cpu}) |> Nx.divide(640) |> Nx.sin()
        x = emlx(random({2, 64}, {:f, 32}))

        loop = &carry_weight/2

        for opts <- [[type: {:s, 4}, group_size: 64], [mode: "mxfp4"], [mode: "mxfp8"], [mode: "nvfp4"]] do
          qw = EMLX.Quantization.quantize(w, opts)
          dense = EMLX.Quantization.dequantize(qw)
          expected = Enum.reduce(1..3, x, fn _, x -> Nx.tanh(Nx.dot(x, [1], dense, [1])) end)
          got = run(loop, [x, qw])

          # Three TF32 products in a row on the GPU.
          tol = EMLX.TestDevice.tf32([atol: 1.0e-4], atol: 5.0e-2, rtol: 1.0e-2)

          assert Nx.to_number(Nx.all_close(got, expected, tol)) == 1,
                 "mode #{inspect(opts)}"
        end
      end

      test "EMLX.Fast fused ops and Nx.block natives" do
        x = random({2, 8}, {:f, 32})
        same(fn x -> Nx.cumulative_sum(x, axis: 1) end, [x], atol: 1.0e-5)
        same(fn x -> Nx.take(x, Nx.tensor([1, 0]), axis: 0) end, [x])
        same(fn x -> Nx.top_k(x, k: 3) end, [x])
        same(fn x -> Nx.LinAlg.determinant(Nx.reshape(Nx.slice(x, [0, 0], [2, 4]), {2, 2, 2})) end, [x], atol: 1.0e-4)
        w = emlx(bin(List.duplicate(1.0, 8)))
        got = run(&EMLX.Fast.rms_norm(&1, &2, 1.0e-5), [emlx(x), w])
        expected = Nx.with_default_backend(@backend_eager, fn -> EMLX.Fast.rms_norm(emlx(x), w, 1.0e-5) end)
        assert Nx.to_number(Nx.all_close(got, expected, atol: 1.0e-5)) == 1
      end

      test "a block's default expression where EMLX.Backend has no native form" do
        # Complex determinant: no native block, lowered from Nx's default.
        a = bin([[Complex.new(1, 1), 2], [3, Complex.new(0, -1)]])
        same(&Nx.LinAlg.determinant/1, [a], atol: 1.0e-5)
      end
    end

    describe "reduce and window_reduce with a function" do
      test "order-free reducers fold pairwise, others in Nx's order" do
        x = bin([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
        same(&Nx.reduce(&1, 0, [axes: [1]], fn a, b -> Nx.add(a, b) end), [x])
        same(&Nx.reduce(&1, 1, fn a, b -> Nx.multiply(a, b) end), [x])
        same(&Nx.reduce(&1, -100, [axes: [0], keep_axes: true], fn a, b -> Nx.max(a, b) end), [x])
        f = random({3, 7}, {:f, 32})
        # Not associative: Nx's left fold, f(x_i, acc), exactly.
        same(&Nx.reduce(&1, 0.0, [axes: [1]], fn a, acc -> Nx.add(Nx.abs(a), Nx.multiply(acc, 0.5)) end), [f])
      end

      test "long axes fold in a program loop" do
        f = random({2, 100}, {:f, 32})
        same(&Nx.reduce(&1, 0.0, [axes: [1]], fn a, acc -> Nx.subtract(a, acc) end), [f], atol: 1.0e-5)
      end

      test "window_reduce pads with the accumulator and folds each window" do
        x = bin([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])

        same(
          &Nx.window_reduce(&1, -1.0, {2, 2}, [padding: [{1, 0}, {0, 1}], strides: [1, 2]], fn a, b ->
            Nx.add(Nx.multiply(a, 2), b)
          end),
          [x]
        )
      end

      test "a reducer that is not element-wise raises, naming the op" do
        assert_raise ArgumentError, ~r/uses Nx.sum, which is not element-wise/, fn ->
          run(&Nx.reduce(&1, 0, fn a, b -> Nx.sum(Nx.stack([a, b])) end), [emlx(bin([1, 2]))])
        end
      end
    end

    describe "errors" do
      test "a shape error raises ArgumentError when compiling, naming the op" do
        assert_raise ArgumentError, ~r/cannot broadcast|broadcast/, fn ->
          run(fn x -> Nx.add(x, Nx.iota({3})) end, [emlx(bin([1, 2]))])
        end
      end

      test "a singular triangular system gives NaN when the program runs (no check needed)" do
        # EMLX answers invalid linear algebra with NaN, decided on the device
        # (test/emlx/backend/linalg_invalid_test.exs).
        a = emlx(bin([[1.0, 0.0], [2.0, 0.0]]))
        b = emlx(bin([1.0, 2.0]))
        x = run(&Nx.LinAlg.triangular_solve(&1, &2), [a, b])
        assert x |> Nx.is_nan() |> Nx.all() |> Nx.to_number() == 1

        ok = emlx(bin([[1.0, 0.0], [2.0, 4.0]]))
        assert Nx.to_flat_list(run(&Nx.LinAlg.triangular_solve(&1, &2), [ok, b])) == [1.0, 0.0]
      end

      test "EMLX.Backend code reading a traced tensor's value raises, naming what reads" do
        assert_raise ArgumentError, ~r/EMLX.item.*cannot run inside a function compiled with compiler: EMLX/, fn ->
          EMLX.Defn.Trace.run(fn -> EMLX.Defn.Trace.placeholder(:cpu, {}, :float32) |> EMLX.item() end)
        end
      end

      test "inputs of another command queue, lazy or evaluated, are settled first" do
        q = EMLX.CommandQueue.new!(:cpu)
        lazy = EMLX.CommandQueue.with_queue(q, fn -> Nx.add(emlx(bin([1, 2])), 1) end)
        assert Nx.to_flat_list(run(&Nx.multiply(&1, 2), [lazy])) == [4, 6]
      end
    end
  end
end

if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Defn.CompilerMemoryTest do
    # Changes MLX's memory limit, which every test shares: not async.
    use ExUnit.Case, async: false
    @moduletag :nx

    test "an MLX failure inside the program raises EMLX.NIFError and the queue lives on" do
      x = Nx.tensor([1.0], backend: {EMLX.Backend, device: :cpu})
      fun = fn x -> x |> Nx.broadcast({1024, 1024}) |> Nx.exp() |> Nx.sum() end
      previous = EMLX.set_memory_limit(1_000_000)

      try do
        assert_raise EMLX.NIFError, ~r/memory limit/, fn ->
          Nx.Defn.jit_apply(fun, [x], compiler: EMLX, device: :cpu)
        end
      after
        EMLX.set_memory_limit(previous)
      end

      assert Nx.Defn.jit_apply(fun, [x], compiler: EMLX, device: :cpu) |> Nx.to_number() > 2.8e6
    end
  end
end
