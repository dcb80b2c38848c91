if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend do
    @moduledoc """
    The `Nx.Backend` over MLX.

        Nx.default_backend(EMLX.Backend)                 # EMLX.default_device/0
        Nx.default_backend({EMLX.Backend, device: :cpu})
        Nx.tensor([1, 2, 3], backend: {EMLX.Backend, device: :gpu})

    Every callback of `Nx.Backend` is implemented. Most run as MLX ops; the
    table in this module says which section implements each one:

      * `EMLX.Backend.Creation` — constants, iota, eye, binaries, copies,
        pointers, batching, inspect
      * `EMLX.Backend.Elementwise` — unary and binary element-wise ops, types
      * `EMLX.Backend.Shape` — reshape, transpose, pad, slices, concatenation
      * `EMLX.Backend.Indexing` — gather, indexed add/put, take
      * `EMLX.Backend.Reduction` — reductions, arg-reductions, sort
      * `EMLX.Backend.Window` — window reductions and scatters
      * `EMLX.Backend.Linalg` — dot, triangular solve, FFT
      * `EMLX.Backend.Conv` — convolutions
      * `EMLX.Backend.Block` — `Nx.block/4`

    ## Devices

    `:cpu` and `:gpu` (the GPU is MLX's Metal or CUDA backend, where the
    MLX build has one). The `:device` option picks where new tensors go; it
    defaults to `EMLX.default_device/0`.

    Cross-device rule: an op whose tensor operands live on different devices
    runs on the device of its first tensor operand (in the order of the
    `Nx` function's arguments), and its result lives there. The other
    operands are evaluated on their own device first and then read in place
    (MLX keeps arrays in memory that both devices can address). Use
    `Nx.backend_transfer(t, {EMLX.Backend, device: d})` to move a tensor
    (`EMLX.to_device/2` for a `{device, ref}` array).
    Tensors of other backends given to an op are copied to the device of
    the op's first EMLX operand.

    ## Types

    | Nx type | stored in MLX as | behaviour |
    | ------- | ---------------- | --------- |
    | `s8`…`s64`, `u8`…`u64`, `f16`, `bf16`, `f32`, `c64` | the same type | native |
    | `f64` | `float64` | CPU only: on the GPU (MLX has no `float64` there) creating an `f64` tensor raises `ArgumentError`; use `device: :cpu` or `f32` |
    | `f8` (E5M2), `f8_e4m3fn` | `float16` | every result is rounded to the 8-bit grid the way `Nx.BinaryBackend` rounds it, so values are the same; the binary form is 8-bit |
    | `s2`, `s4`, `u2`, `u4` | `int8` / `uint8` | every result wraps to the narrow range, as in `Nx.BinaryBackend`; the binary form is packed |
    | `c128` | — | raises `ArgumentError`: MLX has no `complex128`; use `c64` |

    `as_type/2` from floats to integers truncates toward zero, maps NaN to
    0, `Inf` to the largest and `-Inf` to the smallest integer (as `Nx`
    documents) and saturates finite values outside the integer range.

    Results are computed in the output type Nx gives; where MLX rounds
    differently from `Nx.BinaryBackend` it is said here. `bf16` results are
    rounded to nearest (`Nx.BinaryBackend` truncates). `float64` math on the
    CPU runs at full precision: `exp`, `sin`, `cos`, `erf`, `erfc`, `erf_inv`,
    `sigmoid`, `log1p` and `cbrt` come from the C library (see
    `EMLX.precise_unary/2`), as MLX computes some of them with float32
    accuracy.

    ## Semantics Nx leaves open

      * Integer division by zero gives -1 for `quotient` and the dividend for
        `remainder` (XLA's convention; `Nx.BinaryBackend` raises); `pow` with
        a negative integer exponent gives the truncated result (0, or ±1 for
        bases ±1); shifts by a negative amount or by the bit width or more
        shift every bit out.
      * Out-of-range indices never read or write outside a tensor: `gather`,
        `take` and `take_along_axis` clamp them, `indexed_add` and
        `indexed_put` drop their updates (as XLA does; `Nx.BinaryBackend`
        raises; with `config :emlx, enable_bounds_check: true` they raise
        too, see `EMLX.Debug`). Dynamic slice starts are clamped as Nx
        documents.
      * `window_scatter_max`/`_min` pick the last of equal candidates, as
        `Nx.BinaryBackend` does; `sign` of a complex number is `z / |z|`.
      * Linear algebra on invalid input answers NaN, as EXLA does
        (`Nx.BinaryBackend` raises), never a plausible wrong matrix: every
        floating-point output for a matrix with a non-finite entry (`lu`,
        `qr`, `svd`, `eigh`, `cholesky`, `solve`, `invert`, `pinv`,
        `least_squares`, `triangular_solve`), for a matrix that is not
        positive definite (`cholesky`), or for a singular one (`solve`,
        `invert`, `triangular_solve` with a zero on the diagonal) is NaN,
        decided per matrix of a batch without reading anything back. (`lu`
        keeps its permutation, the identity then; `determinant` of a
        singular matrix is 0.) MLX's linalg runs on the CPU, in float64 for
        CPU tensors, in float32 for GPU ones.

    Every difference from `Nx.BinaryBackend` that the differential fuzzer
    (`test/emlx/reliability/fuzz_test.exs`) finds and that is understood is
    listed, with its reason, in `docs/known_differences.md` in the repository
    (float-to-integer saturation, operands cast to their common type first,
    `Nx.BinaryBackend`'s non-IEEE values for infinities, float32 overflow in
    accumulations, and the bugs still open).

    ## Binaries

    `to_binary/2` gives a binary over MLX's evaluated buffer (no copy for
    types MLX holds natively). `from_binary/3` of a binary of 4 KiB or more
    uses the binary's own bytes on the CPU build of libmlx (aligned to the
    element size: also for slices of one large binary, as in weight
    loading), and copies it otherwise (see `EMLX.from_blob/4`).
    `from_pointer/5` copies the memory it is given.

    ## Arbitrary reducers

    `Nx.reduce/4` and `Nx.window_reduce/5` take an Elixir function that MLX
    cannot compile. They run through `Nx.BinaryBackend` (the tensors are
    copied there, reduced with the function, and the result copied back),
    which is correct for any function but runs in Elixir: use the
    specialised reductions (`Nx.sum/2`, `Nx.window_max/3`, …) when they fit.

    ## Inspect

    Inspected tensors show the device (`EMLX.Backend<cpu>`); set
    `config :emlx, inspect_device: false` to leave it out.
    """

    @behaviour Nx.Backend

    defstruct [:ref, :shape, :type, :data, quantization_config: nil]

    @type t :: %__MODULE__{
            ref: EMLX.tensor_ref(),
            shape: tuple(),
            type: Nx.Type.t(),
            data: nil,
            quantization_config: term()
          }

    alias EMLX.Backend.{Block, Conv, Creation, Elementwise, Indexing, Linalg, Reduction, Shape, Window}

    # The dispatch table: every Nx.Backend callback, by the section that
    # implements it. `test/emlx/backend/callbacks_test.exs` checks that the
    # table covers `Nx.Backend`.
    @sections [
      {Creation,
       constant: 3,
       iota: 3,
       eye: 2,
       from_binary: 3,
       to_binary: 2,
       backend_copy: 3,
       backend_transfer: 3,
       backend_deallocate: 1,
       to_batched: 3,
       inspect: 2,
       to_pointer: 2,
       from_pointer: 5},
      {Elementwise,
       Enum.map(Elementwise.unary_ops(), &{&1, 2}) ++
         Enum.map(Elementwise.binary_ops(), &{&1, 3}) ++
         [as_type: 2, bitcast: 2, select: 4, clip: 4]},
      {Shape,
       reshape: 2,
       squeeze: 3,
       broadcast: 4,
       transpose: 3,
       pad: 4,
       reverse: 3,
       slice: 5,
       put_slice: 4,
       concatenate: 3,
       stack: 3},
      {Indexing, gather: 4, indexed_add: 5, indexed_put: 5},
      {Reduction,
       all: 3,
       any: 3,
       sum: 3,
       product: 3,
       reduce_max: 3,
       reduce_min: 3,
       argmax: 3,
       argmin: 3,
       reduce: 5,
       sort: 3,
       argsort: 3},
      {Window,
       window_sum: 4,
       window_product: 4,
       window_max: 4,
       window_min: 4,
       window_reduce: 6,
       window_scatter_max: 6,
       window_scatter_min: 6},
      {Linalg, dot: 7, triangular_solve: 4, fft: 3, ifft: 3},
      {Conv, conv: 4},
      {Block, block: 4}
    ]

    @doc false
    def __sections__, do: @sections

    @impl true
    def init(opts) do
      opts = Keyword.validate!(opts, device: nil)

      case opts[:device] do
        nil -> [device: EMLX.default_device()]
        device when device in [:cpu, :gpu] -> [device: device]
        other -> raise ArgumentError, "unknown EMLX device #{inspect(other)}: expected :cpu or :gpu"
      end
    end

    for {module, callbacks} <- @sections, {name, arity} <- callbacks do
      args = Macro.generate_arguments(arity, __MODULE__)
      @impl true
      defdelegate unquote(name)(unquote_splicing(args)), to: module
    end

    @doc """
    The MLX array (`{device, ref}`) of an EMLX tensor; a tensor of another
    backend is copied to `EMLX.default_device/0` first.

        iex> t = Nx.tensor([1, 2], backend: {EMLX.Backend, device: :cpu})
        iex> {:cpu, ref} = EMLX.Backend.from_nx(t)
        iex> is_reference(ref)
        true
    """
    defdelegate from_nx(tensor), to: EMLX.Backend.Convert

    @doc """
    Wraps an MLX array (`{device, ref}`) as an `Nx.Tensor`; the Nx type is
    the array's (an MLX `bool` becomes `{:u, 8}`).

        iex> EMLX.ones({2}, :int32, :cpu) |> EMLX.Backend.to_nx() |> Nx.to_flat_list()
        [1, 1]
    """
    def to_nx(ref), do: EMLX.Backend.Convert.to_nx(ref)

    @doc """
    Wraps an MLX array as a tensor shaped like `template` (an `Nx.Tensor`
    giving shape, type and names), converting the array to the template's
    type when they differ.

        iex> ref = EMLX.ones({2}, :int32, :cpu)
        iex> EMLX.Backend.to_nx(ref, Nx.template({2}, :f32)) |> Nx.to_flat_list()
        [1.0, 1.0]
    """
    def to_nx(ref, template), do: EMLX.Backend.Convert.to_nx(ref, template)
  end
end
