if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Defn.ControlFlowTest do
    # while, cond, hooks and tokens under `compiler: EMLX`, against
    # Nx.Defn.Evaluator on Nx.BinaryBackend.
    use EMLX.BackendCase, async: true

    import Nx.Defn
    import ExUnit.CaptureIO

    @opts [compiler: EMLX, device: :cpu]

    defn count_to(x, n) do
      {_i, acc, _n} =
        while {i = 0, acc = x, n}, i < n do
          {i + 1, acc * 2 + i, n}
        end

      acc
    end

    defn collatz_steps(n) do
      {_, steps} =
        while {n, steps = 0}, n != 1 do
          n = if rem(n, 2) == 0, do: div(n, 2), else: 3 * n + 1
          {n, steps + 1}
        end

      steps
    end

    defn nested(x) do
      while {x, i = 0}, i < 3 do
        {_j, x, _i} =
          while {j = 0, x, i}, j < 2 do
            {j + 1, x + j * i, i}
          end

        {x, i + 1}
      end
    end

    defn range_loop(x) do
      while acc = x, i <- 0..4 do
        acc + i * i
      end
    end

    defn tensor_generator(t) do
      while acc = 0, row <- t do
        acc + Nx.sum(row)
      end
    end

    defn branches(x) do
      cond do
        Nx.sum(x) > 10 -> {x * 2, Nx.tensor(1)}
        Nx.sum(x) > 0 -> {x + 100, Nx.tensor(2)}
        true -> {-x, Nx.tensor(3)}
      end
    end

    defn branch_in_loop(x) do
      {x, _} =
        while {x, i = 0}, i < 4 do
          x = if rem(i, 2) == 0, do: x + 1, else: x * 3
          {x, i + 1}
        end

      x
    end

    defn loop_in_branch(x) do
      if Nx.all(x > 0) do
        {x, _} = while({x, i = 0}, i < 3, do: {x * x, i + 1})
        x
      else
        x
      end
    end

    defn hooked(x) do
      y = hook(x + 1, :plus_one)
      z = hook(y * 2, :times_two, &send_hook(:inline, &1))
      z - 1
    end

    defn hooked_loop(x) do
      {x, _} =
        while {x, i = 0}, i < 3 do
          {hook(x + i, :step, &send_hook(:step, &1)), i + 1}
        end

      x
    end

    defn tokens(x) do
      token = create_token()
      {token, a} = hook_token(token, x * 2, :first, &send_hook(:first, &1))
      {token, b} = hook_token(token, a + 1, :second, &send_hook(:second, &1))
      attach_token(token, b)
    end

    defn(printed(x), do: print_value(x + 1, label: "value"))
    defn(printed_expr(x), do: print_expr(x + 1))

    defn(call_back(x), do: Nx.runtime_call(x, x * 2, [], &__MODULE__.add_pending/2) + 1)

    def add_pending(t, _opts), do: Nx.add(t, Process.get(:pending))

    def send_hook(name, value), do: send(Process.get(:test_pid), {:hook, name, value})

    defp both(fun, args) do
      expected =
        Nx.with_default_backend(Nx.BinaryBackend, fn ->
          Nx.Defn.jit_apply(fun, Enum.map(args, &Nx.backend_copy(&1, Nx.BinaryBackend)), compiler: Nx.Defn.Evaluator)
        end)

      assert_same(Nx.Defn.jit_apply(fun, Enum.map(args, &emlx/1), @opts), expected)
    end

    describe "while" do
      test "a loop whose bound is an input" do
        both(&count_to/2, [bin([1.0, 2.0]), bin(6)])
        both(&count_to/2, [bin([1.0, 2.0]), bin(0)])
      end

      test "a data-dependent trip count, with a branch inside" do
        for n <- [1, 6, 27, 97], do: both(&collatz_steps/1, [bin(n)])
      end

      test "nested loops, ranges and tensor generators" do
        both(&nested/1, [bin([1, 2, 3])])
        both(&range_loop/1, [bin([0.5, 1.5])])
        both(&tensor_generator/1, [bin([[1, 2], [3, 4], [5, 6]])])
      end

      test "a long loop runs without a BEAM round trip per step" do
        x = emlx(bin(0.0, type: :f64))
        q = EMLX.CommandQueue.new!(:cpu)
        before = EMLX.CommandQueue.info(q).completed
        out = Nx.Defn.jit_apply(&count_to/2, [x, emlx(bin(500))], Keyword.put(@opts, :command_queue, q))
        # acc_{k+1} = 2 acc_k + k from acc_0 = 0, in float64.
        assert Nx.to_number(out) == Enum.reduce(0..499, 0.0, &(&2 * 2 + &1))
        # One job for the whole loop.
        assert EMLX.CommandQueue.info(q).completed == before + 1
      end
    end

    describe "cond" do
      test "the first true clause runs; branches see their parent's values" do
        for x <- [bin([5, 6]), bin([1, 2]), bin([-3, -4])], do: both(&branches/1, [x])
      end

      test "branches inside loops and loops inside branches" do
        both(&branch_in_loop/1, [bin([1.0, 2.0])])
        both(&loop_in_branch/1, [bin([1.5, 2.0])])
        both(&loop_in_branch/1, [bin([-1.5, 2.0])])
      end
    end

    describe "callbacks (Nx.runtime_call)" do
      test "the callback runs in the caller, mid-program" do
        Process.put(:pending, emlx(bin([10.0, 20.0])))
        out = Nx.Defn.jit_apply(&call_back/1, [emlx(bin([1.0, 2.0]))], @opts)
        assert Nx.to_flat_list(out) == [13.0, 25.0]
      end

      test "a callback needing the waiting queue raises instead of hanging" do
        q = EMLX.CommandQueue.new!(:cpu)
        # A lazy tensor of the queue the program waits on.
        pending = EMLX.CommandQueue.with_queue(q, fn -> EMLX.lazy(fn -> Nx.add(emlx(bin([1.0, 1.0])), 1) end) end)
        Process.put(:pending, pending)

        assert_raise ArgumentError, ~r/waiting for the callback/, fn ->
          Nx.Defn.jit_apply(&call_back/1, [emlx(bin([1.0, 2.0]))], Keyword.put(@opts, :command_queue, q))
        end

        # The queue lives on.
        assert Nx.to_flat_list(
                 Nx.Defn.jit_apply(&Nx.add(&1, 1), [emlx(bin([1]))], Keyword.put(@opts, :command_queue, q))
               ) == [2]
      end

      test "a callback that raises makes the call raise it" do
        Process.put(:pending, :not_a_tensor)

        assert_raise Protocol.UndefinedError, fn ->
          Nx.Defn.jit_apply(&call_back/1, [emlx(bin([1.0]))], @opts)
        end
      end
    end

    describe "hooks" do
      setup do
        Process.put(:test_pid, self())
        :ok
      end

      test "hooks run in the caller, in program order, with the hooked values" do
        out = Nx.Defn.jit_apply(&hooked/1, [emlx(bin([1, 2]))], @opts)
        assert Nx.to_flat_list(out) == [3, 5]
        assert_received {:hook, :inline, value}
        assert Nx.to_flat_list(value) == [4, 6]
        refute_received {:hook, _, _}
      end

      test "the :hooks option overrides and adds callbacks by name" do
        me = self()
        hooks = %{plus_one: &send(me, {:named, :plus_one, &1}), times_two: &send(me, {:named, :times_two, &1})}
        Nx.Defn.jit_apply(&hooked/1, [emlx(bin(1))], Keyword.put(@opts, :hooks, hooks))
        assert_received {:named, :plus_one, a}
        assert_received {:named, :times_two, b}
        assert {Nx.to_number(a), Nx.to_number(b)} == {2, 4}
        refute_received {:hook, :inline, _}
      end

      test "a hook inside a loop runs once per iteration, in order" do
        Nx.Defn.jit_apply(&hooked_loop/1, [emlx(bin(10))], @opts)
        values = for _ <- 1..3, do: assert_received({:hook, :step, v}) && v

        assert Enum.map(values, &Nx.to_number/1) == [10, 11, 13]
      end

      test "tokens keep their hooks in order" do
        out = Nx.Defn.jit_apply(&tokens/1, [emlx(bin([1, 2]))], @opts)
        assert Nx.to_flat_list(out) == [3, 5]
        assert_received {:hook, :first, first}
        assert_received {:hook, :second, second}
        assert {Nx.to_flat_list(first), Nx.to_flat_list(second)} == {[2, 4], [3, 5]}
      end

      test "print_value prints the value when the function runs" do
        printed =
          capture_io(fn ->
            Nx.Defn.jit_apply(&printed/1, [emlx(bin([41]))], @opts)
          end)

        assert printed =~ "value"
        assert printed =~ "42"
      end

      test "print_expr prints the expression when it is built" do
        printed = capture_io(fn -> Nx.Defn.jit_apply(&printed_expr/1, [emlx(bin([1]))], @opts) end)
        assert printed =~ "add"
      end
    end
  end
end
