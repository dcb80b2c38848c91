defmodule EMLX.QueueHelpers do
  @moduledoc false
  # Helpers for the command-queue tests: submitting jobs without waiting,
  # collecting their replies, a deliberately slow job, and polling.

  alias EMLX.CommandQueue

  @doc """
  Sends a to_blob job for `t`; returns the tag its reply will carry. `t`
  must be unevaluated: an evaluated tensor is read by the NIF itself,
  without a job (see `queued/1`).
  """
  def submit_blob(t) do
    ref = make_ref()
    :ok = EMLX.NIF.to_blob(t, nil, ref)
    ref
  end

  @doc "An unevaluated copy of `t` on queue `q`, so reading it takes a job."
  def queued(q, t), do: CommandQueue.with_queue(q, fn -> EMLX.lazy(fn -> EMLX.copy(t) end) end)

  @doc "Sends an eval job for `t` (which must be unevaluated)."
  def submit_eval(t) do
    ref = make_ref()
    :ok = EMLX.NIF.eval([t], ref)
    ref
  end

  @doc "Sends an item job for `t`."
  def submit_item(t) do
    ref = make_ref()
    :ok = EMLX.NIF.item(t, ref)
    ref
  end

  @doc "Sends a synchronize job to `queue`."
  def submit_sync(%CommandQueue{ref: q}) do
    ref = make_ref()
    :ok = EMLX.NIF.queue_synchronize(q, ref)
    ref
  end

  @doc "The reply to the job tagged `ref` (`:ok`, `{:ok, v}` or `{:error, {mod, msg}}`)."
  def await_reply(ref, timeout \\ 10_000) do
    receive do
      {^ref, reply, ns} when is_integer(ns) -> reply
    after
      timeout -> raise "no reply to job #{inspect(ref)} within #{timeout} ms"
    end
  end

  @doc """
  An unevaluated tensor on `queue` that takes a while to evaluate: a chain of
  1024x1024 float32 matrix products (~60 ms each on a 2-core CPU).
  """
  def slow_tensor(queue, steps \\ 4) do
    CommandQueue.with_queue(queue, fn ->
      a = EMLX.ones({1024, 1024}, :float32, :cpu)
      Enum.reduce(1..steps, a, fn _, x -> EMLX.tensordot(x, a, [1], [0]) end)
    end)
  end

  @doc "int32 tensor of `values` built on `queue`."
  def ints(queue, values) do
    blob = for v <- values, into: <<>>, do: <<v::signed-32-native>>
    CommandQueue.with_queue(queue, fn -> EMLX.from_blob(blob, {length(values)}, :int32, :cpu) end)
  end

  def int_blob(values), do: for(v <- values, into: <<>>, do: <<v::signed-32-native>>)

  @doc "Polls `fun` until it returns true, for up to `timeout` ms."
  def eventually(fun, timeout \\ 5_000) do
    deadline = System.monotonic_time(:millisecond) + timeout
    poll(fun, deadline)
  end

  defp poll(fun, deadline) do
    cond do
      fun.() ->
        true

      System.monotonic_time(:millisecond) > deadline ->
        false

      true ->
        Process.sleep(10)
        poll(fun, deadline)
    end
  end
end
