if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Fuzz.Repro do
    @moduledoc false
    # A failing step as Elixir code: its inputs as Nx literals, then the op.

    alias EMLX.Fuzz.{Exec, Gen}

    def format(step, ref) do
      inputs =
        for i <- Enum.uniq(Gen.refs(step.args)) do
          "x#{i} = #{literal(elem(ref, i))}"
        end

      expected =
        for i <- step.out do
          "# expected: #{inspect(elem(ref, i), limit: 12) |> String.replace("\n", " ")}"
        end

      Enum.join(inputs ++ [call(step)] ++ expected, "\n")
    end

    @doc "An Nx literal that rebuilds `t` exactly (on the default backend)."
    def literal(t) do
      type = inspect(t.type)

      cond do
        Nx.size(t) == 0 ->
          "Nx.broadcast(Nx.tensor(0, type: #{type}), #{inspect(t.shape)})"

        t.shape == {} ->
          "Nx.tensor(#{inspect(Nx.to_number(t))}, type: #{type})"

        true ->
          "Nx.tensor(#{inspect(Nx.to_flat_list(t), limit: :infinity)}, type: #{type}) |> Nx.reshape(#{inspect(t.shape)})"
      end
    end

    defp call(%{op: op, args: args, opts: opts}) do
      a = Enum.map(args, &arg/1)

      cond do
        op in Exec.unary() -> "Nx.#{op}(#{Enum.join(a, ", ")})"
        op in Exec.binary() -> "Nx.#{op}(#{Enum.join(a, ", ")})"
        true -> special(op, a, opts)
      end
    end

    defp special(:reshape, [a], opts), do: "Nx.reshape(#{a}, #{inspect(opts[:shape])})"
    defp special(:new_axis, [a], opts), do: "Nx.new_axis(#{a}, #{opts[:axis]})"

    defp special(:slice, [a], o),
      do: "Nx.slice(#{a}, #{inspect(o[:starts])}, #{inspect(o[:lengths])}, strides: #{inspect(o[:strides])})"

    defp special(:dynamic_slice, [a | starts], o),
      do: "Nx.slice(#{a}, [#{Enum.join(starts, ", ")}], #{inspect(o[:lengths])})"

    defp special(:put_slice, [a, s], o), do: "Nx.put_slice(#{a}, #{inspect(o[:starts])}, #{s})"
    defp special(op, [list], o) when op in [:concatenate, :stack], do: "Nx.#{op}(#{list}, axis: #{o[:axis]})"
    defp special(:pad, [a, v], o), do: "Nx.pad(#{a}, #{v}, #{inspect(o[:config])})"
    defp special(:tile, [a], o), do: "Nx.tile(#{a}, #{inspect(o[:reps])})"
    defp special(op, [a], o) when op in [:as_type, :bitcast], do: "Nx.#{op}(#{a}, #{inspect(o[:type])})"
    defp special(op, args, []), do: "Nx.#{op}(#{Enum.join(args, ", ")})"

    defp special(:dot, [a, b], o),
      do:
        "Nx.dot(#{a}, #{inspect(o[:contract_a])}, #{inspect(o[:batch_a])}, #{b}, #{inspect(o[:contract_b])}, #{inspect(o[:batch_b])})"

    defp special(op, [a], o) when op in [:window_sum, :window_max, :window_min, :window_product],
      do: "Nx.#{op}(#{a}, #{inspect(o[:window])}, #{inspect(Keyword.delete(o, :window))})"

    defp special(op, [], o) when op in [:iota, :eye],
      do: "Nx.#{op}(#{inspect(o[:shape])}, #{inspect(Keyword.delete(o, :shape))})"

    defp special(op, args, opts), do: "Nx.#{op}(#{Enum.join(args, ", ")}, #{inspect(opts)})"

    defp arg({:v, i}), do: "x#{i}"
    defp arg({:num, n}), do: inspect(n)
    defp arg({:list, items}), do: "[" <> Enum.map_join(items, ", ", &arg/1) <> "]"
    defp arg({:view, inner, transforms}), do: Enum.reduce(transforms, arg(inner), &view/2)

    defp view({:transpose, perm}, code), do: "Nx.transpose(#{code}, axes: #{inspect(perm)})"
    defp view({:slice, s, l, st}, code), do: "Nx.slice(#{code}, #{inspect(s)}, #{inspect(l)}, strides: #{inspect(st)})"
    defp view({:reverse, axes}, code), do: "Nx.reverse(#{code}, axes: #{inspect(axes)})"
    defp view({:broadcast, shape}, code), do: "Nx.broadcast(#{code}, #{inspect(shape)})"
  end
end
