defmodule EMLX do
  @moduledoc """
  Low-level bindings to MLX, the array framework, through a Rust NIF.

  A tensor is `{device, ref}`: `device` is `:cpu` or `:gpu`, `ref` the NIF
  resource holding the MLX array. Ops are lazy: they build MLX graph nodes
  on the stream of a command queue (see `EMLX.CommandQueue`) and nothing is
  computed until `eval/1`, `item/1` or `to_blob/1`, which run on that
  queue's thread and answer by message. Tiny results on an idle CPU queue
  are the exception: they are computed as they are built (see `lazy/1`).

  Types are MLX dtype atoms (`:float32`, `:bfloat16`, `:int64`, `:bool`, …)
  or, as a convenience, Nx type tuples (`{:f, 32}`); see `EMLX.Types`.
  Bad arguments raise `ArgumentError`; failures inside MLX raise
  `EMLX.NIFError` with MLX's message. A result that could not fit in the
  machine's memory is refused when the op is built.

  `EMLX` is also an `Nx.Defn.Compiler`: `Nx.Defn.jit(fun, compiler: EMLX)`
  (or `Nx.Defn.default_options(compiler: EMLX)`) lowers a defn function once
  into a native program that runs as one job on a command queue; see
  `EMLX.Defn` for its options and behaviour.

  Indexing never touches memory outside a tensor: `take/3`,
  `take_along_axis/3` and `gather/4` clamp out-of-range (and negative)
  indices into range, `scatter/4` and `scatter_add/4` drop updates that do
  not fit, as XLA does. MLX's linear algebra (`linalg_*`, `tri_inv/2`) runs
  on the CPU only: those ops are recorded on a CPU stream owned by the
  tensor's command queue, so their results stay on the queue (and device)
  of their input.

      iex> a = EMLX.from_blob(<<1.0::float-32-native, 2.0::float-32-native>>, {2}, :float32, :cpu)
      iex> EMLX.add(a, a) |> EMLX.to_blob()
      <<2.0::float-32-native, 4.0::float-32-native>>
  """

  @type device :: :cpu | :gpu
  @type tensor_ref :: {device(), reference()}

  @doc """
  Guard: `{device, ref}` looks like an EMLX tensor.
  """
  defguard is_tensor(device, ref) when is_atom(device) and is_reference(ref)

  ## Lazy ops, generated from EMLX.Ops

  for {name, params, doc, opts} <- EMLX.Ops.table() do
    vars = for {param, _kind} <- params, do: Macro.var(param, __MODULE__)

    nif_args =
      for {{_param, kind}, var} <- Enum.zip(params, vars), kind != :device do
        case kind do
          :type -> quote(do: EMLX.Types.mlx_type(unquote(var)))
          :scalar -> quote(do: EMLX.scalar_arg(unquote(var)))
          _ -> var
        end
      end

    queue =
      case Enum.find(Enum.zip(params, vars), fn {{_, kind}, _} -> kind in [:device, :tensor, :tensors] end) do
        {{_, :device}, var} -> quote(do: EMLX.queue_for_device(unquote(var)))
        {{_, _}, var} -> quote(do: EMLX.queue_for(unquote(var)))
      end

    call = quote(do: EMLX.Native.op(unquote(queue), unquote(name), unquote(nif_args)))

    body =
      case opts[:out] do
        :tuple -> quote(do: List.to_tuple(unquote(call)))
        {:tuple, n} -> quote(do: EMLX.padded_tuple(unquote(call), unquote(n)))
        :list -> quote(do: EMLX.as_list(unquote(call)))
        _ -> call
      end

    # opts[:defaults]: trailing parameters that may be left out.
    head =
      for {{param, _kind}, var} <- Enum.zip(params, vars) do
        case Keyword.fetch(opts[:defaults] || [], param) do
          {:ok, default} -> quote(do: unquote(var) \\ unquote(Macro.escape(default)))
          :error -> var
        end
      end

    @doc doc
    def unquote(name)(unquote_splicing(head)), do: unquote(body)
  end

  @doc false
  # An op's outputs as an `n`-tuple, nil where it has fewer (quantize's
  # biases in the microscaled modes).
  def padded_tuple(outputs, n),
    do: outputs |> as_list() |> Kernel.++(List.duplicate(nil, n)) |> Enum.take(n) |> List.to_tuple()

  @doc false
  # Ops with a variable number of outputs answer a list even for one.
  def as_list(outputs) when is_list(outputs), do: outputs
  def as_list(output), do: [output]

  @doc false
  def queue_for({device, ref}) when is_tensor(device, ref), do: EMLX.CommandQueue.current(device)
  def queue_for([{device, ref} | _]) when is_tensor(device, ref), do: EMLX.CommandQueue.current(device)

  def queue_for([]),
    do: raise(ArgumentError, "expected a non-empty list of EMLX tensors ({device, ref}), got: []")

  def queue_for(other),
    do: raise(ArgumentError, "expected an EMLX tensor ({device, ref}), got: #{inspect(other)}")

  @doc false
  def queue_for_device(device) when device in [:cpu, :gpu], do: EMLX.CommandQueue.current(device)
  def queue_for_device({device, _index}) when device in [:cpu, :gpu], do: EMLX.CommandQueue.current(device)

  def queue_for_device(other),
    do: raise(ArgumentError, "unknown device #{inspect(other)}: expected :cpu or :gpu")

  @doc false
  def scalar_arg(x) when is_number(x) or x in [:nan, :infinity, :neg_infinity], do: x
  def scalar_arg(x) when is_boolean(x), do: x
  def scalar_arg(%{__struct__: Complex, re: re, im: im}), do: [float_part(re), float_part(im)]

  def scalar_arg(other),
    do: raise(ArgumentError, "expected a number, :nan, :infinity, :neg_infinity or a Complex, got: #{inspect(other)}")

  defp float_part(x) when is_number(x), do: x * 1.0
  defp float_part(x) when x in [:nan, :infinity, :neg_infinity], do: x

  ## Creation from bytes

  @doc """
  A tensor of the bytes of `blob`, read as `type` elements in row-major
  order; `byte_size(blob)` must match `shape` and `type`.

  On the CPU build of libmlx (the Linux default) a binary of 4 KiB or more
  whose bytes are aligned to the element size becomes a tensor over its own
  bytes, with no copy: binaries never change, MLX never writes into memory
  it does not own, and the binary is kept alive (even once Elixir drops it)
  until no MLX array uses it. Slices (`binary_part/3`) of one large binary,
  as when loading a file of weights, work the same way. Other binaries, and
  other builds of MLX, are copied (large copies on a dirty scheduler).

      iex> EMLX.from_blob(<<1::32-native, 2::32-native>>, {2}, :int32, :cpu) |> EMLX.shape()
      {2}
  """
  def from_blob(blob, shape, type, device) when is_binary(blob) do
    queue = queue_for_device(device)
    dims = shape_list!(shape)
    mlx = EMLX.Types.mlx_type(type)

    case EMLX.NIF.from_blob(queue, blob, dims, mlx) do
      :dirty -> EMLX.NIF.from_blob_dirty(heap_copy(queue), blob, dims, mlx)
      tensor -> tensor
    end
  end

  def from_blob(blob, _shape, _type, _device),
    do: raise(ArgumentError, "from_blob expects a binary, got: #{inspect(blob)}")

  # The default queue's handle is a :persistent_term literal. If the
  # application restarts (the term is replaced) while a dirty NIF holds it,
  # the VM (OTP 25 seen) can free the literal under the running NIF and
  # crash; a dirty NIF therefore gets a copy on the process heap (the same
  # resource: a term_to_binary round trip keeps local resource references).
  defp heap_copy(ref), do: :erlang.binary_to_term(:erlang.term_to_binary(ref))

  defp shape_list!(shape) when is_tuple(shape), do: shape_list!(Tuple.to_list(shape))

  defp shape_list!(shape) when is_list(shape) do
    if Enum.all?(shape, &(is_integer(&1) and &1 >= 0)),
      do: shape,
      else: raise(ArgumentError, "a shape must hold non-negative integers, got: #{inspect(shape)}")
  end

  defp shape_list!(shape),
    do: raise(ArgumentError, "a shape must be a tuple or list of integers, got: #{inspect(shape)}")

  ## Reading back

  @doc """
  The tensor's bytes in row-major order, evaluating it first. The binary
  refers to MLX's buffer without copying it (a transposed or strided view is
  made contiguous first).

      iex> EMLX.scalar_tensor(7, :uint8, :cpu) |> EMLX.to_blob()
      <<7>>
  """
  def to_blob({device, ref} = tensor) when is_tensor(device, ref), do: EMLX.Native.to_blob(tensor, nil)

  @doc """
  Like `to_blob/1`, but only the first `limit` elements.

      iex> EMLX.arange(0, 4, 1, true, :cpu) |> EMLX.to_blob(2)
      <<0::64-native, 1::64-native>>
  """
  def to_blob({device, ref} = tensor, limit)
      when is_tensor(device, ref) and is_integer(limit) and limit >= 0,
      do: EMLX.Native.to_blob(tensor, limit)

  def to_blob(_tensor, limit),
    do: raise(ArgumentError, "to_blob limit must be a non-negative integer, got: #{inspect(limit)}")

  @doc """
  The value of a one-element tensor: an integer, a float (or `:nan`,
  `:infinity`, `:neg_infinity`), a boolean for `:bool`, or a `Complex`
  (`{re, im}` when the `complex` package is not loaded).

      iex> EMLX.scalar_tensor(2.5, :float32, :cpu) |> EMLX.item()
      2.5
  """
  def item({device, ref} = tensor) when is_tensor(device, ref) do
    case EMLX.Native.item(tensor) do
      {re, im} -> complex(re, im)
      value -> value
    end
  end

  defp complex(re, im) do
    if Code.ensure_loaded?(Complex), do: apply(Complex, :new, [re, im]), else: {re, im}
  end

  @doc """
  Runs `fun` with every op it builds kept lazy, and returns its result.

  Ops build MLX graph nodes that are computed on evaluation; but on a CPU
  queue whose kernels run inline (the Linux CPU build), an op whose whole
  unevaluated graph is tiny (at most 32 nodes touching at most 64 KiB) is
  computed as it is built when its queue is idle, because MLX's evaluation
  of a node costs several times a kernel on a few elements. The values are
  the same either way. Inside
  `lazy/1` every result stays a graph node until it is evaluated, as larger
  ones do: for looking at MLX's graphs, or measuring their evaluation.

      iex> one = EMLX.scalar_tensor(1, :int32, :cpu)
      iex> two = EMLX.lazy(fn -> EMLX.add(one, one) end)
      iex> EMLX.item(two)
      2
  """
  @spec lazy((-> result)) :: result when result: var
  def lazy(fun) when is_function(fun, 0), do: EMLX.Native.lazy(fun)

  @doc """
  Evaluates the tensor on the command queue that built it and waits for it.

      iex> t = EMLX.add(EMLX.scalar_tensor(1, :int32, :cpu), EMLX.scalar_tensor(1, :int32, :cpu))
      iex> EMLX.eval(t)
      :ok
  """
  def eval({device, ref} = tensor) when is_tensor(device, ref), do: EMLX.Native.eval([tensor])

  ## Attention over a KV cache

  @doc """
  One causal self-attention step over a preallocated KV cache, in the
  `{B, T, N, D}` layout (as Bumblebee keeps it): `new_key`/`new_value`
  (`{B, T_new, N_kv, D}`) are written into `key_cache`/`value_cache`
  (`{B, T_max, N_kv, D}`) at `offset` (the number of positions already
  filled), and `query` (`{B, T_q, N_q, D}`, `N_q` a multiple of `N_kv`)
  attends causally over the `offset + T_new` valid positions.

  Options: `:scale` (required, usually `1 / sqrt(D)`) and `:key_mask` (a
  `{B, offset + T_new}` or `{B, T_max}` tensor, non-zero where a key may be
  attended, to skip padding). Returns `{attention, key_cache, value_cache}`
  as EMLX tensors, the caches updated; see `kv_cache_attention/7` and
  `kv_cache_attention_masked/8`, which this calls.

      iex> q = EMLX.ones({1, 1, 1, 2}, :float32, :cpu)
      iex> cache = EMLX.full(0.0, {1, 4, 1, 2}, :float32, :cpu)
      iex> {out, k, _v} = EMLX.causal_kv_attention(q, q, q, cache, cache, 0, scale: 1.0)
      iex> {EMLX.shape(out), EMLX.sum(k, [0, 1, 2, 3], false) |> EMLX.item()}
      {{1, 1, 1, 2}, 2.0}
  """
  @spec causal_kv_attention(
          tensor_ref(),
          tensor_ref(),
          tensor_ref(),
          tensor_ref(),
          tensor_ref(),
          non_neg_integer(),
          keyword()
        ) ::
          {tensor_ref(), tensor_ref(), tensor_ref()}
  def causal_kv_attention(query, new_key, new_value, key_cache, value_cache, offset, opts)
      when is_integer(offset) and offset >= 0 and is_list(opts) do
    opts = Keyword.validate!(opts, [:scale, :key_mask])

    scale =
      case opts[:scale] do
        scale when is_number(scale) -> scale * 1.0
        other -> raise ArgumentError, "causal_kv_attention: :scale must be a number, got: #{inspect(other)}"
      end

    case opts[:key_mask] do
      nil -> kv_cache_attention(query, new_key, new_value, key_cache, value_cache, offset, scale)
      mask -> kv_cache_attention_masked(query, new_key, new_value, key_cache, value_cache, offset, scale, mask)
    end
  end

  def causal_kv_attention(_query, _new_key, _new_value, _key_cache, _value_cache, offset, opts) do
    raise ArgumentError,
          "causal_kv_attention: expected a non-negative integer offset and a keyword list of options, " <>
            "got: #{inspect(offset)} and #{inspect(opts)}"
  end

  ## Devices

  @doc """
  The tensor on `device` (`:cpu` or `:gpu`). On its own device the tensor
  itself comes back (no copy); otherwise a copy built on `device`'s command
  queue (the one bound with `EMLX.CommandQueue.with_queue/2` when it is on
  `device`, else the device's default queue). The source stays usable and is
  not deallocated (unlike `Nx.backend_transfer/2`).

  An unevaluated source is first evaluated on its own queue, then copied on
  the target stream: MLX keeps arrays in memory both devices address (unified
  memory on Apple silicon, CUDA managed memory), so nothing travels through
  the BEAM. Raises `ArgumentError` for `:gpu` when this MLX build has no GPU.

      iex> t = EMLX.ones({2}, :float32, :cpu)
      iex> EMLX.to_device(t, :cpu) == t
      true
  """
  @spec to_device(tensor_ref(), device()) :: tensor_ref()
  def to_device({device, ref} = tensor, device) when is_tensor(device, ref) and device in [:cpu, :gpu], do: tensor

  def to_device({from, ref} = tensor, device) when is_tensor(from, ref) and device in [:cpu, :gpu] do
    queue =
      case EMLX.CommandQueue.bound() do
        %EMLX.CommandQueue{device: ^device, ref: bound} -> bound
        _ -> EMLX.CommandQueue.default(device)
      end

    EMLX.Native.op(queue, :copy, [tensor])
  end

  def to_device({from, ref}, device) when is_tensor(from, ref),
    do: raise(ArgumentError, "to_device: unknown device #{inspect(device)}: expected :cpu or :gpu")

  def to_device(other, _device), do: raise(ArgumentError, not_a_tensor(:to_device, other))

  ## Metadata

  @doc """
  The shape as a tuple.

      iex> EMLX.ones({2, 3}, :float32, :cpu) |> EMLX.shape()
      {2, 3}
  """
  def shape(tensor), do: EMLX.Native.local([tensor], fn -> EMLX.NIF.shape(tensor) end)

  @doc """
  The MLX dtype atom.

      iex> EMLX.ones({2}, {:bf, 16}, :cpu) |> EMLX.scalar_type()
      :bfloat16
  """
  def scalar_type(tensor), do: EMLX.Native.local([tensor], fn -> EMLX.NIF.scalar_type(tensor) end)

  @doc """
  The strides, in elements (row-major strides for an unevaluated tensor).

      iex> EMLX.ones({2, 3}, :float32, :cpu) |> EMLX.strides()
      [3, 1]
  """
  def strides(tensor), do: EMLX.Native.local([tensor], fn -> EMLX.NIF.strides(tensor) end)

  @doc """
  Frees the tensor's array now instead of at garbage collection. Returns
  `:ok`, or `:already_deallocated`; using the tensor afterwards raises.

      iex> t = EMLX.ones({2}, :float32, :cpu)
      iex> EMLX.deallocate(t)
      :ok
  """
  def deallocate({device, ref} = tensor) when is_tensor(device, ref) do
    case EMLX.NIF.deallocate(tensor) do
      :ok -> :ok
      :error -> :already_deallocated
    end
  end

  @doc """
  The device new tensors go to when none is given: the `:default_device`
  of the `:emlx` application environment if set, else `:gpu` where MLX has
  a GPU, else `:cpu`.
  """
  def default_device do
    case Application.get_env(:emlx, :default_device) do
      nil -> if EMLX.NIF.gpu_available(), do: :gpu, else: :cpu
      device -> device
    end
  end

  @doc """
  What MLX knows of a device (`:cpu` or `:gpu`): its `:name`, its
  `:architecture` (`"x86_64"`, `"arm64"`, a CUDA GPU's `"sm_90"`) and
  `:memory`, the bytes that device's tensors can occupy: the machine's
  memory for the CPU, a CUDA GPU's own memory (Apple silicon: the unified
  memory). An op whose result needs more raises `ArgumentError` when it is
  built. Raises `ArgumentError` for `:gpu` when this MLX build has none.

      iex> info = EMLX.device_info(:cpu)
      iex> is_binary(info.name) and is_binary(info.architecture) and info.memory > 0
      true
  """
  @spec device_info(device()) :: %{name: String.t(), architecture: String.t(), memory: pos_integer()}
  def device_info(device) when device in [:cpu, :gpu] do
    {name, architecture, memory} = EMLX.NIF.device_info(device)
    %{name: name, architecture: architecture, memory: memory}
  end

  def device_info(other),
    do: raise(ArgumentError, "unknown device #{inspect(other)}: expected :cpu or :gpu")

  ## Sharing memory outside MLX

  @doc """
  `{address, byte_size}` of the tensor's data: the address of its first
  byte in MLX's buffer, after evaluating it on its command queue.

  The data is row-major and contiguous: a transposed or strided view is
  first replaced, inside the tensor, by its contiguous copy (same values).
  The address stays valid while the tensor is alive and not deallocated
  (`deallocate/1`): keep a reference to the tensor for as long as anything
  reads the address. MLX arrays are immutable, so nothing may write there.
  On Apple silicon the memory is shared by CPU and GPU; with MLX's CUDA
  build the address belongs to MLX's CUDA allocator. An empty tensor gives
  `{0, 0}`.

      iex> t = EMLX.ones({2, 3}, :float32, :cpu)
      iex> {address, size} = EMLX.tensor_data_ptr(t)
      iex> {address > 0, size}
      {true, 24}
  """
  def tensor_data_ptr({device, ref} = tensor) when is_tensor(device, ref),
    do: EMLX.Native.tensor_data_ptr(tensor)

  def tensor_data_ptr(other), do: raise(ArgumentError, not_a_tensor(:tensor_data_ptr, other))

  @doc """
  Copies the tensor's bytes (row-major, evaluated on its command queue) into
  a new POSIX shared-memory segment and returns `{name, byte_size}`.

  `permissions` is the segment's Unix mode, such as `0o600` (`0o400` for
  read-only). `name` (a string starting with `/emlx_`, as the original EMLX names them) is what another process
  passes to `shm_open`; on Linux the segment is also visible as
  `/dev/shm/<name without the slash>`. The segment outlives the call and
  this process until someone unlinks it: the receiver, or `shm_unlink/1`.
  MLX arrays are immutable, so this is always a copy.

      iex> t = EMLX.from_blob(<<1, 2, 3>>, {3}, :uint8, :cpu)
      iex> {name, 3} = EMLX.tensor_to_shm(t, 0o600)
      iex> EMLX.shm_unlink(name)
      :ok
  """
  def tensor_to_shm({device, ref} = tensor, permissions)
      when is_tensor(device, ref) and is_integer(permissions) and permissions in 0..0o777,
      do: EMLX.Native.tensor_to_shm(tensor, permissions)

  def tensor_to_shm({device, ref}, permissions) when is_tensor(device, ref),
    do:
      raise(
        ArgumentError,
        "tensor_to_shm: permissions must be Unix mode bits (an integer from 0 to 0o777), got: #{inspect(permissions)}"
      )

  def tensor_to_shm(other, _permissions), do: raise(ArgumentError, not_a_tensor(:tensor_to_shm, other))

  defp not_a_tensor(function, other),
    do: "#{function}: expected an EMLX tensor ({device, ref}), got: #{inspect(other)}"

  @doc """
  Removes the name of a shared-memory segment made by `tensor_to_shm/2`, so
  the memory is freed once nobody has it open. A name that no longer exists
  (the receiver already unlinked it) is fine: returns `:ok` all the same.

      iex> EMLX.shm_unlink("/emlx-never-created")
      :ok
  """
  def shm_unlink(name) when is_binary(name), do: EMLX.NIF.shm_unlink(name)

  def shm_unlink(name),
    do: raise(ArgumentError, "shm_unlink: the name must be a string, got: #{inspect(name)}")

  if Code.ensure_loaded?(Nx) do
    ## The defn compiler (EMLX.Defn)

    @behaviour Nx.Defn.Compiler

    @impl Nx.Defn.Compiler
    @doc false
    def __jit__(key, vars, fun, args_list, opts), do: EMLX.Defn.__jit__(key, vars, fun, args_list, opts)

    @impl Nx.Defn.Compiler
    @doc false
    def __compile__(key, vars, fun, opts), do: EMLX.Defn.__compile__(key, vars, fun, opts)

    @impl Nx.Defn.Compiler
    @doc false
    def __partitions_options__(opts), do: EMLX.Defn.__partitions_options__(opts)

    @impl Nx.Defn.Compiler
    @doc false
    def __to_backend__(opts), do: EMLX.Defn.__to_backend__(opts)

    ## Nx tensors

    @doc """
    The `Nx.Tensor` (on `EMLX.Backend`) of an EMLX tensor `{device, ref}`.
    Needs Nx and `EMLX.Backend`.
    """
    def to_nx({device, ref} = tensor) when is_tensor(device, ref), do: EMLX.NxInterop.to_nx(tensor)

    @doc """
    Quantizes a dense rank-2 `Nx.Tensor`; see `EMLX.Quantization.quantize/2`
    (options `:mode` — `"affine"`, `"mxfp4"`, `"mxfp8"` or `"nvfp4"` —
    `:type` — `{:s, 2}` / `{:s, 4}` / `{:s, 8}` — and `:group_size`).
    """
    def quantize(%Nx.Tensor{} = tensor, opts) when is_list(opts), do: EMLX.Quantization.quantize(tensor, opts)

    @doc """
    The dense tensor of a quantized `Nx.Tensor` made by `quantize/2`; see
    `EMLX.Quantization.dequantize/2`.
    """
    def dequantize(%Nx.Tensor{} = qw), do: EMLX.Quantization.dequantize(qw)

    @doc """
    `activation · dequantize(qw)ᵀ` computed on the packed codes; see
    `EMLX.Quantization.quantized_matmul/2`. Raises `ArgumentError` when
    `qw` is not quantized or `activation` is.
    """
    def quantized_matmul(%Nx.Tensor{} = activation, %Nx.Tensor{} = qw),
      do: EMLX.Quantization.quantized_matmul(activation, qw)
  end

  ## BLAS

  @doc """
  The BLAS that MLX's CPU matrix products and LAPACK routines run on:

    * `:kind` — `"openblas (scipy-openblas32 wheel)"` (the default on Linux),
      `"openblas (system)"` (built with `EMLX_BLAS=system`) or
      `"reference BLAS bundled with MLX"` (`EMLX_BLAS=none`; macOS, where MLX
      uses Accelerate, also reports this)
    * `:library` — the library file; `:config` — its build configuration
      (OpenBLAS version and options)
    * `:core` — the kernel set OpenBLAS picked for this CPU (`"Haswell"`,
      `"SkylakeX"`, `"Zen"`, `"SapphireRapids"`, `"NeoverseN1"`, …;
      `OPENBLAS_CORETYPE` overrides it)
    * `:threads` — OpenBLAS's thread count (`OPENBLAS_NUM_THREADS`)
    * `:sgemm_from` — the file that MLX's `cblas_sgemm` calls resolve to

        iex> info = EMLX.blas_info()
        iex> is_binary(info.kind) and is_binary(info.core) and info.threads >= 1
        true
  """
  @spec blas_info() :: %{
          kind: String.t(),
          library: String.t(),
          config: String.t(),
          core: String.t(),
          threads: pos_integer(),
          sgemm_from: String.t()
        }
  def blas_info, do: EMLX.NIF.blas_info()

  ## Memory

  @doc """
  MLX's memory counters, in bytes.

      iex> info = EMLX.memory_info()
      iex> is_integer(info.active_memory) and is_integer(info.peak_memory) and is_integer(info.cache_memory)
      true
  """
  def memory_info do
    {active, peak, cache} = EMLX.NIF.memory_info()
    %{active_memory: active, peak_memory: peak, cache_memory: cache}
  end

  @doc """
  Resets MLX's peak-memory counter.

      iex> EMLX.reset_peak_memory()
      :ok
  """
  def reset_peak_memory, do: EMLX.NIF.reset_peak_memory()

  @doc """
  Returns MLX's cached (freed but kept) buffers to the system.

      iex> EMLX.clear_cache()
      :ok
  """
  def clear_cache, do: EMLX.NIF.clear_cache()

  @doc """
  Sets the allocator cache limit in bytes; returns the previous limit.

      iex> previous = EMLX.set_cache_limit(1_000_000)
      iex> EMLX.set_cache_limit(previous)
      1_000_000
  """
  def set_cache_limit(limit) when is_integer(limit) and limit >= 0, do: EMLX.NIF.set_cache_limit(limit)

  @doc """
  Sets MLX's memory limit in bytes; returns the previous limit.

      iex> previous = EMLX.set_memory_limit(1_000_000_000)
      iex> EMLX.set_memory_limit(previous)
      1_000_000_000
  """
  def set_memory_limit(limit) when is_integer(limit) and limit >= 0, do: EMLX.NIF.set_memory_limit(limit)
end
