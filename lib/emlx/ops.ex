defmodule EMLX.Ops do
  @moduledoc false
  # The Elixir op table: every lazy op of the EMLX module, declared once.
  # It is split by family (lib/emlx/ops/*.ex), each the twin of a C++ table in
  # native/bridge/ops/ (same names, same argument order);
  # `EMLX` generates a function, its @doc and its doctest from each entry.
  #
  # Entry: {name, [param: kind, ...], doc, opts}
  # Kinds and what the wrapper does with them:
  #   :tensor, :tensors   passed as is; the first one picks the command queue
  #   :device             not passed; picks the command queue (creation ops)
  #   :type               MLX dtype atom or Nx type tuple -> MLX dtype atom
  #   :scalar             number, :nan/:infinity/:neg_infinity, or Complex
  #   :shape, :axes, :ints, :axis, :int, :float, :bool, :string  passed as is
  # Opts: out: :tensor (default) | :tuple | :list (a list even for one output)
  #             | {:tuple, n} (an n-tuple, nil for the outputs an op does not give)
  #       defaults: [param: value, ...] for trailing parameters that may be left out
  # A name may have several entries of different arities (argmax/2 and /3):
  # its one native entry tells them apart by the number of arguments.

  @families [
    EMLX.Ops.Creation,
    EMLX.Ops.Shape,
    EMLX.Ops.Elementwise,
    EMLX.Ops.Reduction,
    EMLX.Ops.Indexing,
    EMLX.Ops.Linalg,
    EMLX.Ops.Conv,
    EMLX.Ops.Spectral,
    EMLX.Ops.Fast,
    EMLX.Ops.Quant,
    EMLX.Ops.Backend
  ]

  @doc false
  def families, do: @families

  @doc false
  def table, do: Enum.flat_map(@families, & &1.table())
end
