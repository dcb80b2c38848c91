if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.Block do
    @moduledoc false
    # Nx.block/4 for EMLX.Backend: the blocks MLX computes natively, and the
    # block's own default implementation (Nx ops, which run on this backend)
    # for every other block and every case MLX cannot do (complex linalg,
    # QR's :complete mode, FFTs of more than float32 precision, ...).
    #
    # MLX's linalg runs on the CPU, in float32 or float64; results are
    # converted to the types Nx asks for.

    alias Nx.Tensor, as: T
    alias EMLX.Backend.{Convert, Linalg}

    @cumulative %{
      Nx.Block.CumulativeSum => :cumulative_sum,
      Nx.Block.CumulativeProduct => :cumulative_product,
      Nx.Block.CumulativeMin => :cumulative_min,
      Nx.Block.CumulativeMax => :cumulative_max
    }

    def block(struct, output, args, fun) do
      case native(struct, output, args) do
        :default -> apply(fun, [struct | args])
        result -> result
      end
    end

    @doc false
    # The native implementation of a block, or :default where there is none
    # (the defn compiler then lowers the block's default expression).
    def native_block(struct, output, args), do: native(struct, output, args)

    ## Element-wise and scans

    defp native(%Nx.Block.LogicalNot{}, out, [t]) do
      t |> Convert.from_nx() |> EMLX.logical_not() |> Convert.to_nx(out)
    end

    defp native(%Nx.Block.Phase{}, out, [%T{type: {:c, _}} = t]) do
      z = Convert.from_nx(t)
      EMLX.atan2(EMLX.imag(z), EMLX.real(z)) |> Convert.to_nx(out)
    end

    defp native(%mod{axis: axis, reverse: reverse}, %T{type: type} = out, [t]) when is_map_key(@cumulative, mod) do
      x = Convert.from_nx(t, Convert.first_device([t]), type)
      apply(EMLX, Map.fetch!(@cumulative, mod), [x, axis, reverse, true]) |> Convert.to_nx(out)
    end

    ## Indexing

    defp native(%Nx.Block.Take{axis: axis}, out, [t, indices]) do
      device = Convert.first_device([t, indices])
      idx = indices |> Convert.from_nx(device) |> EMLX.Debug.check_indices!(:take, elem(t.shape, axis))
      EMLX.take(Convert.from_nx(t, device), idx, axis) |> Convert.to_nx_moved(out)
    end

    defp native(%Nx.Block.TakeAlongAxis{axis: axis}, out, [t, indices]) do
      device = Convert.first_device([t, indices])
      idx = indices |> Convert.from_nx(device) |> EMLX.Debug.check_indices!(:take_along_axis, elem(t.shape, axis))
      EMLX.take_along_axis(Convert.from_nx(t, device), idx, axis) |> Convert.to_nx_moved(out)
    end

    defp native(%Nx.Block.TopK{k: k}, {out_values, out_indices}, [%T{shape: shape} = t]) do
      # A stable descending argsort (NaNs first, as Nx orders them), cut at k.
      axis = tuple_size(shape) - 1
      x = Convert.from_nx(t)
      sorted = EMLX.Backend.Reduction.argsort(%{out_indices | shape: shape}, t, axis: axis, direction: :desc)
      idx = Convert.from_nx(sorted)
      rank = tuple_size(shape)
      stops = shape |> put_elem(axis, k) |> Tuple.to_list()
      top = EMLX.slice(idx, List.duplicate(0, rank), stops, List.duplicate(1, rank))
      values = EMLX.take_along_axis(x, top, axis)
      {Convert.to_nx_moved(values, out_values), Convert.to_nx(top, out_indices)}
    end

    defp native(%Nx.Block.AllClose{} = s, out, [a, b]) do
      device = Convert.first_device([a, b])

      case {a.type, b.type} do
        {{:c, _}, _} ->
          :default

        {_, {:c, _}} ->
          :default

        _ ->
          type = Nx.Type.merge(Nx.Type.to_floating(a.type), Nx.Type.to_floating(b.type))
          mlx = Convert.mlx_type(type)
          x = a |> Convert.from_nx(device) |> EMLX.astype(mlx)
          y = b |> Convert.from_nx(device) |> EMLX.astype(mlx)
          EMLX.allclose(x, y, s.rtol, s.atol, s.equal_nan) |> Convert.to_nx(out)
      end
    end

    ## FFTs

    defp native(%Nx.Block.FFT2{} = s, %T{type: {:c, 64}} = out, [t]), do: fft2(:fft2, s, out, t)
    defp native(%Nx.Block.IFFT2{} = s, %T{type: {:c, 64}} = out, [t]), do: fft2(:ifft2, s, out, t)

    defp native(%Nx.Block.RFFT{} = s, %T{type: {:c, 64}} = out, [%T{type: type} = t]) when type != {:f, 64} do
      t
      |> Convert.from_nx()
      |> EMLX.astype(:float32)
      |> Linalg.fit_length(s.axis, s.length)
      |> EMLX.rfft(s.length, s.axis)
      |> Linalg.zero_below(s.eps)
      |> Convert.to_nx(out)
    end

    defp native(%Nx.Block.IRFFT{} = s, %T{type: type} = out, [%T{type: {:c, 64}} = t]) when type != {:f, 64} do
      z = t |> Convert.from_nx() |> Linalg.fit_length(s.axis, div(s.length, 2) + 1) |> EMLX.irfft(s.length, s.axis)
      # As the default implementation: ifft (with its eps) of the Hermitian extension, real part.
      z |> EMLX.astype(:complex64) |> Linalg.zero_below(s.eps) |> EMLX.real() |> Convert.to_nx(out)
    end

    ## Linear algebra (real inputs)

    defp native(%Nx.Block.LinAlg.Cholesky{}, out, [%T{type: type} = t]) when not is_tuple(out) do
      with_real(type, fn -> t |> linalg_input() |> EMLX.linalg_cholesky(false) |> Convert.to_nx(out) end)
    end

    defp native(%Nx.Block.LinAlg.Solve{}, out, [a, b]) do
      with_real(a.type, b.type, fn ->
        device = Convert.first_device([a, b])
        compute = Linalg.linalg_type(out.type, device)
        x = a |> Convert.from_nx(device) |> EMLX.astype(compute)
        y = b |> Convert.from_nx(device) |> EMLX.astype(compute)
        # A batch of vectors (one per matrix) goes in as one-column matrices.
        {a_rank, b_rank} = {tuple_size(a.shape), tuple_size(b.shape)}
        y = if b_rank == a_rank - 1, do: EMLX.reshape(y, Tuple.insert_at(b.shape, b_rank, 1)), else: y
        y |> then(&EMLX.linalg_solve(x, &1)) |> EMLX.reshape(out.shape) |> Convert.to_nx(out)
      end)
    end

    defp native(%Nx.Block.LinAlg.QR{mode: :reduced}, {q_out, r_out}, [%T{type: type} = t]) do
      with_real(type, fn ->
        {q, r} = t |> linalg_input() |> EMLX.linalg_qr()
        # x + 0.0 turns LAPACK's -0.0 entries into 0.0.
        {q, r} = {EMLX.add(q, zero_like(q)), EMLX.add(r, zero_like(r))}
        {Convert.to_nx(q, q_out), Convert.to_nx(r, r_out)}
      end)
    end

    defp native(%Nx.Block.LinAlg.Eigh{}, {values_out, vectors_out}, [%T{type: type, shape: shape} = t]) do
      with_real(type, fn ->
        {values, vectors} = t |> linalg_input() |> EMLX.linalg_eigh("L")
        # MLX orders eigenvalues ascending, Nx descending.
        rank = tuple_size(shape)
        values = EMLX.Backend.Shape.reverse_ref(values, [rank - 2])
        vectors = EMLX.Backend.Shape.reverse_ref(vectors, [rank - 1])
        # Each eigenvector's sign is free: make its largest component positive.
        at = vectors |> EMLX.abs() |> EMLX.argmax(rank - 2, true)
        signs = vectors |> EMLX.take_along_axis(at, rank - 2) |> signs_of()
        vectors = EMLX.multiply(vectors, signs)
        {Convert.to_nx(values, values_out), Convert.to_nx(vectors, vectors_out)}
      end)
    end

    defp native(%Nx.Block.LinAlg.SVD{full_matrices?: full}, {u_out, s_out, vt_out}, [%T{type: type} = t]) do
      with_real(type, fn ->
        [u, s, vt] = t |> linalg_input() |> EMLX.linalg_svd(true)

        {u, vt} =
          if full,
            do: {u, vt},
            else: {crop(u, u_out.shape), crop(vt, vt_out.shape)}

        # x + 0.0 turns LAPACK's -0.0 entries into 0.0.
        [u, s, vt] = Enum.map([u, s, vt], &EMLX.add(&1, zero_like(&1)))
        {Convert.to_nx(u, u_out), Convert.to_nx(s, s_out), Convert.to_nx(vt, vt_out)}
      end)
    end

    defp native(%Nx.Block.LinAlg.Determinant{}, out, [%T{type: type, shape: shape} = t]) do
      # MLX's determinant of an empty matrix is undefined: Nx's is 1.
      if elem(shape, tuple_size(shape) - 1) == 0 do
        :default
      else
        with_real(type, fn -> t |> linalg_input() |> EMLX.linalg_det() |> Convert.to_nx(out) end)
      end
    end

    defp native(%Nx.Block.LinAlg.LU{}, {p_out, l_out, u_out}, [%T{type: type, shape: shape} = t]) do
      with_real(type, fn ->
        {device, _} = x = linalg_input(t)
        [perm, l, u] = EMLX.linalg_lu(x)
        # MLX gives A[perm] = L U; Nx wants P with A = P L U, so P[j][i] = (i == perm[j]).
        rank = tuple_size(shape)
        n = elem(shape, rank - 1)
        cols = EMLX.arange(0, n, 1, true, device) |> EMLX.astype(:uint32) |> EMLX.reshape({1, n})
        perm = EMLX.reshape(perm, Tuple.insert_at(Tuple.delete_at(shape, rank - 1), rank - 1, 1))
        p = EMLX.equal(perm, cols)
        {Convert.to_nx(p, p_out), Convert.to_nx(l, l_out), Convert.to_nx(u, u_out)}
      end)
    end

    # EMLX.Fast's fused ops (when that module is part of the build).
    defp native(%{__struct__: EMLX.Fast.Block} = block, out, args) do
      apply(EMLX.Fast, :native_block, [block, out, args])
    end

    defp native(_struct, _out, _args), do: :default

    defp fft2(op, s, out, %T{type: type} = t) do
      if type in [{:f, 64}, {:c, 128}] do
        :default
      else
        t
        |> Convert.from_nx()
        |> EMLX.astype(:complex64)
        |> then(fn x -> Enum.zip_reduce(s.axes, s.lengths, x, &Linalg.fit_length(&3, &1, &2)) end)
        |> then(&apply(EMLX, op, [&1, s.lengths, s.axes]))
        |> Linalg.zero_below(s.eps)
        |> Convert.to_nx(out)
      end
    end

    defp with_real({:c, _}, _fun), do: :default
    defp with_real(_type, fun), do: fun.()
    defp with_real({:c, _}, _, _fun), do: :default
    defp with_real(_, {:c, _}, _fun), do: :default
    defp with_real(_, _, fun), do: fun.()

    defp linalg_input(%T{type: type} = t) do
      {device, _} = x = Convert.from_nx(t)
      EMLX.astype(x, Linalg.linalg_type(Nx.Type.to_floating(type), device))
    end

    # -1 where x < 0, else 1.
    defp signs_of({device, _} = x) do
      mlx = EMLX.scalar_type(x)
      EMLX.where(EMLX.less(x, zero_like(x)), EMLX.scalar_tensor(-1, mlx, device), EMLX.scalar_tensor(1, mlx, device))
    end

    defp zero_like({device, _} = x), do: EMLX.scalar_tensor(0, EMLX.scalar_type(x), device)

    # The leading part of x of `shape`.
    defp crop(x, shape) do
      rank = tuple_size(shape)
      EMLX.slice(x, List.duplicate(0, rank), Tuple.to_list(shape), List.duplicate(1, rank))
    end
  end
end
