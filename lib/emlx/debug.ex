defmodule EMLX.Debug do
  @moduledoc """
  Development checks, off by default, switched on at compile time as in the
  original EMLX:

      # config/dev.exs (then `mix deps.compile emlx --force`, or
      # `mix compile --force` inside emlx)
      config :emlx, enable_bounds_check: true
      config :emlx, detect_non_finites: true

    * `:enable_bounds_check` — `Nx.gather/3`, `Nx.take/3`,
      `Nx.take_along_axis/3`, `Nx.indexed_add/4` and `Nx.indexed_put/4` on
      `EMLX.Backend` raise `ArgumentError` for an index outside its axis
      (negative ones included), instead of clamping it or dropping the
      update.
    * `:detect_non_finites` — `Nx.dot`, `Nx.conv` and the `EMLX.Fast`
      fused ops on `EMLX.Backend` raise `ArgumentError` when their result
      holds a NaN or an infinity.

  Each check reads one boolean back from the device, which ends MLX's lazy
  evaluation at that op: never enable them in production. With a flag off
  its check is one function call that returns at once.

  Every check is split in two so that a compiler can put it in its own
  graph: `index_check/3` and `non_finite/2` only build ops and return
  `{bad, message}` (`bad` a boolean MLX scalar, true when the check fails);
  `raise_if!/1` reads `bad` and raises `ArgumentError` with `message` (in a
  function compiled with `compiler: EMLX`, when the compiled function runs).
  """

  @bounds_check Application.compile_env(:emlx, :enable_bounds_check, false)
  @detect_non_finites Application.compile_env(:emlx, :detect_non_finites, false)

  @doc "Whether this build checks indices (`:enable_bounds_check`)."
  @spec bounds_check?() :: boolean()
  def bounds_check?, do: @bounds_check

  @doc "Whether this build checks results for NaN and infinities (`:detect_non_finites`)."
  @spec detect_non_finites?() :: boolean()
  def detect_non_finites?, do: @detect_non_finites

  @doc """
  `{bad, message}` for the integer `indices` of `op`. With `limit` an
  integer every index must lie in `0..limit - 1`; with a list of limits the
  last axis of `indices` holds one index per limit (as `Nx.gather/3` takes
  them), entry `j` in `0..limit_j - 1`. Only builds ops.

      iex> idx = EMLX.from_blob(<<0::32-native, 3::32-native>>, {2}, :int32, :cpu)
      iex> {bad, message} = EMLX.Debug.index_check(:take, idx, 3)
      iex> {EMLX.item(bad), message}
      {true, "take: index out of bounds: every index must be in 0..2"}
  """
  @spec index_check(atom() | String.t(), EMLX.tensor_ref(), pos_integer() | [non_neg_integer()]) ::
          {EMLX.tensor_ref(), String.t()}
  def index_check(op, {device, _} = indices, limits) do
    # int64 holds every index type's values; uint64 ones above 2^63 become
    # negative, which is out of bounds as well.
    idx = EMLX.astype(indices, :int64)

    {bounds, text} =
      case limits do
        limit when is_integer(limit) ->
          {EMLX.scalar_tensor(limit, :int64, device), "every index must be in 0..#{limit - 1}"}

        limits when is_list(limits) ->
          blob = for l <- limits, into: <<>>, do: <<l::signed-64-native>>
          ranges = Enum.map_join(limits, ", ", &"0..#{&1 - 1}")

          {EMLX.from_blob(blob, {length(limits)}, :int64, device),
           "the indices along the last axis must be in #{ranges}"}
      end

    zero = EMLX.scalar_tensor(0, :int64, device)
    outside = EMLX.logical_or(EMLX.less(idx, zero), EMLX.greater_equal(idx, bounds))
    {EMLX.any(outside, axes(outside), false), "#{op}: index out of bounds: #{text}"}
  end

  @doc """
  `{bad, message}`: whether the result `tensor` of `op` holds a NaN or an
  infinity (never, for integer types). Only builds ops.

      iex> t = EMLX.from_blob(<<1.0::float-32-native, 0x7F800000::32-native>>, {2}, :float32, :cpu)
      iex> {bad, message} = EMLX.Debug.non_finite(:dot, t)
      iex> {EMLX.item(bad), message}
      {true, "dot produced NaN or Inf (config :emlx, detect_non_finites: true; never enable it in production)"}
  """
  @spec non_finite(atom() | String.t(), EMLX.tensor_ref()) :: {EMLX.tensor_ref(), String.t()}
  def non_finite(op, {device, _} = tensor) do
    message = "#{op} produced NaN or Inf (config :emlx, detect_non_finites: true; never enable it in production)"

    bad =
      if EMLX.scalar_type(tensor) in [:float16, :bfloat16, :float32, :float64, :complex64] do
        bad = EMLX.logical_or(EMLX.is_nan(tensor), EMLX.is_infinity(tensor))
        EMLX.any(bad, axes(bad), false)
      else
        EMLX.scalar_tensor(false, :bool, device)
      end

    {bad, message}
  end

  @doc """
  Reads `bad` (one boolean) and raises `ArgumentError` with `message` when
  it is true; returns `:ok` otherwise. Inside a function that `EMLX` (the
  defn compiler) compiles, the check becomes a step of the program, made
  (and raising) when the compiled function runs (EMLX.Native.check/2, internal).
  """
  @spec raise_if!({EMLX.tensor_ref(), String.t()}) :: :ok
  def raise_if!({bad, message}), do: EMLX.Native.check(bad, message)

  @doc false
  # The eager checks, called where the ops are built; each returns its
  # tensor argument so it can sit in a pipeline.
  def check_indices!(indices, op, limits) do
    if @bounds_check, do: raise_if!(index_check(op, indices, limits))
    indices
  end

  @doc false
  def check_finite!(tensor, op) do
    if @detect_non_finites, do: raise_if!(non_finite(op, tensor))
    tensor
  end

  defp axes(t), do: Enum.to_list(0..(tuple_size(EMLX.shape(t)) - 1)//1)
end
