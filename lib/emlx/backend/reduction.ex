if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.Reduction do
    @moduledoc false
    # Reduction callbacks of EMLX.Backend: all/any/sum/product/max/min over
    # axes, argmax/argmin, reduce with an Elixir function, sort and argsort.
    #
    # Nx decides the result type (sum of u8 is u32, of s8 s32, …); the
    # operand is converted to it first so that MLX accumulates in it.

    alias Nx.Tensor, as: T
    alias EMLX.Backend.Convert

    @reductions [all: :all, any: :any, sum: :sum, product: :product, reduce_max: :max, reduce_min: :min]

    for {name, fun} <- @reductions do
      def unquote(name)(%T{type: type} = out, %T{shape: shape} = tensor, opts) do
        axes = opts[:axes] || Nx.axes(shape)

        x =
          if unquote(name in [:all, :any]),
            do: Convert.from_nx(tensor),
            else: Convert.from_nx(tensor, Convert.first_device([tensor]), type)

        x
        |> EMLX.unquote(fun)(axes, opts[:keep_axes] || false)
        |> EMLX.reshape(out.shape)
        |> Convert.to_nx(out)
      end
    end

    ## argmax / argmin

    def argmax(out, tensor, opts), do: arg_reduce(:argmax, out, tensor, opts)
    def argmin(out, tensor, opts), do: arg_reduce(:argmin, out, tensor, opts)

    # Ties go to the first index (MLX's choice) or, for tie_break: :high, to
    # the last (through a reversed axis). A NaN wins over every number (Nx
    # returns the index of a NaN when there is one): the first NaN's index.
    defp arg_reduce(op, %T{shape: out_shape} = out, %T{shape: shape, type: type} = tensor, opts) do
      x = Convert.from_nx(tensor)

      {x, axis, n} =
        case opts[:axis] do
          nil -> {EMLX.reshape(x, {Nx.size(shape)}), 0, Nx.size(shape)}
          axis -> {x, axis, elem(shape, axis)}
        end

      index =
        if opts[:tie_break] == :high do
          reversed = EMLX.Backend.Shape.reverse_ref(x, [axis])
          last = scalar_like(n - 1, :uint32, x)
          EMLX.subtract(last, apply(EMLX, op, [reversed, axis, false]))
        else
          apply(EMLX, op, [x, axis, false])
        end

      index =
        if Nx.Type.float?(type) do
          nan = EMLX.is_nan(x)
          first_nan = EMLX.argmax(EMLX.astype(nan, :uint8), axis, false)
          EMLX.where(EMLX.any(nan, [axis], false), first_nan, index)
        else
          index
        end

      index |> EMLX.reshape(out_shape) |> Convert.to_nx(out)
    end

    defp scalar_like(number, mlx, {device, _}), do: EMLX.scalar_tensor(number, mlx, device)

    ## reduce with an Elixir function

    # MLX cannot run an arbitrary Elixir function, so the reduction runs in
    # Nx.BinaryBackend (with it as the default backend for tensors the
    # function creates) and the result comes back to the tensor's device.
    def reduce(out, tensor, acc, opts, fun) do
      on_binary_backend(out, [tensor, acc], fn [t, a], binary_out ->
        Nx.BinaryBackend.reduce(binary_out, t, a, opts, binary_fun(fun))
      end)
    end

    @doc false
    # Runs `fun` on copies of `tensors` in Nx.BinaryBackend and copies the
    # result back to the device of the first EMLX tensor.
    # In a function being compiled (compiler: EMLX) this becomes a callback
    # step: the program asks the caller to run it when it gets there.
    def on_binary_backend(%T{} = out, tensors, fun) do
      device = Convert.first_device(tensors)

      run = fn tensors ->
        copies = Enum.map(tensors, &Nx.backend_copy(&1, Nx.BinaryBackend))
        binary_out = %{out | data: nil}
        result = Nx.with_default_backend(Nx.BinaryBackend, fn -> fun.(copies, binary_out) end)
        EMLX.Backend.Creation.from_binary(out, Nx.to_binary(result), device: device)
      end

      if EMLX.Defn.Trace.active?() do
        [result] = EMLX.Defn.Lower.host(tensors, [out], device, &[run.(&1)])
        result
      else
        run.(tensors)
      end
    end

    @doc false
    # The user's function, its result moved to Nx.BinaryBackend.
    def binary_fun(fun) do
      fn a, b ->
        case fun.(a, b) do
          %T{data: %Nx.BinaryBackend{}} = t -> t
          %T{} = t -> Nx.backend_transfer(t, Nx.BinaryBackend)
          other -> other
        end
      end
    end

    ## sort / argsort

    # MLX sorts ascending, stably, with NaNs last: exactly Nx's ascending
    # order. Descending order reverses the axis, sorts, and reverses back,
    # which keeps equal elements in their original order and puts NaNs
    # first, as Nx does.
    def sort(%T{} = out, tensor, opts) do
      axis = opts[:axis]
      x = Convert.from_nx(tensor)

      sorted =
        case opts[:direction] do
          :desc -> x |> reverse(axis) |> EMLX.sort(axis) |> reverse(axis)
          _ -> EMLX.sort(x, axis)
        end

      Convert.to_nx_moved(sorted, out)
    end

    def argsort(%T{} = out, %T{shape: shape} = tensor, opts) do
      axis = opts[:axis]
      x = Convert.from_nx(tensor)

      indices =
        case opts[:direction] do
          :desc ->
            positions = x |> reverse(axis) |> EMLX.argsort(axis) |> reverse(axis)
            EMLX.subtract(scalar_like(elem(shape, axis) - 1, :uint32, x), positions)

          _ ->
            EMLX.argsort(x, axis)
        end

      Convert.to_nx(indices, out)
    end

    defp reverse(x, axis), do: EMLX.Backend.Shape.reverse_ref(x, [axis])
  end
end
