if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.Linalg do
    @moduledoc false
    # dot, triangular_solve and the 1-d FFTs of EMLX.Backend.
    #
    # * dot: floating and complex types go to MLX's matmul (batch axes
    #   first, contracted axes together). MLX has no integer matmul, so
    #   integer dots multiply and sum in the integer type (wrapping exactly
    #   as Nx does), in chunks that bound the temporary's size.
    # * triangular_solve and the MLX linalg ops run on the CPU (MLX has them
    #   there only), in float64 for CPU tensors and float32 for GPU ones;
    #   invalid input (a zero on the diagonal, a non-finite entry) gives NaN
    #   (see native/bridge/ops/linalg.cc), decided without reading back.

    alias Nx.Tensor, as: T
    alias EMLX.Backend.Convert

    ## dot

    def dot(_out, %T{data: %EMLX.Backend{quantization_config: cfg}}, _c1, _b1, _right, _c2, _b2) when cfg != nil do
      raise ArgumentError,
            "Nx.dot: a quantized tensor can only be the right operand (the weight); " <>
              "dequantize the left one first (EMLX.Quantization.dequantize/1)"
    end

    def dot(out, left, c1, [], %T{data: %EMLX.Backend{quantization_config: cfg}} = right, c2, [])
        when cfg != nil and tuple_size(right.shape) == 2 and c2 in [[0], [1]] do
      quantized_dot(out, left, c1, right, c2, cfg)
    end

    def dot(%T{type: type} = out, left, c1, b1, right, c2, b2) do
      device = Convert.first_device([left, right])
      mlx = Convert.mlx_type(type)
      l = Convert.from_nx(left, device, mlx)
      r = Convert.from_nx(right, device, mlx)

      # left as {batch, m, k}, right as {batch, k, n}.
      {l3, _} = matrices(l, left.shape, b1, c1, :left)
      {r3, _} = matrices(r, right.shape, b2, c2, :right)

      product =
        case type do
          {kind, _} when kind in [:s, :u] -> int_matmul(l3, r3)
          _ -> EMLX.matmul(l3, r3)
        end

      product |> EMLX.reshape(out.shape) |> EMLX.Debug.check_finite!(:dot) |> Convert.to_nx(out)
    end

    # x · W for a quantized weight W (EMLX.Quantization, any mode): MLX
    # multiplies by the packed codes. A weight contracted on its last axis is {out, in} and
    # goes in transposed (unless its config says otherwise), one contracted
    # on its first axis is {in, out}.
    defp quantized_dot(out, left, [axis], right, [weight_axis], cfg) do
      rank = tuple_size(left.shape)
      x = Convert.from_nx(left)
      x = if axis == rank - 1, do: x, else: EMLX.transpose(x, List.delete(Nx.axes(left.shape), axis) ++ [axis])
      transpose = if is_nil(cfg.transpose), do: weight_axis == 1, else: cfg.transpose
      %EMLX.Backend{ref: w} = right.data

      x
      |> EMLX.quantized_matmul(
        w,
        Convert.from_nx(cfg.scales),
        cfg.biases && Convert.from_nx(cfg.biases),
        transpose,
        cfg.group_size,
        cfg.bits,
        cfg.mode
      )
      |> EMLX.reshape(out.shape)
      |> EMLX.Debug.check_finite!(:dot)
      |> Convert.to_nx(out)
    end

    # Transposes x to batch ++ free ++ contract (left) or batch ++ contract
    # ++ free (right) and merges them into a rank-3 array.
    defp matrices(x, shape, batch, contract, side) do
      axes = Nx.axes(shape)
      free = axes -- (batch ++ contract)
      size = fn list -> Enum.reduce(list, 1, &(elem(shape, &1) * &2)) end

      {perm, dims} =
        case side do
          :left -> {batch ++ free ++ contract, {size.(batch), size.(free), size.(contract)}}
          :right -> {batch ++ contract ++ free, {size.(batch), size.(contract), size.(free)}}
        end

      x = if perm == axes, do: x, else: EMLX.transpose(x, perm)
      {EMLX.reshape(x, dims), dims}
    end

    # Elements of the {batch, rows, k, n} product held at once.
    @int_chunk 4_194_304

    defp int_matmul(l3, r3) do
      {b, m, k} = EMLX.shape(l3)
      {_, _, n} = EMLX.shape(r3)
      rows = max(div(@int_chunk, max(b * k * n, 1)), 1)
      r4 = EMLX.reshape(r3, {b, 1, k, n})

      chunks =
        for start <- 0..(m - 1)//rows do
          stop = min(start + rows, m)
          part = EMLX.slice(l3, [0, start, 0], [b, stop, k], [1, 1, 1])

          part
          |> EMLX.reshape({b, stop - start, k, 1})
          |> EMLX.multiply(r4)
          |> EMLX.sum([2], false)
        end

      case chunks do
        [] -> EMLX.full(0, {b, m, n}, EMLX.scalar_type(l3), elem(l3, 0))
        [one] -> one
        many -> EMLX.concatenate(many, 1)
      end
    end

    ## triangular_solve

    # Complex systems run in Nx.BinaryBackend (MLX's solver is real-only).
    def triangular_solve(out, %T{type: {:c, _}} = a, b, opts), do: triangular_solve_binary(out, a, b, opts)
    def triangular_solve(out, a, %T{type: {:c, _}} = b, opts), do: triangular_solve_binary(out, a, b, opts)

    def triangular_solve(%T{type: type} = out, %T{shape: a_shape} = a, %T{shape: b_shape} = b, opts) do
      device = Convert.first_device([a, b])
      # MLX solves triangular systems by inverting the matrix and multiplying,
      # which loses a few bits; on the CPU that runs in float64, so float32
      # (and narrower) results come out correctly rounded.
      compute = if device == :cpu, do: :float64, else: linalg_type(type, device)
      a = a |> Convert.from_nx(device) |> EMLX.astype(compute)
      b = b |> Convert.from_nx(device) |> EMLX.astype(compute)

      # op(A): A or its transpose; `lower` says which triangle op(A) uses.
      {a, lower} =
        case opts[:transform_a] do
          :transpose -> {transpose_matrix(a), not opts[:lower]}
          _ -> {a, opts[:lower]}
        end

      # b as matrices {..., m, k}; a vector (one per batch) is one column.
      vector? = tuple_size(b_shape) == 1 or Tuple.delete_at(b_shape, tuple_size(b_shape) - 1) == batch(a_shape)
      b = if vector?, do: EMLX.reshape(b, Tuple.insert_at(b_shape, tuple_size(b_shape), 1)), else: b

      x =
        cond do
          opts[:left_side] ->
            EMLX.linalg_solve_triangular(a, b, not lower)

          vector? ->
            # x op(A) = b for a row vector x: op(A)^T x = b.
            EMLX.linalg_solve_triangular(transpose_matrix(a), b, lower)

          true ->
            # X op(A) = B  <=>  op(A)^T X^T = B^T
            transpose_matrix(EMLX.linalg_solve_triangular(transpose_matrix(a), transpose_matrix(b), lower))
        end

      x |> EMLX.reshape(out.shape) |> Convert.to_nx(out)
    end

    defp batch(shape), do: shape |> Tuple.delete_at(tuple_size(shape) - 1) |> Tuple.delete_at(tuple_size(shape) - 2)

    defp triangular_solve_binary(out, a, b, opts) do
      EMLX.Backend.Reduction.on_binary_backend(out, [a, b], fn [a, b], binary_out ->
        Nx.BinaryBackend.triangular_solve(binary_out, a, b, opts)
      end)
    end

    @doc false
    # The type MLX's linalg (float32 or float64 only) computes `type` in:
    # float64 for CPU tensors (MLX's linalg runs on the CPU, which has it;
    # float32 results then come out correctly rounded, and tiny singular
    # values and pivots of float32 input are resolved), float32 for GPU
    # tensors (the GPU has no float64 to convert in).
    def linalg_type({:f, 64}, _device), do: :float64
    def linalg_type(_type, :cpu), do: :float64
    def linalg_type(_type, _device), do: :float32

    @doc false
    # Swaps the last two axes (a vector stays as it is).
    def transpose_matrix(x) do
      rank = tuple_size(EMLX.shape(x))

      if rank < 2 do
        x
      else
        axes = Enum.to_list(0..(rank - 3)//1) ++ [rank - 1, rank - 2]
        EMLX.transpose(x, axes)
      end
    end

    ## FFT

    def fft(out, tensor, opts), do: fft_1d(:fft, out, tensor, opts)
    def ifft(out, tensor, opts), do: fft_1d(:ifft, out, tensor, opts)

    defp fft_1d(op, %T{type: type} = out, tensor, opts) do
      x =
        tensor |> Convert.from_nx(Convert.first_device([tensor]), type) |> fit_length(opts[:axis], opts[:length])

      apply(EMLX, op, [x, opts[:length], opts[:axis]])
      |> zero_below(opts[:eps])
      |> Convert.to_nx(out)
    end

    @doc false
    # x padded with zeros or cut to n elements along axis. (The FFT ops could
    # do it, but MLX pads on the calling thread's default stream, which the
    # command queue cannot evaluate.)
    def fit_length({device, _} = x, axis, n) do
      shape = EMLX.shape(x)
      size = elem(shape, axis)
      rank = tuple_size(shape)

      cond do
        size == n ->
          x

        size < n ->
          zero = EMLX.scalar_tensor(0, EMLX.scalar_type(x), device)
          EMLX.pad(x, [axis], [0], [n - size], zero)

        true ->
          stops = shape |> put_elem(axis, n) |> Tuple.to_list()
          EMLX.slice(x, List.duplicate(0, rank), stops, List.duplicate(1, rank))
      end
    end

    @doc false
    # Real and imaginary parts with magnitude at most eps become 0 (as
    # Nx.BinaryBackend does for its FFTs).
    def zero_below(z, nil), do: z

    def zero_below({device, _} = z, eps) do
      real_type = z |> EMLX.real() |> EMLX.scalar_type()
      eps = EMLX.scalar_tensor(eps, real_type, device)
      zero = EMLX.scalar_tensor(0, real_type, device)
      clean = fn part -> EMLX.where(EMLX.less_equal(EMLX.abs(part), eps), zero, part) end
      re = z |> EMLX.real() |> then(clean)
      im = z |> EMLX.imag() |> then(clean)
      i = EMLX.scalar_tensor(Complex.new(0.0, 1.0), :complex64, device)
      EMLX.add(EMLX.astype(re, :complex64), EMLX.multiply(EMLX.astype(im, :complex64), i))
    end
  end
end
