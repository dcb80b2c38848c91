if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Defn.TripCount do
    @moduledoc false
    # How many times a `while` runs, when the expression says so without
    # running it: a counted loop. Then the program runs its body that many
    # times without evaluating the condition (no evaluation per iteration,
    # see program.cc), which is most of a small loop's cost.
    #
    # A loop is counted when its condition compares one state parameter, the
    # counter, with a bound: `counter < bound`, `counter <= bound` (or
    # `bound > counter`, `bound >= counter`), where
    #
    #   * the counter's initial value is a known integer and the body gives
    #     `counter + step` (either order) for a known positive integer step;
    #   * the bound is a known integer, or a parameter the body passes on
    #     unchanged whose initial value is a known integer;
    #   * every value the counter takes, the last included, is one its type
    #     holds (no wrap-around), and all of them are below 2^31 in
    #     magnitude.
    #
    # Known integers are integer `constant` nodes and one-element integer
    # `tensor` nodes of Nx.BinaryBackend. This is the shape of Nx's own
    # `while acc, i <- first..last//step` and of `while {i = 0, ...}, i < n`.
    # Anything else is `nil` (the program then evaluates the condition each
    # iteration).

    alias Nx.Defn.{Composite, Expr}
    alias Nx.Tensor, as: T

    @limit 2 ** 31

    @doc false
    # The number of iterations, or nil. `initial` and `body` are the while
    # node's containers, `arg` its parameters, `condition` its predicate.
    @spec count(term(), term(), T.t(), term()) :: non_neg_integer() | nil
    def count(initial, arg, condition, body) do
      initial = Composite.flatten_list([initial])
      params = Composite.flatten_list([arg])
      body = Composite.flatten_list([body])

      with true <- length(initial) == length(params) and length(params) == length(body),
           {cmp, counter, bound} <- comparison(condition, params),
           %T{type: {kind, _} = type} when kind in [:s, :u] <- Enum.at(params, counter),
           first when is_integer(first) <- known(Enum.at(initial, counter)),
           step when is_integer(step) and step > 0 <- step(Enum.at(body, counter), Enum.at(params, counter)),
           last when is_integer(last) <- bound_value(bound, params, initial, body) do
        iterations(cmp, first, step, last, type)
      else
        _ -> nil
      end
    end

    # {:lt | :le, counter position, bound expr}
    defp comparison(condition, params) do
      case strip(condition) do
        %T{data: %Expr{op: op, args: [a, b]}} when op in [:less, :less_equal, :greater, :greater_equal] ->
          {cmp, counter, bound} =
            case op do
              :less -> {:lt, a, b}
              :less_equal -> {:le, a, b}
              :greater -> {:lt, b, a}
              :greater_equal -> {:le, b, a}
            end

          case position(counter, params) do
            nil -> nil
            i -> {cmp, i, bound}
          end

        _ ->
          nil
      end
    end

    # The body's value for the counter: counter + step.
    defp step(next, param) do
      case strip(next) do
        %T{data: %Expr{op: :add, args: [a, b]}} ->
          cond do
            same?(a, param) -> known(b)
            same?(b, param) -> known(a)
            true -> nil
          end

        _ ->
          nil
      end
    end

    defp bound_value(bound, params, initial, body) do
      case known(bound) do
        value when is_integer(value) ->
          value

        nil ->
          # (known/1 takes integer types only, and a parameter has its
          # initial value's type.)
          with i when is_integer(i) <- position(bound, params),
               true <- same?(Enum.at(body, i), Enum.at(params, i)) do
            known(Enum.at(initial, i))
          else
            _ -> nil
          end
      end
    end

    # The iterations of `counter OP last`, counting from `first` by `step`,
    # when no value leaves the counter's type (nor 2^31 in magnitude).
    defp iterations(cmp, first, step, last, type) do
      {min, max} = range(type)
      last = if cmp == :le, do: last + 1, else: last
      n = if first < last, do: div(last - first + step - 1, step), else: 0
      final = first + n * step

      if Enum.all?([first, last, step, final], &(abs(&1) < @limit)) and first >= min and final <= max,
        do: n,
        else: nil
    end

    defp range({:u, bits}), do: {0, 2 ** bits - 1}
    defp range({:s, bits}), do: {-(2 ** (bits - 1)), 2 ** (bits - 1) - 1}

    # A known integer: an integer constant, or a one-element integer tensor
    # of Nx.BinaryBackend captured by the expression.
    defp known(expr) do
      case strip(expr) do
        %T{type: {kind, _}, data: %Expr{op: :constant, args: [n]}} when kind in [:s, :u] and is_integer(n) ->
          n

        %T{type: {kind, _}, data: %Expr{op: :tensor, args: [%T{data: %Nx.BinaryBackend{}} = t]}}
        when kind in [:s, :u] ->
          if Nx.size(t) == 1, do: t |> Nx.reshape({}) |> Nx.to_number()

        _ ->
          nil
      end
    end

    defp position(expr, params) do
      expr = strip(expr)
      Enum.find_index(params, &same?(&1, expr))
    end

    defp same?(a, b) do
      case {strip(a), strip(b)} do
        {%T{data: %Expr{id: id}}, %T{data: %Expr{id: id}}} -> true
        _ -> false
      end
    end

    defp strip(%T{data: %Expr{op: :metadata, args: [expr, _]}}), do: strip(expr)
    defp strip(expr), do: expr
  end
end
