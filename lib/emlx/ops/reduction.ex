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

    reductions ++ cumulative
  end
end
