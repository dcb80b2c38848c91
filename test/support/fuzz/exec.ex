if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Fuzz.Exec do
    @moduledoc false
    # Runs one fuzzer step on a backend. A step is
    #   %{op: atom, args: [arg], opts: keyword}
    # and an argument is {:v, i} (value i of the program), {:view, arg,
    # [transform]} (a transpose / strided slice / reverse / broadcast applied
    # on the backend first, so the op sees a non-contiguous input), {:list,
    # [arg]} (for concatenate and stack) or {:num, number}.

    # Every element-wise op of the one declaration (EMLX.Ops.Elementwise)
    # but the complex-only ones.
    import EMLX.Ops.Elementwise, only: [nx_names: 2]
    @unary nx_names(1, fn _, class, _ -> class != :none end)
    @binary nx_names(2, fn _, class, _ -> class != :none end)

    @with_opts [:sum, :product, :reduce_max, :reduce_min, :all, :any, :argmax, :argmin] ++
                 [:cumulative_sum, :cumulative_product, :cumulative_max, :cumulative_min] ++
                 [:transpose, :squeeze, :reverse, :sort, :argsort, :top_k, :take, :take_along_axis] ++
                 [:gather]

    def unary, do: @unary
    def binary, do: @binary

    # Materialises `args` from `values` (tensors on any backend), moved to
    # `backend` first; then applies the op.
    def run(%{op: op, args: args, opts: opts}, values, backend) do
      apply_op(op, Enum.map(args, &arg(&1, values, backend)), opts, backend)
    end

    # Inside a compiled function (backend nil) the values are expressions already.
    def arg({:v, i}, values, nil), do: elem(values, i)
    def arg({:v, i}, values, backend), do: values |> elem(i) |> Nx.backend_copy(backend)
    def arg({:num, n}, _values, _backend), do: n
    def arg({:list, args}, values, backend), do: Enum.map(args, &arg(&1, values, backend))

    def arg({:view, inner, transforms}, values, backend),
      do: Enum.reduce(transforms, arg(inner, values, backend), &transform/2)

    @doc false
    # The tensors among materialised `args` (lists of tensors included) as
    # a tuple of compiled-function parameters, and how to put them back.
    def params(args) do
      tensors =
        Enum.flat_map(args, fn
          %Nx.Tensor{} = t -> [t]
          [%Nx.Tensor{} | _] = list -> list
          _ -> []
        end)

      rebuild = fn params ->
        {args, []} =
          Enum.map_reduce(args, Tuple.to_list(params), fn
            %Nx.Tensor{}, [p | rest] -> {p, rest}
            [%Nx.Tensor{} | _] = list, rest -> Enum.split(rest, length(list))
            other, rest -> {other, rest}
          end)

        args
      end

      {List.to_tuple(tensors), rebuild}
    end

    def transform({:transpose, perm}, t), do: Nx.transpose(t, axes: perm)
    def transform({:slice, starts, lengths, strides}, t), do: Nx.slice(t, starts, lengths, strides: strides)
    def transform({:reverse, axes}, t), do: Nx.reverse(t, axes: axes)
    def transform({:broadcast, shape}, t), do: Nx.broadcast(t, shape)

    def apply_op(op, [t], _opts, _b) when op in @unary, do: apply(Nx, op, [t])
    def apply_op(op, [a, b], _opts, _b) when op in @binary, do: apply(Nx, op, [a, b])
    def apply_op(op, [t], opts, _b) when op in @with_opts, do: apply(Nx, op, [t, opts])
    def apply_op(op, [t, i], opts, _b) when op in @with_opts, do: apply(Nx, op, [t, i, opts])
    def apply_op(:reshape, [t], opts, _b), do: Nx.reshape(t, opts[:shape])
    def apply_op(:new_axis, [t], opts, _b), do: Nx.new_axis(t, opts[:axis])
    def apply_op(:broadcast, [t], opts, _b), do: Nx.broadcast(t, opts[:shape], Keyword.take(opts, [:axes]))
    def apply_op(:slice, [t], opts, _b), do: Nx.slice(t, opts[:starts], opts[:lengths], strides: opts[:strides])
    def apply_op(:dynamic_slice, [t | starts], opts, _b), do: Nx.slice(t, starts, opts[:lengths])
    def apply_op(:put_slice, [t, s], opts, _b), do: Nx.put_slice(t, opts[:starts], s)
    def apply_op(:concatenate, [ts], opts, _b), do: Nx.concatenate(ts, axis: opts[:axis])
    def apply_op(:stack, [ts], opts, _b), do: Nx.stack(ts, axis: opts[:axis])
    def apply_op(:pad, [t, v], opts, _b), do: Nx.pad(t, v, opts[:config])
    def apply_op(:tile, [t], opts, _b), do: Nx.tile(t, opts[:reps])
    def apply_op(:as_type, [t], opts, _b), do: Nx.as_type(t, opts[:type])
    def apply_op(:bitcast, [t], opts, _b), do: Nx.bitcast(t, opts[:type])
    def apply_op(:select, [p, a, b], _opts, _b), do: Nx.select(p, a, b)
    def apply_op(:clip, [t, lo, hi], _opts, _b), do: Nx.clip(t, lo, hi)
    def apply_op(:indexed_add, [t, i, u], opts, _b), do: Nx.indexed_add(t, i, u, opts)
    def apply_op(:indexed_put, [t, i, u], opts, _b), do: Nx.indexed_put(t, i, u, opts)

    def apply_op(:dot, [a, b], opts, _b),
      do: Nx.dot(a, opts[:contract_a], opts[:batch_a], b, opts[:contract_b], opts[:batch_b])

    def apply_op(:outer, [a, b], _opts, _b), do: Nx.outer(a, b)

    def apply_op(op, [t], opts, _b) when op in [:window_sum, :window_max, :window_min, :window_product],
      do: apply(Nx, op, [t, opts[:window], Keyword.take(opts, [:strides, :padding])])

    def apply_op(:conv, [t, k], opts, _b), do: Nx.conv(t, k, opts)

    # Compiled (backend nil), creation ops take the compiler's backend.
    def apply_op(:iota, [], opts, nil), do: Nx.iota(opts[:shape], [type: opts[:type]] ++ Keyword.take(opts, [:axis]))

    def apply_op(:iota, [], opts, b),
      do: Nx.iota(opts[:shape], [type: opts[:type], backend: b] ++ Keyword.take(opts, [:axis]))

    def apply_op(:eye, [], opts, nil), do: Nx.eye(opts[:shape], type: opts[:type])
    def apply_op(:eye, [], opts, b), do: Nx.eye(opts[:shape], type: opts[:type], backend: b)
  end
end
