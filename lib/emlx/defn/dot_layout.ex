if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Defn.DotLayout do
    @moduledoc false
    # A dot product read only through a transpose that swaps the free axes
    # of its two operands as blocks, transpose(dot(a, ca, b, cb), perm), is
    # the dot with its operands swapped, dot(b, cb, a, ca): each result
    # element is the same sum of the same products. Nx.Defn.grad writes the
    # gradient of a matrix product's right operand that way
    # (transpose(dot(g, [0], x, [0])) for x·w), and the swapped product
    # comes out in the layout that is read, where the transposed one is a
    # strided view of a product of the other shape. The shape matters to
    # the BLAS: for the {784, 512} gradient of a 784-512 layer at batch 64,
    # OpenBLAS computes gᵀ·x (512x784) in 0.73-0.80 ms and xᵀ·g (784x512)
    # in 0.42-0.47 ms on a 2-core VM; raw MLX's mx.grad computes the latter.
    #
    # Only dots without batch axes, and only where the dot is read once
    # (the transpose is its only reader in any scope, and it is no output):
    # otherwise the product would be computed twice.

    alias Nx.Defn.{Composite, Expr, Tree}
    alias Nx.Tensor, as: T

    @doc false
    # How many times each node of `expr` (by id) is read: by the nodes of
    # every scope, and as an output.
    @spec uses(Nx.Container.t()) :: %{optional(reference()) => pos_integer()}
    def uses(expr) do
      every_argument = fn node -> {:ok, arguments(node)} end
      outputs = Composite.flatten_list([expr])

      expr
      |> EMLX.Defn.Tree.post_order(every_argument)
      |> Enum.flat_map(&arguments/1)
      |> Enum.concat(outputs)
      |> Enum.reduce(%{}, fn
        %T{data: %Expr{id: id}}, acc -> Map.update(acc, id, 1, &(&1 + 1))
        _, acc -> acc
      end)
    end

    defp arguments(node) do
      {_, args} = Tree.apply_args(node, :all, [], &{&1, [&1 | &2]})
      args
    end

    @doc false
    # `{b, cb, a, ca}` (the swapped dot's arguments) when `transpose(tensor,
    # axes)` is such a transposed dot, read once according to `uses`; `nil`
    # otherwise.
    @spec swapped(T.t(), [non_neg_integer()], map()) :: {T.t(), [integer()], T.t(), [integer()]} | nil
    def swapped(%T{data: %Expr{op: :dot, id: id, args: [a, ca, [], b, cb, []]}}, axes, uses) do
      free_a = tuple_size(a.shape) - length(ca)
      free_b = tuple_size(b.shape) - length(cb)
      swap = Enum.to_list(free_a..(free_a + free_b - 1)//1) ++ Enum.to_list(0..(free_a - 1)//1)

      if free_a > 0 and free_b > 0 and axes == swap and Map.get(uses, id) == 1,
        do: {b, cb, a, ca}
    end

    def swapped(_tensor, _axes, _uses), do: nil
  end
end
