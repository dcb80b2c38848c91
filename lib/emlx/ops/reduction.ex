defmodule EMLX.Ops.Reduction do
  @moduledoc false
  # Reductions and cumulative ops.
  # Entries: see EMLX.Ops. Native twin: native/bridge/ops/reduction.cc.

  @reductions [
    sum: "Sums",
    product: "Multiplies",
    max: "Takes the maximum of",
    min: "Takes the minimum of",
    all: "Tests whether all are truthy, over",
    any: "Tests whether any is truthy, over"
  ]

  @cumulative [
    cumulative_sum: "sum",
    cumulative_product: "product",
    cumulative_max: "maximum",
    cumulative_min: "minimum"
  ]

  def table do
    reductions =
      for {name, what} <- @reductions do
        {name, [tensor: :tensor, axes: :axes, keep_axes: :bool],
         "#{what} the elements over `axes` (a list); size-1 axes stay when `keep_axes` is true.", []}
      end

    cumulative =
      for {name, what} <- @cumulative do
        {name, [tensor: :tensor, axis: :int, reverse: :bool, inclusive: :bool],
         "Cumulative #{what} along `axis`, from the end when `reverse`; `inclusive` counts each element itself.", []}
      end

    reductions ++ cumulative ++ arg_reductions() ++ sorting()
  end

  defp arg_reductions do
    for {name, what} <- [argmax: "maximum", argmin: "minimum"] do
      [
        {name, [tensor: :tensor, keep_axes: :bool],
         """
         The index (`:uint32`) of the first #{what} of all elements, counted in
         row-major order; a 0-d tensor, or one of size-1 axes when `keep_axes`.
         An empty tensor raises.

             iex> t = EMLX.from_blob(<<3::32-native, 9::32-native, 1::32-native, 9::32-native>>, {2, 2}, :int32, :cpu)
             iex> EMLX.#{name}(t, false) |> EMLX.item()
             #{if name == :argmax, do: 1, else: 2}
         """, []},
        {name, [tensor: :tensor, axis: :axis, keep_axes: :bool],
         """
         The index (`:uint32`) of the first #{what} along `axis` (an integer,
         negative counts from the end); the axis stays with size 1 when
         `keep_axes`.

             iex> t = EMLX.from_blob(<<3::32-native, 9::32-native, 1::32-native, 9::32-native>>, {2, 2}, :int32, :cpu)
             iex> EMLX.#{name}(t, 0, false) |> EMLX.to_blob()
             #{if name == :argmax, do: "<<0::32-native, 0::32-native>>", else: "<<1::32-native, 0::32-native>>"}
         """, []}
      ]
    end
    |> List.flatten()
  end

  defp sorting do
    [
      {:sort, [tensor: :tensor, axis: :axis],
       """
       The elements sorted ascending along `axis` (stable; NaNs last).

           iex> t = EMLX.from_blob(<<3::32-native, 1::32-native, 2::32-native>>, {3}, :int32, :cpu)
           iex> EMLX.sort(t, 0) |> EMLX.to_blob()
           <<1::32-native, 2::32-native, 3::32-native>>
       """, []},
      {:argsort, [tensor: :tensor, axis: :axis],
       """
       The indices (`:uint32`) that sort `tensor` ascending along `axis`
       (stable: equal elements keep their order; NaNs last).

           iex> t = EMLX.from_blob(<<3::32-native, 1::32-native, 2::32-native>>, {3}, :int32, :cpu)
           iex> EMLX.argsort(t, 0) |> EMLX.to_blob()
           <<1::32-native, 2::32-native, 0::32-native>>
       """, []}
    ]
  end
end
