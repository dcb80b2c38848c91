if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Fast.Einsum do
    @moduledoc false
    # Einstein summation for EMLX.Fast.einsum/2: the subscripts parsed and
    # checked against the operands' shapes (so a mistake is an ArgumentError
    # naming the operand and the label), the result's shape, and the plain-Nx
    # formula that is the block's default (and what Nx.Defn.grad
    # differentiates).
    #
    # The formula contracts the operands left to right, each pair with one
    # Nx.dot: a label shared by the pair becomes a batch axis if a later
    # operand or the output still needs it, and is summed otherwise. Labels
    # repeated inside one operand take its diagonal first, and labels found in
    # a single operand and not in the output are summed out first. `...`
    # stands for the same broadcast axes in every operand (size-1 axes
    # broadcast), as in NumPy.

    @doc false
    # %{inputs: [[label]], output: [label], sizes: %{label => size}, shape: tuple}
    def parse!(subscripts, shapes) when is_binary(subscripts) do
      {lhs, rhs} =
        case String.split(String.replace(subscripts, " ", ""), "->") do
          [lhs] -> {lhs, nil}
          [lhs, rhs] -> {lhs, rhs}
          _ -> fail!(subscripts, "more than one \"->\"")
        end

      terms = String.split(lhs, ",")

      if length(terms) != length(shapes) do
        fail!(subscripts, "#{length(terms)} operand subscripts for #{length(shapes)} operands")
      end

      ellipsis_rank = shapes |> Enum.zip(terms) |> Enum.map(&ellipsis_rank!(subscripts, &1)) |> Enum.max(fn -> 0 end)
      inputs = Enum.zip_with(terms, shapes, &labels!(subscripts, &1, &2))
      sizes = sizes!(subscripts, inputs, shapes)

      output =
        case rhs do
          nil -> implicit_output(inputs, ellipsis_rank)
          rhs -> output!(subscripts, rhs, ellipsis_rank, sizes)
        end

      %{inputs: inputs, output: output, sizes: sizes, shape: List.to_tuple(Enum.map(output, &Map.fetch!(sizes, &1)))}
    end

    def parse!(subscripts, _shapes),
      do: raise(ArgumentError, "einsum: subscripts must be a string such as \"ij,jk->ik\", got: #{inspect(subscripts)}")

    defp fail!(subscripts, why), do: raise(ArgumentError, "einsum: #{why} in #{inspect(subscripts)}")

    # The number of axes `...` stands for in one operand.
    defp ellipsis_rank!(subscripts, {shape, term}) do
      letters = term |> String.replace("...", "") |> String.length()

      cond do
        not String.contains?(term, "...") and letters != tuple_size(shape) ->
          fail!(
            subscripts,
            "operand subscripts #{inspect(term)} name #{letters} axes, but the operand has shape #{inspect(shape)}"
          )

        letters > tuple_size(shape) ->
          fail!(
            subscripts,
            "operand subscripts #{inspect(term)} name more axes than the operand of shape #{inspect(shape)} has"
          )

        String.contains?(term, "...") ->
          tuple_size(shape) - letters

        true ->
          0
      end
    end

    # `...` becomes {:ellipsis, i} labels, aligned on the right (axis i of
    # the broadcast axes, counted from the last).
    defp labels!(subscripts, term, shape) do
      case String.split(term, "...") do
        [letters] ->
          letters!(subscripts, letters)

        [before, later] ->
          n = tuple_size(shape) - String.length(before) - String.length(later)
          letters!(subscripts, before) ++ Enum.map((n - 1)..0//-1, &{:ellipsis, &1}) ++ letters!(subscripts, later)

        _ ->
          fail!(subscripts, "more than one \"...\" in #{inspect(term)}")
      end
    end

    defp letters!(subscripts, letters) do
      for <<c <- letters>> do
        if c in ?a..?z or c in ?A..?Z, do: c, else: fail!(subscripts, "#{inspect(<<c>>)} is not a subscript letter")
      end
    end

    # Every label's size: letters must agree exactly; broadcast axes may be 1.
    defp sizes!(subscripts, inputs, shapes) do
      inputs
      |> Enum.zip(shapes)
      |> Enum.with_index()
      |> Enum.reduce(%{}, fn {{labels, shape}, operand}, acc ->
        labels
        |> Enum.zip(Tuple.to_list(shape))
        |> Enum.reduce(acc, fn {label, size}, acc ->
          case {label, Map.fetch(acc, label)} do
            {_, :error} ->
              Map.put(acc, label, size)

            {_, {:ok, ^size}} ->
              acc

            {{:ellipsis, _}, {:ok, 1}} ->
              Map.put(acc, label, size)

            {{:ellipsis, _}, {:ok, _}} when size == 1 ->
              acc

            {_, {:ok, other}} ->
              fail!(subscripts, "#{show(label)} is #{other} long elsewhere but #{size} in operand #{operand}")
          end
        end)
      end)
    end

    defp show({:ellipsis, _}), do: "a \"...\" axis"
    defp show(c), do: "subscript #{inspect(<<c>>)}"

    # NumPy's rule without "->": the broadcast axes, then the letters used
    # once, in alphabetical order.
    defp implicit_output(inputs, ellipsis_rank) do
      counts = inputs |> List.flatten() |> Enum.reject(&is_tuple/1) |> Enum.frequencies()
      once = for {c, 1} <- counts, do: c
      Enum.map((ellipsis_rank - 1)..0//-1, &{:ellipsis, &1}) ++ Enum.sort(once)
    end

    defp output!(subscripts, rhs, ellipsis_rank, sizes) do
      labels =
        case String.split(rhs, "...") do
          [letters] ->
            letters!(subscripts, letters)

          [a, b] ->
            letters!(subscripts, a) ++ Enum.map((ellipsis_rank - 1)..0//-1, &{:ellipsis, &1}) ++ letters!(subscripts, b)

          _ ->
            fail!(subscripts, "more than one \"...\" in the output")
        end

      for label <- labels,
          not Map.has_key?(sizes, label),
          do: fail!(subscripts, "output #{show(label)} is not in any operand")

      if Enum.uniq(labels) != labels, do: fail!(subscripts, "a subscript appears twice in the output")
      labels
    end

    ## The plain-Nx formula

    @doc false
    def default(parsed, operands) do
      %{inputs: inputs, output: output, sizes: sizes} = parsed
      type = operands |> Enum.map(&Nx.type/1) |> Enum.reduce(&Nx.Type.merge/2)
      pieces = Enum.zip_with(operands, inputs, fn t, labels -> {Nx.as_type(t, type), labels} end)

      {acc, labels} =
        pieces
        |> Enum.with_index()
        |> Enum.map(fn {{t, labels}, i} ->
          others = pieces |> List.delete_at(i) |> Enum.flat_map(&elem(&1, 1))
          t |> diagonal(labels) |> expand(sizes) |> sum_unused(output ++ others)
        end)
        |> contract_all(output)

      {acc, labels} = sum_unused({acc, labels}, output)
      Nx.transpose(acc, axes: Enum.map(output, &index(labels, &1)))
    end

    # Takes the diagonal of every label repeated in one operand.
    defp diagonal(t, labels) do
      case labels -- Enum.uniq(labels) do
        [] ->
          {t, labels}

        [label | _] ->
          [a, b | _] = for {l, i} <- Enum.with_index(labels), l == label, do: i
          shape = Nx.shape(t)
          same = Nx.equal(Nx.iota(shape, axis: a), Nx.iota(shape, axis: b))
          t = Nx.select(same, t, Nx.tensor(0, type: Nx.type(t))) |> Nx.sum(axes: [b])
          diagonal(t, List.delete_at(labels, b))
      end
    end

    # Broadcast axes of size 1 grow to the label's size.
    defp expand({t, labels}, sizes) do
      shape = labels |> Enum.map(&Map.fetch!(sizes, &1)) |> List.to_tuple()
      if shape == Nx.shape(t), do: {t, labels}, else: {Nx.broadcast(t, shape), labels}
    end

    # Sums the axes whose labels nobody in `needed` uses.
    defp sum_unused({t, labels}, needed) do
      axes = for {l, i} <- Enum.with_index(labels), l not in needed, do: i
      if axes == [], do: {t, labels}, else: {Nx.sum(t, axes: axes), Enum.reject(labels, &(&1 not in needed))}
    end

    defp contract_all([first | rest], output) do
      Enum.reduce(Enum.with_index(rest), first, fn {{b, lb}, i}, {a, la} ->
        later = rest |> Enum.drop(i + 1) |> Enum.flat_map(&elem(&1, 1))
        needed = output ++ later
        common = Enum.filter(la, &(&1 in lb))
        {batch, contract} = Enum.split_with(common, &(&1 in needed))
        # Nx.dot wants the batch axes first, in the same order on both sides.
        {a, la} = batch_first(a, la, batch)
        {b, lb} = batch_first(b, lb, batch)
        batch_axes = Enum.to_list(0..(length(batch) - 1)//1)
        product = Nx.dot(a, idx(la, contract), batch_axes, b, idx(lb, contract), batch_axes)
        {product, batch ++ (la -- common) ++ (lb -- common)}
      end)
    end

    defp batch_first(t, labels, []), do: {t, labels}

    defp batch_first(t, labels, batch) do
      order = batch ++ (labels -- batch)
      {Nx.transpose(t, axes: idx(labels, order)), order}
    end

    defp idx(labels, wanted), do: Enum.map(wanted, &index(labels, &1))
    defp index(labels, label), do: Enum.find_index(labels, &(&1 == label))
  end
end
