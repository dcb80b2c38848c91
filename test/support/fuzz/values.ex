if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Fuzz.Values do
    @moduledoc false
    # Random input tensors for the differential fuzzer: every Nx type the
    # fuzzer covers, shapes from 0-d to rank 4 (size-0 included), values mixed
    # from small integers, uniform reals and edge values (NaN, ±Inf, -0.0,
    # the type's extremes). Randomness comes from the process's :rand state,
    # seeded per program (EMLX.Fuzz.Gen).

    @float_types [{:f, 32}, {:f, 16}, {:bf, 16}, {:f, 64}]
    @int_types [{:s, 8}, {:s, 16}, {:s, 32}, {:s, 64}, {:u, 8}, {:u, 16}, {:u, 32}, {:u, 64}]

    # MLX has no float64 on the GPU: there the fuzzer leaves it out.
    def float_types, do: if(EMLX.TestDevice.gpu?(), do: @float_types -- [{:f, 64}], else: @float_types)
    def int_types, do: @int_types
    def all_types, do: float_types() ++ @int_types ++ [{:u, 8, :pred}]

    # Picks a type; {:u, 8, :pred} stands for a boolean (0/1) u8 tensor.
    def type do
      case :rand.uniform(10) do
        n when n <= 5 -> pick(float_types() ++ [{:f, 32}, {:f, 32}])
        n when n <= 9 -> pick(@int_types ++ [{:s, 32}, {:s, 64}])
        _ -> {:u, 8, :pred}
      end
    end

    def float_type, do: pick(float_types() ++ [{:f, 32}, {:f, 32}])
    def int_type, do: pick(@int_types ++ [{:s, 32}, {:s, 64}])

    def pick(list), do: Enum.at(list, :rand.uniform(length(list)) - 1)
    def chance(p), do: :rand.uniform() < p
    def int_in(lo, hi), do: lo + :rand.uniform(hi - lo + 1) - 1

    # A shape: mostly small, sometimes 0-d. (Nx 0.13 has no size-0 tensors:
    # every dimension must be positive.)
    def shape(max_rank \\ 4) do
      rank = pick(Enum.to_list(0..max_rank) ++ [1, 2, 2, 3])
      rank = min(rank, max_rank)
      List.to_tuple(for _ <- 1..rank//1, do: pick([1, 2, 2, 3, 3, 4, 5, 7]))
    end

    # A tensor of `type` and `shape` on Nx.BinaryBackend.
    def tensor({:u, 8, :pred}, shape) do
      values = for _ <- 1..size(shape)//1, do: :rand.uniform(2) - 1
      build(values, {:u, 8}, shape)
    end

    def tensor(type, shape) do
      values = for _ <- 1..size(shape)//1, do: value(type)
      build(values, type, shape)
    end

    # Indices in [lo, hi] (mostly in range; out of range only when asked).
    def indices(type, shape, lo, hi) do
      values = for _ <- 1..size(shape)//1, do: int_in(lo, hi)
      build(values, type, shape)
    end

    def build(values, type, shape),
      do: values |> Nx.tensor(type: type, backend: Nx.BinaryBackend) |> Nx.reshape(shape)

    def size(shape), do: shape |> Tuple.to_list() |> Enum.product()

    defp value({kind, _} = type) when kind in [:f, :bf] do
      case :rand.uniform(20) do
        1 -> pick([:nan, :infinity, :neg_infinity])
        2 -> pick([negative_zero(), 0.0, max_finite(type), -max_finite(type), min_normal(type)])
        3 -> pick([0.5, -0.5, 1.0, -1.0, 2.0, 1.0e-3, 0.999, -0.999])
        n when n <= 10 -> int_in(-4, 4) * 1.0
        _ -> Float.round(:rand.uniform() * 20 - 10, 3)
      end
    end

    defp value({kind, bits}) when kind in [:s, :u] do
      {lo, hi} = range(kind, bits)

      case :rand.uniform(10) do
        1 -> pick([lo, hi, 0, max(lo, -1), div(hi, 2) + 1])
        2 -> int_in(lo, hi)
        _ -> int_in(max(lo, -5), min(hi, 7))
      end
    end

    def range(:s, bits), do: {-Bitwise.bsl(1, bits - 1), Bitwise.bsl(1, bits - 1) - 1}
    def range(:u, bits), do: {0, Bitwise.bsl(1, bits) - 1}

    defp negative_zero do
      <<x::float-64>> = <<0x80, 0, 0, 0, 0, 0, 0, 0>>
      x
    end

    defp max_finite({:f, 16}), do: 65504.0
    defp max_finite({:bf, 16}), do: 3.3895313892515355e38
    defp max_finite({:f, 32}), do: 3.4028234663852886e38
    defp max_finite({:f, 64}), do: 1.7976931348623157e308

    defp min_normal({:f, 16}), do: 6.103515625e-5
    defp min_normal({:bf, 16}), do: 1.1754943508222875e-38
    defp min_normal({:f, 32}), do: 1.1754943508222875e-38
    defp min_normal({:f, 64}), do: 2.2250738585072014e-308
  end
end
