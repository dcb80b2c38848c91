if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Defn.Reduce do
    @moduledoc false
    # `Nx.reduce/4` and `Nx.window_reduce/5` with a reducer function, compiled.
    # MLX has no reduction over an arbitrary function, and eager EMLX.Backend
    # runs these through Nx.BinaryBackend, which a compiled program cannot
    # (it reads values). Here the reducer's expression — a function of two
    # scalars — is applied element-wise to whole tensors, with the backend's
    # element-wise callbacks:
    #
    #   * reduce: Nx's left fold, `f(x_n, ... f(x_1, f(x_0, acc)))` over the
    #     reduced elements in row-major order — unrolled for short axes, a
    #     program loop otherwise. Where the result cannot depend on the order
    #     (the reducer is one exactly associative, commutative op of its two
    #     arguments: max, min, logical and bitwise ops, or integer + and *),
    #     the elements are folded pairwise instead: log2(n) element-wise steps.
    #   * window_reduce: padded with the accumulator (as Nx.BinaryBackend
    #     does), then each window position's strided slice is folded in,
    #     in row-major order, starting from the accumulator.

    alias Nx.Defn.Expr
    alias Nx.Tensor, as: T

    # Window positions folded one slice each; more than this would make a
    # program too large to be worth it.
    @max_window 4096

    @doc false
    def reduce(%T{type: type} = out, %T{shape: shape} = tensor, acc, opts, fun, state) do
      rank = tuple_size(shape)
      axes = opts[:axes] || Enum.to_list(0..(rank - 1)//1)
      kept = Enum.to_list(0..(rank - 1)//1) -- axes
      n = Enum.reduce(axes, 1, &(elem(shape, &1) * &2))
      kept_shape = Enum.map(kept, &elem(shape, &1))
      acc = Nx.as_type(acc, type)

      if n == 0 do
        Nx.broadcast(acc, out.shape)
      else
        x =
          tensor
          |> Nx.as_type(type)
          |> Nx.transpose(axes: kept ++ axes)
          |> Nx.reshape(List.to_tuple(kept_shape ++ [n]))

        if order_free?(fun, type) do
          folded = pairwise(x, fun, state)
          fun |> apply_fun([folded, Nx.broadcast(acc, folded.shape)], state) |> Nx.reshape(out.shape)
        else
          x |> left_fold(Nx.broadcast(acc, List.to_tuple(kept_shape)), fun, state) |> Nx.reshape(out.shape)
        end
      end
    end

    # Short axes are unrolled; longer ones folded by a program loop.
    @unroll 32

    defp left_fold(%T{shape: shape} = x, acc, fun, state) do
      last = tuple_size(shape) - 1
      n = elem(shape, last)
      element = fn i -> x |> Nx.slice_along_axis(i, 1, axis: last) |> Nx.squeeze(axes: [last]) end

      if n <= @unroll do
        Enum.reduce(0..(n - 1)//1, acc, &apply_fun(fun, [element.(&1), &2], state))
      else
        zero = EMLX.Backend.constant(Nx.template({}, {:s, 64}), 0, device: state.device)

        {[_i, result], _, _} =
          EMLX.Defn.Lower.loop(
            [zero, acc],
            state.device,
            fn [i, _acc] -> {Nx.less(i, n), nil} end,
            fn [i, acc], nil -> {[Nx.add(i, 1), apply_fun(fun, [element.(i), acc], state)], nil} end
          )

        result
      end
    end

    @order_free_any [:max, :min, :logical_and, :logical_or, :logical_xor]
    @order_free_integer [:add, :multiply, :bitwise_and, :bitwise_or, :bitwise_xor]

    # Whether the reducer is one op of its two parameters whose result cannot
    # depend on the order of the elements (bit for bit).
    defp order_free?(%T{data: %Expr{op: :fun, args: [[p0, p1], expr, _]}}, {kind, _}) do
      case expr do
        %T{data: %Expr{op: op, args: [a, b]}} ->
          params? = Enum.sort([id(a), id(b)]) == Enum.sort([id(p0), id(p1)])
          params? and (op in @order_free_any or (kind in [:s, :u] and op in @order_free_integer))

        _ ->
          false
      end
    end

    defp id(%T{data: %Expr{id: id}}), do: id
    defp id(_), do: nil

    # Folds the last axis pairwise down to one element (kept as size 1).
    defp pairwise(%T{shape: shape} = x, fun, state) do
      last = tuple_size(shape) - 1

      case elem(shape, last) do
        1 ->
          x

        m ->
          half = div(m, 2)
          a = Nx.slice_along_axis(x, 0, half, axis: last)
          b = Nx.slice_along_axis(x, half, half, axis: last)
          combined = apply_fun(fun, [a, b], state)

          if rem(m, 2) == 1 do
            Nx.concatenate([combined, Nx.slice_along_axis(x, m - 1, 1, axis: last)], axis: last)
          else
            combined
          end
          |> pairwise(fun, state)
      end
    end

    @doc false
    def window_reduce(%T{type: type} = out, tensor, acc, window, opts, fun, state) do
      positions = window |> Tuple.to_list() |> Enum.reduce(1, &(&1 * &2))

      if positions > @max_window do
        raise ArgumentError,
              "compiler: EMLX compiles Nx.window_reduce/5 with a function by folding each of the " <>
                "window's positions; this window has #{positions} (more than #{@max_window}). " <>
                "Use Nx.window_sum/3, window_max/3, window_min/3 or window_product/3 where they fit"
      end

      strides = opts[:strides]
      dilations = opts[:window_dilations]
      acc = Nx.as_type(acc, type)

      padded =
        tensor
        |> Nx.as_type(type)
        |> Nx.pad(acc, Enum.map(opts[:padding], fn {lo, hi} -> {lo, hi, 0} end))

      lengths = Enum.zip_with(Tuple.to_list(out.shape), strides, fn o, s -> max((o - 1) * s + 1, 0) end)

      window
      |> Tuple.to_list()
      |> Enum.map(&Enum.to_list(0..(&1 - 1)//1))
      |> cartesian()
      |> Enum.reduce(Nx.broadcast(acc, out.shape), fn offsets, acc ->
        start = Enum.zip_with(offsets, dilations, &(&1 * &2))
        slice = Nx.slice(padded, start, lengths, strides: strides)
        apply_fun(fun, [slice, acc], state)
      end)
    end

    defp cartesian([]), do: [[]]
    defp cartesian([range | rest]), do: for(i <- range, tail <- cartesian(rest), do: [i | tail])

    ## The reducer, element-wise

    # Element-wise callbacks a reducer may use, with their arity in tensors.
    defp elementwise?(op) do
      op in EMLX.Backend.Elementwise.unary_ops() or op in EMLX.Backend.Elementwise.binary_ops() or
        op in [:select, :as_type, :clip, :bitcast]
    end

    # The reducer's expression (a `fun` node of two scalar parameters) on
    # tensors of equal shape: each node through its backend callback, with
    # its output shaped like its (broadcast) operands.
    defp apply_fun(%T{data: %Expr{op: :fun, args: [_params, expr, {m, f, a}]}}, args, state) do
      {result, _memo} = walk(expr, args, state, %{}, "#{inspect(m)}.#{f}/#{a}")
      result
    end

    defp nils(shape), do: List.duplicate(nil, tuple_size(shape))

    defp walk(%T{data: %Expr{id: id, op: op, args: args}} = ans, params, state, memo, name) do
      case memo do
        %{^id => value} ->
          {value, memo}

        %{} ->
          {value, memo} = walk_node(op, args, ans, params, state, memo, name)
          {value, Map.put(memo, id, value)}
      end
    end

    defp walk_node(:parameter, [i], _ans, params, _state, memo, _name), do: {Enum.fetch!(params, i), memo}

    defp walk_node(:constant, [number], ans, _params, state, memo, _name),
      do: {EMLX.Backend.constant(ans, number, device: state.device), memo}

    defp walk_node(:tensor, [t], _ans, _params, state, memo, _name),
      do: {EMLX.Defn.Lower.capture(t, state.device), memo}

    defp walk_node(:metadata, [expr, _], _ans, params, state, memo, name), do: walk(expr, params, state, memo, name)

    defp walk_node(op, args, ans, params, state, memo, name) do
      unless elementwise?(op) do
        raise ArgumentError,
              "compiler: EMLX applies the function given to Nx.reduce/4 or Nx.window_reduce/5 " <>
                "(#{name}) element-wise, and it uses Nx.#{op}, which is not element-wise; " <>
                "write the reducer with element-wise Nx functions"
      end

      {args, memo} =
        Enum.map_reduce(args, memo, fn
          %T{data: %Expr{}} = t, memo -> walk(t, params, state, memo, name)
          other, memo -> {other, memo}
        end)

      shape =
        args
        |> Enum.filter(&match?(%T{}, &1))
        |> Enum.map(& &1.shape)
        |> Enum.reduce({}, fn s, acc -> elem(Nx.Shape.binary_broadcast(acc, nils(acc), s, nils(s)), 0) end)

      out = %{ans | shape: shape, names: nils(shape)}
      {apply(EMLX.Backend, op, [out | args]), memo}
    end
  end
end
