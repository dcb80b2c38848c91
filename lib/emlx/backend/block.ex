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

    ## Element-wise and scans

    defp native(%Nx.Block.LogicalNot{}, out, [t]) do
      t |> Convert.from_nx() |> EMLX.logical_not() |> Convert.to_nx(out)
    end

    defp native(%Nx.Block.Phase{}, out, [%T{type: {:c, _}} = t]) do
      z = Convert.from_nx(t)
      EMLX.atan2(EMLX.imag(z), EMLX.real(z)) |> Convert.to_nx(out)
    end

    defp native(%mod{axis: axis, reverse: reverse}, %T{type: type} = out, [t]) when is_map_key(@cumulative, mod) do
      x = t |> Convert.from_nx() |> Convert.astype(Convert.mlx_type(type))
      apply(EMLX, Map.fetch!(@cumulative, mod), [x, axis, reverse, true]) |> Convert.to_nx(out)
    end

    ## Indexing

    defp native(%Nx.Block.Take{axis: axis}, out, [t, indices]) do
      device = Convert.first_device([t, indices])
      EMLX.take(Convert.from_nx(t, device), Convert.from_nx(indices, device), axis) |> Convert.to_nx_moved(out)
    end

    defp native(%Nx.Block.TakeAlongAxis{axis: axis}, out, [t, indices]) do
      device = Convert.first_device([t, indices])

      EMLX.take_along_axis(Convert.from_nx(t, device), Convert.from_nx(indices, device), axis)
      |> Convert.to_nx_moved(out)
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
      |> EMLX.rfft(s.length, s.axis)
      |> Linalg.zero_below(s.eps)
      |> Convert.to_nx(out)
    end

    defp native(%Nx.Block.IRFFT{} = s, %T{type: type} = out, [%T{type: {:c, 64}} = t]) when type != {:f, 64} do
      z = t |> Convert.from_nx() |> EMLX.irfft(s.length, s.axis)
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
        compute = Linalg.linalg_type(out.type)
        x = a |> Convert.from_nx(device) |> EMLX.astype(compute)
        y = b |> Convert.from_nx(device) |> EMLX.astype(compute)
        EMLX.linalg_solve(x, y) |> Convert.to_nx(out)
      end)
    end

    defp native(%Nx.Block.LinAlg.QR{mode: :reduced}, {q_out, r_out}, [%T{type: type} = t]) do
      with_real(type, fn ->
        {q, r} = t |> linalg_input() |> EMLX.linalg_qr()
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

        {Convert.to_nx(u, u_out), Convert.to_nx(s, s_out), Convert.to_nx(vt, vt_out)}
      end)
    end

    defp native(%Nx.Block.LinAlg.LU{}, {p_out, l_out, u_out}, [%T{type: type, shape: shape} = t]) do
      with_real(type, fn ->
        {device, _} = x = linalg_input(t)
        [perm, l, u] = EMLX.linalg_lu(x)
        # MLX gives A[perm] = L U; Nx wants P with A = P L U: P[j][i] = (j == perm[i]).
        rank = tuple_size(shape)
        n = elem(shape, rank - 1)
        rows = EMLX.arange(0, n, 1, true, device) |> EMLX.astype(:uint32) |> EMLX.reshape({n, 1})
        perm = EMLX.reshape(perm, shape |> Tuple.delete_at(rank - 1) |> Tuple.insert_at(rank - 2, 1))
        p = EMLX.equal(rows, perm)
        {Convert.to_nx(p, p_out), Convert.to_nx(l, l_out), Convert.to_nx(u, u_out)}
      end)
    end

    defp native(_struct, _out, _args), do: :default

    defp fft2(op, s, out, %T{type: type} = t) do
      if type in [{:f, 64}, {:c, 128}] do
        :default
      else
        t
        |> Convert.from_nx()
        |> EMLX.astype(:complex64)
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
      t |> Convert.from_nx() |> EMLX.astype(Linalg.linalg_type(Nx.Type.to_floating(type)))
    end

    # The leading part of x of `shape`.
    defp crop(x, shape) do
      rank = tuple_size(shape)
      EMLX.slice(x, List.duplicate(0, rank), Tuple.to_list(shape), List.duplicate(1, rank))
    end
  end
end
