if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Fast.Formulas do
    @moduledoc false
    # The plain-Nx formulas of EMLX.Fast's normalisations, rotary embeddings
    # and SwiGLU: each block's default implementation (run on any backend,
    # differentiated by Nx.Defn.grad). Attention: EMLX.Fast.Attention.

    alias EMLX.Fast.Block

    @doc false
    def rms_norm(%Block{attrs: attrs}, x, weight) do
      type = merged([x, weight])
      xf = Nx.as_type(x, compute_type(type))
      r = xf |> Nx.pow(2) |> Nx.mean(axes: [-1], keep_axes: true) |> Nx.add(attrs[:eps]) |> Nx.rsqrt()
      xf |> Nx.multiply(r) |> Nx.multiply(weight) |> Nx.as_type(type)
    end

    @doc false
    def layer_norm(%Block{attrs: attrs}, x, weight, bias) do
      type = merged(Enum.reject([x, weight, bias], &is_nil/1))
      xf = Nx.as_type(x, compute_type(type))
      centered = Nx.subtract(xf, Nx.mean(xf, axes: [-1], keep_axes: true))
      var = centered |> Nx.pow(2) |> Nx.mean(axes: [-1], keep_axes: true)
      normed = centered |> Nx.multiply(Nx.rsqrt(Nx.add(var, attrs[:eps]))) |> Nx.multiply(weight)
      normed = if bias, do: Nx.add(normed, bias), else: normed
      Nx.as_type(normed, type)
    end

    @doc false
    def rope(%Block{attrs: attrs}, a) do
      rank = Nx.rank(a)
      t = elem(Nx.shape(a), rank - 2)
      positions = Nx.iota({t}, type: :f32) |> Nx.add(attrs[:offset]) |> Nx.multiply(attrs[:scale])
      theta = Nx.outer(positions, inv_freqs(attrs[:dims], attrs[:base]))
      theta = Nx.reshape(theta, List.to_tuple(List.duplicate(1, rank - 2) ++ [t, div(attrs[:dims], 2)]))
      rotate(a, theta, attrs[:dims], attrs[:traditional])
    end

    @doc false
    def rope_positions(%Block{attrs: attrs}, a, ids) do
      theta = position_angles(a, ids, attrs[:scale], inv_freqs(attrs[:dims], attrs[:base]))
      rotate(a, theta, attrs[:dims], attrs[:traditional])
    end

    @doc false
    def rope_freqs(%Block{attrs: attrs}, a, ids, freqs) do
      inv = freqs |> Nx.as_type(:f32) |> then(&Nx.divide(1.0, &1))
      rotate(a, position_angles(a, ids, attrs[:scale], inv), attrs[:dims], attrs[:traditional])
    end

    # pair i's angle per token, shaped to broadcast against `a`'s first `dims` features.
    defp position_angles(a, ids, scale, inv) do
      {b, t} = {elem(Nx.shape(a), 0), elem(Nx.shape(a), 1)}
      half = Nx.size(inv)
      theta = ids |> Nx.as_type(:f32) |> Nx.multiply(scale) |> Nx.reshape({b, t, 1}) |> Nx.multiply(inv)
      if Nx.rank(a) == 4, do: Nx.reshape(theta, {b, t, 1, half}), else: theta
    end

    defp inv_freqs(dims, base) do
      half = div(dims, 2)
      Nx.iota({half}, type: :f32) |> Nx.multiply(-2.0 * :math.log(base) / dims) |> Nx.exp()
    end

    # Turns the first `dims` features of `a` by `theta` (broadcastable to
    # {..., dims / 2}); the rest pass through.
    defp rotate(a, theta, dims, traditional) do
      axis = Nx.rank(a) - 1
      d = elem(Nx.shape(a), axis)
      half = div(dims, 2)
      head = Nx.slice_along_axis(a, 0, dims, axis: axis)
      cos = Nx.cos(theta)
      sin = Nx.sin(theta)

      {x1, x2} =
        if traditional,
          do:
            {Nx.slice_along_axis(head, 0, dims, axis: axis, strides: 2),
             Nx.slice_along_axis(head, 1, dims - 1, axis: axis, strides: 2)},
          else: {Nx.slice_along_axis(head, 0, half, axis: axis), Nx.slice_along_axis(head, half, half, axis: axis)}

      o1 = Nx.subtract(Nx.multiply(x1, cos), Nx.multiply(x2, sin))
      o2 = Nx.add(Nx.multiply(x1, sin), Nx.multiply(x2, cos))

      turned =
        if traditional,
          do: Nx.stack([o1, o2], axis: axis + 1) |> Nx.reshape(Nx.shape(head)),
          else: Nx.concatenate([o1, o2], axis: axis)

      turned = Nx.as_type(turned, Nx.type(a))

      if dims == d,
        do: turned,
        else: Nx.concatenate([turned, Nx.slice_along_axis(a, dims, d - dims, axis: axis)], axis: axis)
    end

    @doc false
    def swiglu(_block, gate, up), do: gate |> Nx.multiply(Nx.sigmoid(gate)) |> Nx.multiply(up)

    @doc false
    # The shape gate and up broadcast to.
    def swiglu_shape(a, b) do
      {a, b} = {Tuple.to_list(a), Tuple.to_list(b)}
      n = max(length(a), length(b))
      pad = fn s -> List.duplicate(1, n - length(s)) ++ s end

      Enum.zip_with(pad.(a), pad.(b), fn
        x, x ->
          x

        1, y ->
          y

        x, 1 ->
          x

        x, y ->
          raise ArgumentError,
                "swiglu: shapes #{inspect(List.to_tuple(a))} and #{inspect(List.to_tuple(b))} do not broadcast (#{x} vs #{y})"
      end)
      |> List.to_tuple()
    end

    ## Types

    @doc false
    def merged(tensors), do: tensors |> Enum.map(&Nx.type/1) |> Enum.reduce(&Nx.Type.merge/2)

    @doc false
    # Formulas run in at least float32.
    def compute_type(type), do: Nx.Type.merge(type, {:f, 32})
  end
end
