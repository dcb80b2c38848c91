defmodule EMLX.Native do
  @moduledoc false
  # How Elixir calls the NIF: lazy ops (with the cross-queue rule), and jobs
  # that a command queue answers by message. A job NIF returns at once; the
  # queue thread later sends `{tag, result, run_ns}` to the caller, where
  # `run_ns` is the time the job ran on the queue thread. The `_now` job NIFs
  # may instead evaluate a small graph themselves when the queue is idle
  # (native/src/queue.rs, Queue::run_now) and answer with `:done` tuples.

  @doc false
  # Runs a lazy op on `queue`. A lazy input built on another queue can only
  # be evaluated by that queue, so it is evaluated there first and the op
  # retried (the documented cross-queue rule, see EMLX.CommandQueue).
  def op(queue, name, args) do
    EMLX.NIF.op(queue, name, args)
  rescue
    e in ArgumentError ->
      if String.starts_with?(e.message, "#{name}: argument") and e.message =~ "cross_queue:" do
        settle(queue, args)
        EMLX.NIF.op(queue, name, args)
      else
        reraise e, __STACKTRACE__
      end
  end

  defp settle(queue, args) do
    args
    |> List.flatten()
    |> Enum.each(fn
      {dev, ref} = t when is_atom(dev) and is_reference(ref) ->
        if EMLX.NIF.needs_eval_for(queue, t), do: eval([t])

      _ ->
        :ok
    end)
  end

  @doc false
  # Evaluates `tensors` on their queue; emits the [:emlx, :eval, _] span.
  def eval(tensors) do
    if EMLX.Telemetry.enabled?() do
      EMLX.Telemetry.span([:emlx, :eval], eval_metadata(tensors), fn ->
        {:ok, ns} = do_eval(tensors)
        {:ok, %{mlx_duration: to_native(ns)}, %{}}
      end)
    else
      {:ok, _ns} = do_eval(tensors)
      :ok
    end
  end

  defp do_eval(tensors) do
    ref = make_ref()

    case EMLX.NIF.eval_now(tensors, ref) do
      :done ->
        {:ok, 0}

      {:done, ns} ->
        {:ok, ns}

      :ok ->
        await(ref)

      :collect ->
        collect()

        case EMLX.NIF.eval(tensors, ref) do
          :ok -> await(ref)
          :done -> {:ok, 0}
        end
    end
  end

  @doc false
  def item(tensor), do: value(&EMLX.NIF.item_now(tensor, &1), &EMLX.NIF.item(tensor, &1))

  @doc false
  # The tensor's bytes; emits the [:emlx, :to_binary, _] span.
  def to_blob(tensor, limit) do
    if EMLX.Telemetry.enabled?() do
      EMLX.Telemetry.span([:emlx, :to_binary], blob_metadata(tensor, limit), fn ->
        {binary, ns} = job(&EMLX.NIF.to_blob_now(tensor, limit, &1), &EMLX.NIF.to_blob(tensor, limit, &1))
        size = byte_size(binary)
        {binary, %{byte_size: size, mlx_duration: to_native(ns)}, %{byte_size: size}}
      end)
    else
      {binary, _ns} = job(&EMLX.NIF.to_blob_now(tensor, limit, &1), &EMLX.NIF.to_blob(tensor, limit, &1))
      binary
    end
  end

  @doc false
  def tensor_data_ptr(tensor), do: value(&EMLX.NIF.tensor_data_ptr(tensor, &1))

  @doc false
  def tensor_to_shm(tensor, permissions), do: value(&EMLX.NIF.tensor_to_shm(tensor, permissions, &1))

  @doc false
  def synchronize(queue), do: value(&EMLX.NIF.queue_synchronize(queue, &1))

  # A job's value, without its timing.
  defp value(submit, submit_later \\ nil) do
    {value, _ns} = job(submit, submit_later)
    value
  end

  # Submits a job tagged with a fresh reference and waits for its reply:
  # `{value, run_ns}`, or raises the error the queue reported. A read of an
  # already-evaluated tensor is answered by the NIF itself ({:done, value}),
  # and so is a small graph on an idle CPU queue, evaluated right in the NIF
  # ({:done, value, run_ns}). For a large graph a `_now` NIF answers
  # `:collect` instead: garbage is collected first (see collect/0) and
  # `submit_later` sends the job.
  defp job(submit, submit_later \\ nil) do
    ref = make_ref()

    case submit.(ref) do
      :ok ->
        await(ref)

      {:done, value} ->
        {value, 0}

      {:done, value, ns} ->
        {value, ns}

      :collect ->
        collect()
        job(submit_later)
    end
  end

  # Before a large evaluation: intermediate tensors this process no longer
  # references release their arrays, so that MLX may reuse their buffers in
  # place (it cannot while anything else holds them). A minor collection:
  # such intermediates are young.
  defp collect, do: :erlang.garbage_collect(self(), type: :minor)

  defp await(ref) do
    receive do
      {^ref, reply, ns} -> {unwrap(reply), ns}
    end
  end

  defp unwrap(:ok), do: :ok
  defp unwrap({:ok, value}), do: value
  defp unwrap({:error, {module, message}}), do: raise(module, message)

  defp to_native(ns), do: System.convert_time_unit(ns, :nanosecond, :native)

  defp eval_metadata([{device, _} = first | _] = tensors),
    do: %{device: device, queue: EMLX.NIF.tensor_queue_id(first), count: length(tensors)}

  defp eval_metadata([]), do: %{device: nil, queue: nil, count: 0}

  defp blob_metadata({device, _} = tensor, limit) do
    %{
      device: device,
      queue: EMLX.NIF.tensor_queue_id(tensor),
      shape: EMLX.NIF.shape(tensor),
      dtype: EMLX.NIF.scalar_type(tensor),
      limit: limit
    }
  end
end
