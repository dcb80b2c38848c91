defmodule EMLX.CommandQueue do
  @moduledoc """
  Command queues: each is one OS thread that owns one MLX stream.

  Lazy ops are recorded on the stream of the queue that will evaluate them:
  the queue bound to the calling process with `with_queue/2`, otherwise the
  application's default queue for the tensor's device (`:cpu`, and `:gpu`
  where MLX has one). Evaluation, `item` and `to_blob` run on the queue
  that built the tensor and reply to the caller by message, so no BEAM
  scheduler waits on MLX.

  Cross-queue rule: an op whose input is an *unevaluated* tensor of another
  queue first evaluates that input on its own queue, then builds the op on
  the current queue. Evaluated tensors are shared freely.
  """

  defstruct [:ref, :device, :id]

  @type t :: %__MODULE__{ref: reference(), device: :cpu | :gpu, id: pos_integer()}

  @bound {__MODULE__, :bound}

  @doc false
  def start_defaults do
    for device <- [:cpu, :gpu], device == :cpu or EMLX.NIF.gpu_available() do
      :persistent_term.put({__MODULE__, device}, EMLX.NIF.queue_new(device))
    end

    :ok
  end

  @doc """
  Starts a new queue on `device`.

      iex> {:ok, q} = EMLX.CommandQueue.new(:cpu)
      iex> q.device
      :cpu
  """
  def new(device \\ :cpu) do
    {:ok, new!(device)}
  rescue
    e in [ArgumentError, EMLX.NIFError] -> {:error, Exception.message(e)}
  end

  @doc "Like `new/1`, raising on failure."
  def new!(device \\ :cpu)

  def new!(device) when device in [:cpu, :gpu] do
    ref = EMLX.NIF.queue_new(device)
    {id, device, _stream, _closed} = EMLX.NIF.queue_info(ref)
    %__MODULE__{ref: ref, device: device, id: id}
  end

  def new!(device),
    do: raise(ArgumentError, "unknown device #{inspect(device)}: expected :cpu or :gpu")

  @doc """
  Waits until every job sent to `queue` so far has finished.

      iex> q = EMLX.CommandQueue.new!(:cpu)
      iex> EMLX.CommandQueue.synchronize(q)
      :ok
  """
  def synchronize(%__MODULE__{ref: ref}), do: EMLX.Native.synchronize(ref)

  @doc """
  Runs `fun` with `queue` bound to the calling process: ops it builds are
  recorded on `queue`'s stream. Nestable; the previous binding is restored.
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
      nil -> raise ArgumentError, no_queue_message(device)
      ref -> ref
    end
  end

  defp no_queue_message(:gpu),
    do: "no GPU queue: this MLX build has no GPU (use device: :cpu, or build with EMLX_MLX_VARIANT=cuda)"

  defp no_queue_message(device) when device in [:cpu],
    do: "EMLX is not started: start the :emlx application (Application.ensure_all_started(:emlx))"

  defp no_queue_message(device),
    do: "unknown device #{inspect(device)}: expected :cpu or :gpu"
end
