if Code.ensure_loaded?(Nx) do
  defmodule EMLX.TolerantDoctest do
    @moduledoc false
    # Re-runs the `iex>` examples of a module's documentation, comparing
    # tensor results within a tolerance instead of by their printed digits.
    # For doctests excluded from `doctest` because a backend rounds
    # differently: every example still runs, and its expected tensor (parsed
    # back from the `#Nx.Tensor<...>` text) must agree within `atol`/`rtol`.

    import ExUnit.Assertions

    @doc """
    The examples of `module`'s function `name/arity`: a list of groups, each
    a list of `{code, expected}` steps sharing bindings (`expected` is nil for
    steps whose output is not shown).
    """
    def examples(module, name, arity) do
      {:docs_v1, _, _, _, _, _, docs} = Code.fetch_docs(module)

      text =
        Enum.find_value(docs, fn
          {{:function, ^name, ^arity}, _, _, %{"en" => text}, _} -> text
          _ -> nil
        end) || raise "no docs for #{inspect(module)}.#{name}/#{arity}"

      text
      |> String.split("\n")
      |> Enum.map(&String.trim/1)
      |> Enum.chunk_by(&(&1 == ""))
      |> Enum.reject(&(&1 == [""] or not Enum.any?(&1, fn line -> String.starts_with?(line, "iex>") end)))
      |> Enum.map(&steps/1)
    end

    defp steps(lines) do
      lines
      |> Enum.drop_while(&(not String.starts_with?(&1, "iex>")))
      |> Enum.chunk_while(
        nil,
        fn line, acc ->
          cond do
            String.starts_with?(line, "iex>") and acc != nil -> {:cont, acc, {[strip(line)], []}}
            String.starts_with?(line, "iex>") -> {:cont, {[strip(line)], []}}
            String.starts_with?(line, "...>") -> {:cont, append_code(acc, strip(line))}
            true -> {:cont, append_output(acc, line)}
          end
        end,
        fn acc -> {:cont, acc, nil} end
      )
      |> Enum.map(fn {code, output} ->
        expected = if output == [], do: nil, else: Enum.join(Enum.reverse(output), "\n")
        {Enum.join(Enum.reverse(code), "\n"), expected}
      end)
    end

    defp strip("iex>" <> rest), do: String.trim(rest)
    defp strip("...>" <> rest), do: String.trim(rest)
    defp append_code({code, out}, line), do: {[line | code], out}
    defp append_output({code, out}, line), do: {code, [line | out]}

    @doc """
    Runs every example group of `name/arity` in `module`. Options:
    `:atol`, `:rtol`; `:compare` (`:values` or `:magnitudes`, to compare
    absolute values where a sign is a free convention); `:skip`, a list of
    expected texts (substrings) whose steps are not compared; `:nan_for`, a
    list of expected exception texts whose steps must give all-NaN results
    instead.
    """
    def run(module, name, arity, opts \\ []) do
      groups = examples(module, name, arity)
      assert groups != [], "no examples for #{inspect(module)}.#{name}/#{arity}"

      for steps <- groups do
        Enum.reduce(steps, [], fn {code, expected}, binding ->
          run_step(code, expected, binding, opts)
        end)
      end

      length(groups)
    end

    defp run_step(code, "** (" <> _ = expected, binding, opts) do
      if Enum.any?(opts[:nan_for] || [], &String.contains?(expected, &1)) do
        # EMLX answers this invalid input with NaN (EMLX.Backend's docs).
        {value, binding} = Code.eval_string(code, binding)
        assert value |> Nx.is_nan() |> Nx.all() |> Nx.to_number() == 1, "#{code}: expected NaN, got #{inspect(value)}"
        binding
      else
        raise_step(code, expected, binding)
      end
    end

    defp run_step(code, expected, binding, opts), do: value_step(code, expected, binding, opts)

    defp raise_step(code, expected, binding) do
      [_, module, message] = Regex.run(~r/^\*\* \(([\w.]+)\) (.*)$/s, expected)
      exception = Module.concat([module])

      error =
        assert_raise exception, fn -> Code.eval_string(code, binding) end

      assert Exception.message(error) == message
      binding
    end

    defp value_step(code, expected, binding, opts) do
      {value, binding} = Code.eval_string(code, binding)

      cond do
        expected == nil -> :ok
        Enum.any?(opts[:skip] || [], &String.contains?(expected, &1)) -> :ok
        String.starts_with?(expected, "#Nx.Tensor<") -> compare(value, parse(expected), expected, opts)
        true -> assert value == elem(Code.eval_string(expected), 0)
      end

      binding
    end

    defp compare(%Nx.Tensor{} = actual, {type, shape, data}, text, opts) do
      actual = actual |> Nx.devectorize(keep_names: false) |> Nx.backend_copy(Nx.BinaryBackend)
      assert actual.type == type, "type #{inspect(actual.type)} instead of #{inspect(type)} for\n#{text}"
      assert actual.shape == shape, "shape #{inspect(actual.shape)} instead of #{inspect(shape)} for\n#{text}"
      expected = Nx.tensor(data, type: type, backend: Nx.BinaryBackend) |> Nx.reshape(shape)

      {actual, expected} =
        if opts[:compare] == :magnitudes, do: {Nx.abs(actual), Nx.abs(expected)}, else: {actual, expected}

      close = Nx.all_close(actual, expected, atol: opts[:atol] || 1.0e-5, rtol: opts[:rtol] || 1.0e-5, equal_nan: true)
      assert Nx.to_number(close) == 1, "#{inspect(actual)}\nis not within tolerance of\n#{text}"
    end

    # {type, shape (vectorized axes first), nested data} of an inspected tensor.
    defp parse(text) do
      [_open | lines] = String.split(text, "\n")
      {vectorized, [header | body]} = Enum.split_while(lines, &String.starts_with?(&1, "vectorized"))

      [type_text | _] = String.split(header, "[")
      dims = fn line -> Regex.scan(~r/\[(?:\w+: )?(\d+)\]/, line) |> Enum.map(fn [_, d] -> String.to_integer(d) end) end
      shape = List.to_tuple(Enum.flat_map(vectorized, dims) ++ dims.(header))
      type = Nx.Type.normalize!(String.to_atom(type_text))

      data =
        body
        |> Enum.reject(&(&1 == ">"))
        |> Enum.join(" ")
        |> String.replace(~r/(-?(?:\d+\.\d+(?:e[+-]?\d+)?|NaN|Inf))([+-])(\d+\.\d+(?:e[+-]?\d+)?|NaN|Inf)i/, fn match ->
          [_, re, sign, im] = Regex.run(~r/^(-?(?:\d+\.\d+(?:e[+-]?\d+)?|NaN|Inf))([+-])(.*)i$/, match)

          "Complex.new(#{number(re)}, #{sign}#{number(im)})"
          |> String.replace("+:", ":")
          |> String.replace("-:infinity", ":neg_infinity")
        end)
        |> String.replace(~r/(?<![\w.])-Inf\b/, ":neg_infinity")
        |> String.replace(~r/(?<![\w.:])Inf\b/, ":infinity")
        |> String.replace(~r/\bNaN\b/, ":nan")

      {data, _} = Code.eval_string(data)
      {type, shape, data}
    end

    defp number("NaN"), do: ":nan"
    defp number("Inf"), do: ":infinity"
    defp number("-Inf"), do: ":neg_infinity"
    defp number(n), do: n
  end
end
