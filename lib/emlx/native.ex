defmodule EMLX.Native do
  @moduledoc false
  # How Elixir calls the NIF: lazy ops (with the cross-queue rule), and jobs
  # that a command queue answers by message.

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
  def eval(tensors) do
    ref = make_ref()
    :ok = EMLX.NIF.eval(tensors, ref)

    receive do
      {^ref, reply} -> unwrap(reply)
    end
  end

  @doc false
  def item(tensor) do
    ref = make_ref()
    :ok = EMLX.NIF.item(tensor, ref)

    receive do
      {^ref, reply} -> unwrap(reply)
    end
  end

  @doc false
  def to_blob(tensor, limit) do
    ref = make_ref()
    :ok = EMLX.NIF.to_blob(tensor, limit, ref)

    receive do
      {^ref, reply} -> unwrap(reply)
    end
  end

  @doc false
  def tensor_data_ptr(tensor), do: job(&EMLX.NIF.tensor_data_ptr(tensor, &1))

  @doc false
  def tensor_to_shm(tensor, permissions), do: job(&EMLX.NIF.tensor_to_shm(tensor, permissions, &1))

  # Submits a queue job (`submit` gets the reply tag) and waits for its reply.
  defp job(submit) do
    ref = make_ref()
    :ok = submit.(ref)

    receive do
      {^ref, reply} -> unwrap(reply)
    end
  end

  @doc false
  def synchronize(queue) do
    ref = make_ref()
    :ok = EMLX.NIF.queue_synchronize(queue, ref)

    receive do
      {^ref, reply} -> unwrap(reply)
    end
  end

  defp unwrap(:ok), do: :ok
  defp unwrap({:ok, value}), do: value
  defp unwrap({:error, {module, message}}), do: raise(module, message)
end
