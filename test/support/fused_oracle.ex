defmodule EMLX.FusedOracle do
  @moduledoc false
  # Plain-Elixir arithmetic on nested lists: the independent oracle for the
  # fused-op and quantization tests (no MLX, no Nx), plus the conversions
  # between nested lists and EMLX tensors.

  import ExUnit.Assertions

  ## Lists <-> tensors

  @doc "An EMLX tensor on the suite's device holding the nested list `data`."
  def tensor(data, type \\ :float32) do
    shape = shape_of(data)
    flat = List.flatten([data])
    EMLX.from_blob(encode(flat, type), shape, type, EMLX.TestDevice.device_for(type))
  end

  @doc "The tensor's values as a nested list (floats as floats)."
  def to_list({_, _} = t) do
    type = EMLX.scalar_type(t)
    values = decode(EMLX.to_blob(t), type)
    nest(values, Tuple.to_list(EMLX.shape(t)))
  end

  def shape_of(list) when is_list(list), do: List.to_tuple(dims(list))
  def shape_of(_scalar), do: {}

  defp dims([first | _] = list), do: [length(list) | dims(first)]
  defp dims([]), do: [0]
  defp dims(_), do: []

  defp nest(values, []), do: hd(values)
  defp nest(values, [_n]), do: values

  defp nest(values, [_n | rest]) do
    size = Enum.product(rest)
    if size == 0, do: [], else: values |> Enum.chunk_every(size) |> Enum.map(&nest(&1, rest))
  end

  defp encode(values, type) do
    for v <- values, into: <<>> do
      case type do
        :float32 -> <<v * 1.0::float-32-native>>
        :float16 -> <<v * 1.0::float-16-native>>
        :bfloat16 -> bf16(v)
        :int32 -> <<v::signed-32-native>>
        :int64 -> <<v::signed-64-native>>
        :uint32 -> <<v::unsigned-32-native>>
        :int8 -> <<v::signed-8>>
        :uint8 -> <<v::unsigned-8>>
        :bool -> <<if(v in [true, 1], do: 1, else: 0)::8>>
      end
    end
  end

  # Round to nearest even on the 16 dropped bits.
  defp bf16(v) do
    <<bits::32>> = <<v * 1.0::float-32>>
    rounded = bits + 0x7FFF + Bitwise.band(Bitwise.bsr(bits, 16), 1)
    <<Bitwise.bsr(rounded, 16)::unsigned-16-native>>
  end

  defp decode(bin, type) do
    case type do
      :float32 -> for <<v::float-32-native <- bin>>, do: v
      :float16 -> for <<v::float-16-native <- bin>>, do: v
      :bfloat16 -> for <<u::unsigned-16-native <- bin>>, do: from_bf16(u)
      :int32 -> for <<v::signed-32-native <- bin>>, do: v
      :int64 -> for <<v::signed-64-native <- bin>>, do: v
      :uint32 -> for <<v::unsigned-32-native <- bin>>, do: v
      :uint8 -> for <<v::unsigned-8 <- bin>>, do: v
      :bool -> for <<v::8 <- bin>>, do: v != 0
    end
  end

  defp from_bf16(u) do
    <<f::float-32>> = <<u::16, 0::16>>
    f
  end

  ## Data

  @doc """
  Deterministic pseudo-random floats in [-1, 1) of `shape` (a tuple), each
  exactly representable as a float32 (so a :float32 tensor holds them as is).
  """
  def rand(shape, seed) do
    :rand.seed(:exsss, {seed, seed * 7 + 1, seed * 13 + 2})
    fill(Tuple.to_list(shape), fn -> f32(:rand.uniform() * 2 - 1) end)
  end

  defp f32(x) do
    <<y::float-32>> = <<x::float-32>>
    y
  end

  defp fill([], gen), do: gen.()
  defp fill([n | rest], gen), do: for(_ <- 1..n//1, do: fill(rest, gen))

  ## Nested-list math

  @doc "Applies `fun` to every leaf of the nested lists (zipped)."
  def map_leaves(a, fun) when is_list(a), do: Enum.map(a, &map_leaves(&1, fun))
  def map_leaves(a, fun), do: fun.(a)

  def zip_leaves(a, b, fun) when is_list(a), do: Enum.zip_with(a, b, &zip_leaves(&1, &2, fun))
  def zip_leaves(a, b, fun), do: fun.(a, b)

  @doc "Applies `fun` to every innermost row (a flat list)."
  def map_rows([x | _] = rows, fun) when is_list(x), do: Enum.map(rows, &map_rows(&1, fun))
  def map_rows(row, fun), do: fun.(row)

  def transpose(rows), do: rows |> Enum.zip() |> Enum.map(&Tuple.to_list/1)

  def dot(a, b), do: a |> Enum.zip_with(b, &(&1 * &2)) |> Enum.sum()

  def matmul(a, b) do
    bt = transpose(b)
    for row <- a, do: for(col <- bt, do: dot(row, col))
  end

  def mean(row), do: Enum.sum(row) / length(row)

  def softmax(row) do
    finite = Enum.reject(row, &(&1 == :neg_infinity))

    if finite == [] do
      Enum.map(row, fn _ -> 0.0 end)
    else
      m = Enum.max(finite)
      exps = Enum.map(row, fn x -> if x == :neg_infinity, do: 0.0, else: :math.exp(x - m) end)
      total = Enum.sum(exps)
      Enum.map(exps, &(&1 / total))
    end
  end

  @doc """
  Attention for one batch row and one head: `q` is `[T_q][D]`, `k`, `v`
  `[T_kv][D]`, `visible.(i, j)` says whether query i sees key j. A query
  that sees nothing gets zeros. `sink` (a logit, or nil) joins every
  softmax as an extra key whose value is zero.
  """
  def attention(q, k, v, scale, visible \\ fn _, _ -> true end, sink \\ nil) do
    for {qi, i} <- Enum.with_index(q) do
      scores =
        for {kj, j} <- Enum.with_index(k) do
          if visible.(i, j), do: dot(qi, kj) * scale, else: :neg_infinity
        end

      p =
        cond do
          sink == nil -> softmax(scores)
          Enum.all?(scores, &(&1 == :neg_infinity)) -> Enum.map(scores, fn _ -> 0.0 end)
          true -> scores |> Kernel.++([sink]) |> softmax() |> Enum.drop(-1)
        end

      v |> transpose() |> Enum.map(&dot(p, &1))
    end
  end

  @doc """
  Attention over `{B, N, T, D}` nested lists with grouped heads;
  `visible.(b, i, j)` masks; `sinks` (one logit per query head) as in
  `attention/6`.
  """
  def attention_bntd(q, k, v, scale, visible \\ fn _, _, _ -> true end, sinks \\ nil) do
    group = div(length(hd(q)), length(hd(k)))

    for {{qb, kb, vb}, b} <- Enum.with_index(Enum.zip([q, k, v])) do
      for {qh, h} <- Enum.with_index(qb) do
        kh = Enum.at(kb, div(h, group))
        vh = Enum.at(vb, div(h, group))
        attention(qh, kh, vh, scale, &visible.(b, &1, &2), sinks && Enum.at(sinks, h))
      end
    end
  end

  @doc "Swaps axes 1 and 2 of a rank-4 nested list."
  def swap12(x), do: Enum.map(x, &transpose/1)

  ## Assertions

  @doc "Every leaf of `actual` is within `tol` (absolute + relative) of `expected`."
  def assert_close(actual, expected, tol \\ 1.0e-5) do
    assert shape_of(actual) == shape_of(expected),
           "shape #{inspect(shape_of(actual))} != expected #{inspect(shape_of(expected))}"

    worst =
      [actual, expected]
      |> Enum.map(&List.flatten([&1]))
      |> Enum.zip()
      |> Enum.map(fn {a, e} -> {abs(a - e) - tol * (1 + abs(e)), a, e} end)
      |> Enum.max_by(&elem(&1, 0), fn -> {-1, nil, nil} end)

    {excess, a, e} = worst
    assert excess <= 0, "got #{inspect(a)} where #{inspect(e)} was expected (tolerance #{tol})"
  end
end
