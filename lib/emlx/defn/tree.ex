if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Defn.Tree do
    @moduledoc """
    Walks `Nx.Defn.Expr` graphs (what `defn` traces) in post-order, as the
    original EMLX's helper of the same name does: every node once, after the
    nodes it reads.

    A graph has scopes: the bodies of `while`, of `fun` (the comparators and
    reducers passed to ops such as `Nx.reduce/4`) and the default
    implementation of a `block` belong to inner scopes, which run separately
    (or not at all, when a backend implements the block). `post_order/2`
    stays in the scope it starts in: a `while`, `fun` or `block` node comes
    after what it reads from that scope (a `while`'s initial state, a
    `block`'s arguments) and its inner graphs are left out; walk them with
    another call when needed. The clauses of a `cond` share their scope and
    are walked. It only needs `Nx.Defn.Tree` and `Nx.Defn.Composite`, so
    any compiler can use it.
    """

    alias Nx.Defn.{Composite, Expr}
    alias Nx.Tensor, as: T

    @type scope_dependencies :: (T.t() -> {:ok, [T.t()]} | :default)

    @doc """
    The `Nx.Tensor` expression nodes reachable from `output` (a tensor or
    any `Nx.Container`: a tuple, a map, a struct) in post-order: each node
    appears once (nodes are told apart by their expression id) and after
    every node of its own scope that it reads. The nodes are returned as
    they are, not rewritten.

    `scope_dependencies` lets a caller say which nodes a node depends on:
    it is called with every node reached and returns `{:ok, deps}` (these
    `Nx.Tensor` nodes, instead of the node's arguments) or `:default` (the
    node's same-scope arguments, as `Nx.Defn.Tree.apply_args/4` with
    `:scope` lists them; none for `fun`).

        iex> expr = Nx.Defn.debug_expr(fn a, b -> a |> Nx.add(b) |> Nx.multiply(a) end).(1, 2)
        iex> expr |> EMLX.Defn.Tree.post_order() |> Enum.map(& &1.data.op)
        [:parameter, :parameter, :add, :multiply]
    """
    @spec post_order(Nx.Container.t(), scope_dependencies()) :: [T.t()]
    def post_order(output, scope_dependencies \\ fn _node -> :default end)
        when is_function(scope_dependencies, 1) do
      {_seen, nodes} =
        [output]
        |> Composite.flatten_list()
        |> Enum.reduce({MapSet.new(), []}, &visit(&1, &2, scope_dependencies))

      Enum.reverse(nodes)
    end

    # Depth-first: a node is emitted (prepended) after its dependencies.
    defp visit(%T{data: %Expr{id: id}} = node, {seen, nodes} = acc, deps_fun) do
      if MapSet.member?(seen, id) do
        acc
      else
        {seen, nodes} =
          node |> dependencies(deps_fun) |> Enum.reduce({MapSet.put(seen, id), nodes}, &visit(&1, &2, deps_fun))

        {seen, [node | nodes]}
      end
    end

    # Concrete tensors among the arguments (constants) are not nodes.
    defp visit(_other, acc, _deps_fun), do: acc

    # A fun's arguments are its own parameters: nothing of the outer scope.
    defp dependencies(%T{data: %Expr{op: :fun}}, _deps_fun), do: []

    defp dependencies(node, deps_fun) do
      case deps_fun.(node) do
        {:ok, deps} when is_list(deps) ->
          deps

        :default ->
          {_, deps} = Nx.Defn.Tree.apply_args(node, :scope, [], fn dep, acc -> {dep, [dep | acc]} end)
          Enum.reverse(deps)

        other ->
          raise ArgumentError,
                "post_order: scope_dependencies must return {:ok, [node]} or :default, got: #{inspect(other)}"
      end
    end
  end
end
