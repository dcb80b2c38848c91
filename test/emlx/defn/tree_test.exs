if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Defn.TreeTest do
    # EMLX.Defn.Tree.post_order/1,2 on traced defn graphs: every node once,
    # after its same-scope arguments (as Nx.Defn.Tree.apply_args/4 with
    # :scope lists them), the inner scopes of while/fun/block left out, cond
    # clauses walked; the set of nodes checked against a separate walk.
    use ExUnit.Case, async: true
    import Nx.Defn
    alias EMLX.Defn.Tree

    doctest EMLX.Defn.Tree

    defp trace(fun, args), do: apply(Nx.Defn.debug_expr(fun), args)

    defp args_of(node) do
      {_, deps} = Nx.Defn.Tree.apply_args(node, :scope, [], fn dep, acc -> {dep, [dep | acc]} end)
      for %Nx.Tensor{data: %Nx.Defn.Expr{}} = d <- deps, do: d
    end

    # The ids reachable through same-scope arguments, breadth-first.
    defp reachable(roots) do
      Stream.unfold({roots, MapSet.new()}, fn
        {[], _seen} ->
          nil

        {[node | rest], seen} ->
          if MapSet.member?(seen, node.data.id),
            do: {[], {rest, seen}},
            else:
              {[node.data.id],
               {rest ++ if(node.data.op == :fun, do: [], else: args_of(node)), MapSet.put(seen, node.data.id)}}
      end)
      |> Enum.concat()
      |> MapSet.new()
    end

    defp assert_post_order(nodes, roots) do
      ids = Enum.map(nodes, & &1.data.id)
      assert length(ids) == length(Enum.uniq(ids)), "a node appears twice"
      assert MapSet.new(ids) == reachable(roots)
      index = ids |> Enum.with_index() |> Map.new()

      for node <- nodes, node.data.op != :fun, dep <- args_of(node) do
        assert index[dep.data.id] < index[node.data.id], "#{dep.data.op} comes after #{node.data.op}, which reads it"
      end
    end

    test "a shared subexpression appears once, before its readers" do
      out =
        trace(
          fn a, b ->
            x = Nx.add(a, b)
            x |> Nx.multiply(x) |> Nx.add(x)
          end,
          [1.0, 2.0]
        )

      nodes = Tree.post_order(out)
      assert Enum.map(nodes, & &1.data.op) == [:parameter, :parameter, :add, :multiply, :add]
      assert_post_order(nodes, [out])
    end

    test "containers: every leaf of a tuple or map output" do
      out = trace(fn a, b -> %{sum: Nx.add(a, b), pair: {Nx.exp(a), Nx.add(a, b)}} end, [1.0, 2.0])
      nodes = Tree.post_order(out)
      assert_post_order(nodes, Nx.Defn.Composite.flatten_list([out]))
      assert nodes |> Enum.map(& &1.data.op) |> Enum.frequencies() == %{parameter: 2, add: 2, exp: 1}
    end

    defn while_graph(x) do
      {_, y} =
        while {i = 0, y = x * 2}, i < 3 do
          {i + 1, Nx.sin(y) + 1}
        end

      y + 1
    end

    test "while: its initial state is walked, its body is not" do
      out = trace(&while_graph/1, [1.0])
      nodes = Tree.post_order(out)
      ops = Enum.map(nodes, & &1.data.op)
      assert :while in ops
      refute :sin in ops
      assert Enum.find_index(ops, &(&1 == :multiply)) < Enum.find_index(ops, &(&1 == :while))
      assert_post_order(nodes, [out])
    end

    defn cond_graph(x) do
      if x > 0, do: Nx.exp(x), else: Nx.cos(x)
    end

    test "cond: its clauses share the scope and are walked" do
      out = trace(&cond_graph/1, [1.0])
      ops = out |> Tree.post_order() |> Enum.map(& &1.data.op)
      assert :cond in ops and :exp in ops and :cos in ops and :greater in ops
      assert List.last(ops) == :cond
      assert_post_order(Tree.post_order(out), [out])
    end

    test "fun and block: opaque, their arguments walked" do
      reduce = trace(fn t -> Nx.reduce(t, 0, fn a, b -> Nx.add(Nx.sin(a), b) end) end, [Nx.iota({3}, type: :f32)])
      ops = reduce |> Tree.post_order() |> Enum.map(& &1.data.op)
      assert :fun in ops
      refute :sin in ops

      block =
        trace(fn x, w -> EMLX.Fast.rms_norm(x, w, 1.0e-5) end, [Nx.iota({2, 4}, type: :f32), Nx.iota({4}, type: :f32)])

      nodes = Tree.post_order(block)
      assert Enum.map(nodes, & &1.data.op) == [:parameter, :parameter, :block]
      assert_post_order(nodes, [block])
    end

    test "scope_dependencies replaces a node's dependencies" do
      out = trace(fn a, b -> a |> Nx.exp() |> Nx.add(b) end, [1.0, 2.0])

      only_b = fn
        %Nx.Tensor{data: %Nx.Defn.Expr{op: :add, args: [_, b]}} -> {:ok, [b]}
        _ -> :default
      end

      assert out |> Tree.post_order(only_b) |> Enum.map(& &1.data.op) == [:parameter, :add]

      assert_raise ArgumentError, ~r/must return \{:ok, \[node\]\} or :default/, fn ->
        Tree.post_order(out, fn _ -> :nope end)
      end
    end

    test "a deep chain" do
      out = trace(fn x -> Enum.reduce(1..20_000, x, fn _, acc -> Nx.sin(acc) end) end, [1.0])
      nodes = Tree.post_order(out)
      assert length(nodes) == 20_001
      assert hd(nodes).data.op == :parameter and List.last(nodes) == out
    end
  end
end
