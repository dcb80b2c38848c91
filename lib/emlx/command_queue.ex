defmodule EMLX.CommandQueue do
  @moduledoc """
  Command queues: each is one OS thread that owns one MLX stream.

  Lazy ops are recorded on the stream of the queue that will evaluate them:
  the queue bound to the calling process with `with_queue/2`, otherwise the
  application's default queue for the tensor's device (`:cpu`, and `:gpu`
  where MLX has one). Evaluation, `item` and `to_blob` run on the queue
  that built the tensor and reply to the caller by message, so no BEAM
  scheduler waits on MLX. Jobs on one queue run one at a time, in the order
  they were sent; different queues run concurrently, so a slow job on one
  does not hold up another.

  On the CPU, a queue runs MLX's kernels on its own thread (not on MLX's
  per-stream threads), and a small graph (up to 128 nodes and 128 KiB of
  data) whose queue is idle — nothing sent before is still waiting or
  running — is evaluated right in the calling process's NIF, in a few
  microseconds, with the same results and the same order as a job.

  ## Cross-queue rule

  An op whose input is an *unevaluated* tensor of another queue first
  evaluates that input on its own queue, then builds the op on the current
  queue. Evaluated tensors are shared freely between queues.

      iex> a = EMLX.CommandQueue.new!(:cpu)
      iex> b = EMLX.CommandQueue.new!(:cpu)
      iex> x = EMLX.CommandQueue.with_queue(a, fn -> EMLX.add(EMLX.ones({2}, :int32, :cpu), EMLX.ones({2}, :int32, :cpu)) end)
      iex> EMLX.CommandQueue.with_queue(b, fn -> EMLX.multiply(x, x) end) |> EMLX.to_blob()
      <<4::32-native, 4::32-native>>

  ## Lifetime

  A queue belongs to the process that created it (or to the `:owner` given
  to `new/2`) and is closed when that process exits, or by `close/1`. A
  closed queue takes no new work: jobs still waiting get an
  `EMLX.NIFError`, the running one finishes, and its thread ends. Tensors
  it *evaluated* stay readable (their reads go to the device's default
  queue); its unevaluated tensors can no longer be evaluated. A queue that
  nothing refers to any more (no handle, no tensor built on it) ends on its
  own. Each queue holds at most `:capacity` waiting jobs; past that,
  submitting raises `EMLX.NIFError` rather than letting the backlog grow
  without bound.
  """

  defstruct [:ref, :device, :id]

  @type t :: %__MODULE__{ref: reference(), device: :cpu | :gpu, id: pos_integer()}

  @bound {__MODULE__, :bound}

  @doc false
  def start_defaults do
    for device <- [:cpu, :gpu], device == :cpu or EMLX.NIF.gpu_available() do
      ref = EMLX.NIF.queue_new(device, nil, nil)
      :ok = EMLX.NIF.queue_make_default(ref)
      :persistent_term.put({__MODULE__, device}, ref)
    end

    :ok
  end

  @doc false
  # The application's default queues end with it: closed (their waiting
  # jobs get an error reply, the running one finishes, the thread ends),
  # whoever may still hold their handles, then forgotten (later calls raise
  # that EMLX is not started). In that order: the handle is a persistent_term
  # literal, and erasing it while the (dirty) close NIF still holds it let
  # the VM free it under the NIF and crash.
  def stop_defaults do
    for device <- [:cpu, :gpu], ref = :persistent_term.get({__MODULE__, device}, nil) do
      :ok = EMLX.NIF.queue_close(ref)
      :persistent_term.erase({__MODULE__, device})
    end

    :ok
  end

  @doc """
  Starts a new queue on `device` (`:cpu` or `:gpu`). Returns
  `{:ok, queue}`, or `{:error, message}` when the device does not exist.

  Options:

    * `:owner` — the pid whose exit closes the queue (default: the calling
      process), or `nil` for a queue that only `close/1` (or being
      forgotten) ends.
    * `:capacity` — how many jobs may wait on the queue (default 65536).

  ## Examples

      iex> {:ok, q} = EMLX.CommandQueue.new(:cpu)
      iex> q.device
      :cpu

      iex> {:error, message} = EMLX.CommandQueue.new(:tpu)
      iex> message
      "unknown device :tpu: expected :cpu or :gpu"
  """
  def new(device \\ :cpu, opts \\ []) do
    {:ok, new!(device, opts)}
  rescue
    e in [ArgumentError, EMLX.NIFError] -> {:error, Exception.message(e)}
  end

  @doc """
  Like `new/2`, raising on failure (`ArgumentError` for a device that does
  not exist, `EMLX.NIFError` when MLX cannot create the stream).

      iex> EMLX.CommandQueue.new!(:cpu, capacity: 16) |> EMLX.CommandQueue.info() |> Map.take([:capacity, :closed])
      %{capacity: 16, closed: false}
  """
  def new!(device \\ :cpu, opts \\ [])

  def new!(device, opts) when device in [:cpu, :gpu] and is_list(opts) do
    owner = Keyword.get(opts, :owner, self())
    capacity = Keyword.get(opts, :capacity)

    unless is_nil(owner) or is_pid(owner),
      do: raise(ArgumentError, "the :owner of a queue must be a pid or nil, got: #{inspect(owner)}")

    unless is_nil(capacity) or (is_integer(capacity) and capacity > 0),
      do: raise(ArgumentError, "the :capacity of a queue must be a positive integer, got: #{inspect(capacity)}")

    ref = EMLX.NIF.queue_new(device, owner, capacity)
    %__MODULE__{ref: ref, device: device, id: EMLX.NIF.queue_info(ref).id}
  end

  def new!(device, _opts) when device in [:cpu, :gpu],
    do: raise(ArgumentError, "queue options must be a keyword list")

  def new!(device, _opts),
    do: raise(ArgumentError, "unknown device #{inspect(device)}: expected :cpu or :gpu")

  @doc """
  Waits until every job sent to `queue` so far has finished.

      iex> q = EMLX.CommandQueue.new!(:cpu)
      iex> EMLX.CommandQueue.synchronize(q)
      :ok
  """
  def synchronize(%__MODULE__{ref: ref}), do: EMLX.Native.synchronize(ref)

  @doc """
  Closes `queue` and waits for its thread to end: jobs still waiting get an
  `EMLX.NIFError`, the running one finishes. Closing twice is harmless.

      iex> q = EMLX.CommandQueue.new!(:cpu)
      iex> EMLX.CommandQueue.close(q)
      :ok
      iex> EMLX.CommandQueue.info(q).closed
      true
  """
  def close(%__MODULE__{ref: ref}), do: EMLX.NIF.queue_close(ref)

  @doc """
  A map describing `queue`: `:id`, `:device`, `:stream` (MLX stream index),
  `:closed`, `:running` (whether its thread is alive), `:pending` (jobs
  waiting), `:capacity`, and job counters: `:completed`, `:failed`,
  `:dropped` (skipped because the caller had exited), `:cancelled` (answered
  with an error because the queue closed first), `:busy_ns` (time spent
  running jobs) and `:inline` (how many of the completed and failed ones
  were small graphs evaluated right in the calling process's NIF, the queue
  being idle), and `:evaluates_inline`, whether this queue does that (CPU
  queues do, except in builds where MLX has a GPU or with
  `EMLX_CPU_STREAM_THREADS=1`; see the README).

      iex> q = EMLX.CommandQueue.new!(:cpu)
      iex> EMLX.CommandQueue.synchronize(q)
      iex> info = EMLX.CommandQueue.info(q)
      iex> {info.completed, info.failed, info.running}
      {1, 0, true}
  """
  def info(%__MODULE__{ref: ref}), do: EMLX.NIF.queue_info(ref)

  @doc """
  Runs `fun` with `queue` bound to the calling process: ops it builds are
  recorded on `queue`'s stream. Nestable: the innermost binding wins, and
  the previous one is restored when `fun` returns or raises.

      iex> q = EMLX.CommandQueue.new!(:cpu)
      iex> t = EMLX.CommandQueue.with_queue(q, fn -> EMLX.ones({2}, :float32, :cpu) end)
      iex> EMLX.NIF.tensor_queue_id(t) == q.id
      true
  """
  def with_queue(%__MODULE__{} = queue, fun) when is_function(fun, 0) do
    previous = Process.put(@bound, queue)

    try do
      fun.()
    after
      if previous, do: Process.put(@bound, previous), else: Process.delete(@bound)
    end
  end

  @doc false
  # The queue bound to the calling process, if any.
  def bound, do: Process.get(@bound)

  @doc false
  # The queue resource ops on `device` are built on, for the calling process.
  def current(device) do
    case Process.get(@bound) do
      %__MODULE__{ref: ref} -> ref
      nil -> default(device)
    end
  end

  @doc false
  def default(device) do
    case :persistent_term.get({__MODULE__, device}, nil) do
      nil -> no_queue!(device)
      ref -> ref
    end
  end

  # Without its native library EMLX never started its queues: say why.
  defp no_queue!(device) do
    case EMLX.NIF.load_error() do
      nil -> raise ArgumentError, no_queue_message(device)
      reason -> raise EMLX.NIFError, EMLX.NIF.explain_load_error(reason)
    end
  end

  defp no_queue_message(:gpu),
    do: "no GPU queue: this MLX build has no GPU (use device: :cpu, or build with EMLX_MLX_VARIANT=cuda)"

  defp no_queue_message(device) when device in [:cpu],
    do: "EMLX is not started: start the :emlx application (Application.ensure_all_started(:emlx))"

  defp no_queue_message(device),
    do: "unknown device #{inspect(device)}: expected :cpu or :gpu"
end
