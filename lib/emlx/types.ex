defmodule EMLX.Types do
  @moduledoc """
  The one mapping between MLX dtypes and Nx types.

  `EMLX` functions take MLX's dtype atoms and, as a convenience, Nx type
  tuples. Every type MLX can hold maps to itself; nothing is narrowed:

  | MLX          | Nx          |
  | ------------ | ----------- |
  | `:bool`      | `{:u, 8}` (Nx has no boolean; MLX → Nx only) |
  | `:uint8` … `:uint64` | `{:u, 8}` … `{:u, 64}` |
  | `:int8` … `:int64`   | `{:s, 8}` … `{:s, 64}` |
  | `:float16`   | `{:f, 16}`  |
  | `:bfloat16`  | `{:bf, 16}` |
  | `:float32`   | `{:f, 32}`  |
  | `:float64`   | `{:f, 64}` (MLX runs it on the CPU only) |
  | `:complex64` | `{:c, 64}`  |

  Types MLX has no storage for (`{:c, 128}`, the 8-bit floats, the 2- and
  4-bit integers) raise `ArgumentError`.

      iex> EMLX.Types.mlx_type({:bf, 16})
      :bfloat16
      iex> EMLX.Types.nx_type(:int64)
      {:s, 64}
  """

  @pairs [
    uint8: {:u, 8},
    uint16: {:u, 16},
    uint32: {:u, 32},
    uint64: {:u, 64},
    int8: {:s, 8},
    int16: {:s, 16},
    int32: {:s, 32},
    int64: {:s, 64},
    float16: {:f, 16},
    bfloat16: {:bf, 16},
    float32: {:f, 32},
    float64: {:f, 64},
    complex64: {:c, 64}
  ]

  @mlx_types [:bool | Keyword.keys(@pairs)]

  @doc "Every MLX dtype atom."
  def mlx_types, do: @mlx_types

  @doc """
  The MLX dtype for an MLX atom or an Nx type tuple; raises `ArgumentError`
  for anything MLX cannot hold.
  """
  def mlx_type(type)

  for {mlx, nx} <- @pairs do
    def mlx_type(unquote(mlx)), do: unquote(mlx)
    def mlx_type(unquote(nx)), do: unquote(mlx)
  end

  def mlx_type(:bool), do: :bool

  def mlx_type({:c, 128}),
    do: raise(ArgumentError, "MLX has no complex128 (Nx {:c, 128}); use {:c, 64} / :complex64")

  def mlx_type({:f, 8}),
    do: raise(ArgumentError, "MLX has no 8-bit float storage; use {:f, 16} or {:bf, 16}")

  def mlx_type({kind, bits} = type) when kind in [:s, :u] and bits in [2, 4],
    do:
      raise(
        ArgumentError,
        "MLX has no #{bits}-bit integer storage (Nx #{inspect(type)}); " <>
          "use a #{if kind == :s, do: ":int8", else: ":uint8"} tensor or EMLX.quantize/3"
      )

  def mlx_type(other),
    do:
      raise(
        ArgumentError,
        "unknown type #{inspect(other)}: expected one of #{inspect(@mlx_types)} or an Nx type such as {:f, 32}"
      )

  @doc "The Nx type for an MLX dtype atom (`:bool` becomes `{:u, 8}`)."
  def nx_type(mlx)

  for {mlx, nx} <- @pairs do
    def nx_type(unquote(mlx)), do: unquote(nx)
  end

  def nx_type(:bool), do: {:u, 8}

  def nx_type(other),
    do: raise(ArgumentError, "unknown MLX dtype #{inspect(other)}, expected one of #{inspect(@mlx_types)}")
end
