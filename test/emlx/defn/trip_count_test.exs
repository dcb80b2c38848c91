if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Defn.TripCountTest do
    # Counted loops (EMLX.Defn.TripCount): which `while` nodes say how many
    # times they run, counted here by hand; and that compiled functions with
    # such loops (the predicate never evaluated) and without compute what
    # Nx.Defn.Evaluator on Nx.BinaryBackend computes.
    use ExUnit.Case, async: true

    import Nx.Defn

    alias EMLX.Defn.TripCount

    defn up_to_five(x) do
      {_, x} = while({i = 0, x}, i < 5, do: {i + 1, x * 2})
      x
    end

    defn none(x) do
      {_, x} = while({i = 3, x}, i < 3, do: {i + 1, x + 1})
      x
    end

    defn by_two_inclusive(x) do
      {_, x} = while({i = 0, x}, i <= 5, do: {i + 2, x + 1})
      x
    end

    defn over_range(x) do
      while(x, i <- 1..10//3, do: x + i)
    end

    defn over_tensor(x, ts) do
      while(x, t <- ts, do: x * 2 + t)
    end

    defn bound_on_the_left(x) do
      {_, x} = while({i = 1, x}, 5 > i, do: {2 + i, x + 1})
      x
    end

    defn carried_bound(x) do
      {_, _, x} = while({i = 0, n = 7, x}, i < n, do: {i + 1, n, x + 1})
      x
    end

    # Not counted: u8 wraps past 255 (250, 253, 0, 3, ..., 252, 255): 87
    # iterations, not 2.
    defn wraps(x) do
      {_, x} = while({i = Nx.u8(250), x}, i < 255, do: {i + 3, x + 1})
      x
    end

    defn input_bound(x, n) do
      {_, _, x} = while({i = 0, n, x}, i < n, do: {i + 1, n, x + 1})
      x
    end

    defn changing_bound(x) do
      {_, _, x} = while({i = 0, n = 10, x}, i < n, do: {i + 1, n - 1, x + 1})
      x
    end

    defn counting_down(x) do
      {_, x} = while({i = 5, x}, i > 0, do: {i - 1, x + 1})
      x
    end

    defn on_the_state(x) do
      {x, _} = while({x, i = 0}, Nx.sum(x) < 100, do: {x * 2, i + 1})
      x
    end

    defn long(x) do
      {_, x} = while({i = 0, x}, i < 5000, do: {i + 1, x + 1})
      x
    end

    defn nested(x) do
      {_, x} =
        while {i = 0, x}, i < 3 do
          {_, x} = while({j = 0, x}, j < 4, do: {j + 1, x * 2 + j})
          {i + 1, x - 1}
        end

      x
    end

    # The trip counts of every `while` in the function's expression, outer
    # loops first.
    defp counts(fun, args) do
      expr = apply(Nx.Defn.debug_expr(fun), args)
      [expr] |> Nx.Defn.Composite.flatten_list() |> Enum.flat_map(&whiles(&1, MapSet.new())) |> elem_counts()
    end

    defp elem_counts(list), do: list |> Enum.uniq_by(&elem(&1, 0)) |> Enum.map(&elem(&1, 1))

    defp whiles(%Nx.Tensor{data: %Nx.Defn.Expr{id: id, op: op, args: args}} = t, seen) do
      if MapSet.member?(seen, id) do
        []
      else
        seen = MapSet.put(seen, id)

        own =
          case {op, args} do
            {:while, [initial, arg, condition, body]} -> [{id, TripCount.count(initial, arg, condition, body)}]
            _ -> []
          end

        {_, inner} = Nx.Defn.Tree.apply_args(t, :all, [], fn arg, acc -> {arg, acc ++ whiles(arg, seen)} end)
        own ++ inner
      end
    end

    defp whiles(_other, _seen), do: []

    @x Nx.tensor([1.0, -2.0])
    @ts Nx.tensor([0.5, 1.5, -1.0])

    test "counted loops say how many times they run" do
      assert counts(&up_to_five/1, [@x]) == [5]
      assert counts(&none/1, [@x]) == [0]
      assert counts(&by_two_inclusive/1, [@x]) == [3]
      assert counts(&over_range/1, [@x]) == [4]
      assert counts(&over_tensor/2, [@x, Nx.tensor([1.0, 2.0, 3.0])]) == [3]
      assert counts(&bound_on_the_left/1, [@x]) == [2]
      assert counts(&carried_bound/1, [@x]) == [7]
      assert counts(&long/1, [@x]) == [5000]
      assert counts(&nested/1, [@x]) == [3, 4]
    end

    test "other loops are not counted" do
      assert counts(&wraps/1, [@x]) == [nil]
      assert counts(&input_bound/2, [@x, 3]) == [nil]
      assert counts(&changing_bound/1, [@x]) == [nil]
      assert counts(&counting_down/1, [@x]) == [nil]
      assert counts(&on_the_state/1, [@x]) == [nil]
    end

    defp oracle(fun, args) do
      args = Enum.map(args, &Nx.backend_copy(&1, Nx.BinaryBackend))
      Nx.with_default_backend(Nx.BinaryBackend, fn -> Nx.Defn.jit_apply(fun, args, compiler: Nx.Defn.Evaluator) end)
    end

    defp compiled(fun, args) do
      args = Enum.map(args, &Nx.backend_copy(&1, {EMLX.Backend, device: :cpu}))
      Nx.Defn.jit_apply(fun, args, compiler: EMLX, device: :cpu)
    end

    test "compiled loops, counted or not, compute what the Evaluator computes" do
      cases = [
        {&up_to_five/1, [@x]},
        {&none/1, [@x]},
        {&by_two_inclusive/1, [@x]},
        {&over_range/1, [@x]},
        {&over_tensor/2, [@x, @ts]},
        {&bound_on_the_left/1, [@x]},
        {&carried_bound/1, [@x]},
        {&wraps/1, [@x]},
        {&input_bound/2, [@x, Nx.tensor(4)]},
        {&input_bound/2, [@x, Nx.tensor(-1)]},
        {&changing_bound/1, [@x]},
        {&counting_down/1, [@x]},
        {&on_the_state/1, [Nx.tensor([1.0, 2.0])]},
        {&long/1, [@x]},
        {&nested/1, [@x]}
      ]

      for {fun, args} <- cases do
        want = oracle(fun, args)
        got = compiled(fun, args)
        assert Nx.to_flat_list(got) == Nx.to_flat_list(want), "#{inspect(fun)}: #{inspect(got)} vs #{inspect(want)}"
      end
    end

    test "Nx.Random draws (counted loops inside) match Nx.BinaryBackend's" do
      key = Nx.Random.key(7)
      draw = fn key -> Nx.Random.uniform(key, shape: {5, 3}) end
      {want, want_key} = oracle(draw, [key])
      {got, got_key} = compiled(draw, [key])
      assert Nx.to_flat_list(got) == Nx.to_flat_list(want)
      assert Nx.to_flat_list(got_key) == Nx.to_flat_list(want_key)
    end
  end
end
