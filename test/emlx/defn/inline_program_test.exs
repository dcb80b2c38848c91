if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Defn.InlineProgramTest do
    # Where a compiled function runs (native/src/program.rs): a small
    # straight-line program (no loop, branch, check or callback; unfused) on
    # an idle CPU queue in the calling NIF, as eager evaluation does; a
    # straight-line program with a large graph is built there and evaluated
    # on the queue thread; every other program is a queue job. Values are
    # checked against Nx.Defn.Evaluator on Nx.BinaryBackend.
    # async: false: the last test reads MLX's process-wide peak memory.
    use ExUnit.Case, async: false

    import Nx.Defn, only: [defn: 2]

    alias EMLX.CommandQueue

    defn(affine_tanh(x, w, b), do: Nx.tanh(Nx.dot(x, w) + b))

    defn loop_double(x) do
      {x, _} =
        while {x, i = 0}, i < 3 do
          {x * 2, i + 1}
        end

      x
    end

    defn(hooked(x), do: x |> Nx.multiply(3) |> hook(:tripled, &send(self(), {:tripled, &1})) |> Nx.add(1))

    defn(exp_mul_add(x, y), do: x |> Nx.exp() |> Nx.multiply(y) |> Nx.add(y))

    defp jit(fun, q, opts \\ []), do: Nx.Defn.jit(fun, [compiler: EMLX, command_queue: q] ++ opts)

    defp on(q, list, type \\ :f32) do
      CommandQueue.with_queue(q, fn -> Nx.tensor(list, type: type, backend: {EMLX.Backend, device: :cpu}) end)
    end

    # exp_mul_add jitted on a queue of its own, its inputs x = iota * 1e-6
    # and y = cos(x) (n elements, dense: MLX computes a broadcast scalar's
    # results one element wide), and the active memory to measure peaks
    # from, after one call (the compilation), a collection and a reset of
    # MLX's peak.
    defp measured_exp_mul_add(n) do
      q = CommandQueue.new!(:cpu)
      f = jit(&exp_mul_add/2, q)

      {x, y} =
        CommandQueue.with_queue(q, fn ->
          x = Nx.iota({n}, type: :f32, backend: {EMLX.Backend, device: :cpu}) |> Nx.multiply(1.0e-6)
          y = Nx.cos(x)
          Enum.each([x, y], &(:ok = EMLX.eval(&1.data.ref)))
          {x, y}
        end)

      f.(x, y)
      :erlang.garbage_collect()
      :ok = CommandQueue.synchronize(q)
      EMLX.reset_peak_memory()
      {f, x, y, EMLX.memory_info().active_memory}
    end

    defp oracle(fun, args) do
      args = Enum.map(args, &Nx.backend_copy(&1, Nx.BinaryBackend))
      Nx.with_default_backend(Nx.BinaryBackend, fn -> Nx.Defn.jit_apply(fun, args, compiler: Nx.Defn.Evaluator) end)
    end

    defp info(q), do: CommandQueue.info(q)

    # Runs `call` once, asserting that it was one queue job (not run in the
    # NIF); its result.
    defp one_job(q, call) do
      before = info(q)
      result = call.()
      later = info(q)
      assert later.inline == before.inline
      assert later.completed - before.completed == 1
      result
    end

    defp close?(got, want, tol) do
      Enum.zip(Nx.to_flat_list(got), Nx.to_flat_list(want)) |> Enum.all?(fn {a, b} -> abs(a - b) <= tol end)
    end

    test "a small straight-line function runs in the calling NIF, with the Evaluator's values" do
      q = CommandQueue.new!(:cpu)
      f = jit(&affine_tanh/3, q)
      x = on(q, [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
      w = on(q, [[0.1, -0.2], [0.3, 0.4], [-0.5, 0.6]])
      b = on(q, [0.05, -0.05])
      want = oracle(&affine_tanh/3, [x, w, b])
      # The first call lowers the program; the next ones only run it.
      f.(x, w, b)
      before = info(q)

      for _ <- 1..5 do
        got = f.(x, w, b)
        assert got.shape == {2, 2} and got.type == {:f, 32}
        assert close?(got, want, 1.0e-6)
      end

      later = info(q)
      assert later.completed - before.completed == 5
      assert later.inline - before.inline == if(later.evaluates_inline, do: 5, else: 0)
    end

    test "a function with a loop is a queue job" do
      q = CommandQueue.new!(:cpu)
      f = jit(&loop_double/1, q)
      x = on(q, [1, -2, 3], :s32)
      f.(x)
      assert Nx.to_flat_list(one_job(q, fn -> f.(x) end)) == [8, -16, 24]
    end

    test "a straight-line function over large tensors is evaluated on the queue thread" do
      q = CommandQueue.new!(:cpu)
      f = jit(&exp_mul_add/2, q)
      n = 100_000

      x =
        CommandQueue.with_queue(q, fn ->
          Nx.iota({n}, type: :f32, backend: {EMLX.Backend, device: :cpu}) |> Nx.multiply(1.0e-5)
        end)

      y = CommandQueue.with_queue(q, fn -> Nx.cos(x) end)
      want = oracle(&exp_mul_add/2, [x, y])
      f.(x, y)
      assert close?(one_job(q, fn -> f.(x, y) end), want, 1.0e-5)
    end

    test "hooks of a function run in the NIF receive their values" do
      q = CommandQueue.new!(:cpu)
      f = jit(&hooked/1, q)
      x = on(q, [1.0, 2.0])
      assert Nx.to_flat_list(f.(x)) == [4.0, 7.0]
      assert_received {:tripled, tripled}
      assert Nx.to_flat_list(tripled) == [3.0, 6.0]
      before = info(q)
      assert Nx.to_flat_list(f.(x)) == [4.0, 7.0]
      assert_received {:tripled, _}
      assert info(q).inline - before.inline == if(before.evaluates_inline, do: 1, else: 0)
    end

    test "a failure inside a function run in the NIF raises EMLX.NIFError, and the queue carries on" do
      q = CommandQueue.new!(:cpu)
      f = jit(&affine_tanh/3, q)
      x = on(q, [[1.0, 2.0]])
      w = on(q, [[1.0], [1.0]])
      b = on(q, [0.0])
      want = oracle(&affine_tanh/3, [x, w, b])
      f.(x, w, b)
      previous = EMLX.set_memory_limit(0)

      try do
        assert_raise EMLX.NIFError, ~r/memory limit/, fn -> f.(x, w, b) end
      after
        EMLX.set_memory_limit(previous)
      end

      assert close?(f.(x, w, b), want, 1.0e-6)
      assert info(q).failed >= 1
    end

    test "a compiled function's intermediates are freed before it evaluates, so MLX reuses their buffers" do
      n = 4_000_000
      bytes = 4 * n
      {f, x, y, base} = measured_exp_mul_add(n)
      r = f.(x, y)
      peak = EMLX.memory_info().peak_memory - base
      # exp(x), its product with y and the sum share one buffer: the program
      # holds none of them while MLX evaluates (three buffers if it did).
      assert peak < 2 * bytes, "peak #{peak} bytes for #{bytes}-byte arrays"
      assert_in_delta Nx.to_number(r[0]), 2.0, 1.0e-6
    end

    test "a call with large outputs first frees the dropped outputs of earlier calls" do
      n = 1_000_000
      bytes = 4 * n
      {f, x, y, base} = measured_exp_mul_add(n)
      # Ten calls whose results are dropped at once, in a process whose
      # heap is large enough that the VM would not collect it in between:
      # unless the calls collect it, the ten results stay allocated (with
      # the collection, MLX reuses the previous result's buffer).
      peak =
        Task.async(fn ->
          Process.flag(:min_heap_size, 4_000_000)
          :erlang.garbage_collect()
          Enum.each(1..10, fn _ -> f.(x, y) end)
          EMLX.memory_info().peak_memory - base
        end)
        |> Task.await(EMLX.TestDevice.shared_queue_timeout())

      assert peak < 4 * bytes, "peak #{peak} bytes for ten #{bytes}-byte results"
      last = (n - 1) * 1.0e-6
      expected = :math.exp(last) * :math.cos(last) + :math.cos(last)
      assert_in_delta Nx.to_number(f.(x, y)[-1]), expected, 1.0e-5
    end
  end
end
