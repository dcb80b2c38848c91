defmodule EMLX.Native do
  @moduledoc false
  # How Elixir calls the NIF: lazy ops (with the cross-queue rule), and jobs
  # that a command queue answers by message. A job NIF returns at once; the
  # queue thread later sends `{tag, result, run_ns}` to the caller, where
  # `run_ns` is the time the job ran on the queue thread. The `_now` job NIFs
  # may instead evaluate a small graph themselves when the queue is idle
  # (native/src/now.rs) and answer with `:done` tuples, or ask for a garbage
  # collection before a large one (`:collect`).

  @trace EMLX.Defn.Trace.key()
  @lazy {__MODULE__, :lazy}

  @doc false
  # Runs an op on `queue`. Its result is a lazy graph node, except that a
  # tiny result of computed inputs is computed at once when the queue is
  # idle (native/src/ops.rs, `evaluate_tiny`). While a defn function is being
  # compiled (EMLX.Defn.Trace) the op is recorded as a step of its program
  # instead, and its result always stays a node that is never evaluated.
  def op(queue, name, args) do
    case Process.get(@trace) do
      nil ->
        if Process.get(@lazy),
          do: build(&EMLX.NIF.lazy_op/3, queue, name, args),
          else: build(&EMLX.NIF.op/3, queue, name, args)

      _ ->
        EMLX.Defn.Trace.record(name, args, build(&EMLX.NIF.lazy_op/3, queue, name, args))
    end
  end

  @doc false
  # Runs `fun` with every op result kept a lazy graph node (EMLX.lazy/1).
  def lazy(fun) do
    previous = Process.put(@lazy, true)

    try do
      fun.()
    after
      unless previous, do: Process.delete(@lazy)
    end
  end

  # A lazy input built on another queue can only be evaluated by that queue:
  # the NIF raises EMLX.CrossQueueError (its own exception type, so this
  # rescue costs nothing on the normal path and never looks at message
  # text), the input is evaluated on its queue, and the op built again (the
  # documented cross-queue rule, see EMLX.CommandQueue).
  defp build(nif, queue, name, args) do
    nif.(queue, name, args)
  rescue
    EMLX.CrossQueueError ->
      settle(queue, args)
      nif.(queue, name, args)

    e in ArgumentError ->
      check_local!(args)
      reraise e, __STACKTRACE__
  end

  @doc false
  # Runs `fun` (a NIF call on `tensors`); if the NIF refuses its arguments
  # because a tensor was made on another BEAM node, says so.
  def local(tensors, fun) do
    fun.()
  rescue
    e in ArgumentError ->
      check_local!(tensors)
      reraise e, __STACKTRACE__
  end

  @doc false
  # Raises an ArgumentError naming the node when one of the tensors among
  # `terms` (nested lists allowed) belongs to another BEAM node: its MLX
  # array lives in that node's memory, and the reference that reached this
  # node cannot reach it.
  def check_local!(terms) do
    case Enum.find(List.flatten([terms]), &remote?/1) do
      nil -> :ok
      {_device, ref} -> raise ArgumentError, remote_message(node(ref))
    end
  end

  defp remote?({device, ref}) when is_atom(device) and is_reference(ref), do: node(ref) != node()
  defp remote?(_), do: false

  defp remote_message(owner) do
    "this EMLX tensor lives on node #{inspect(owner)}, not on #{inspect(node())}: its MLX array " <>
      "stays in the memory of the node that made it, so it cannot be used here. On #{inspect(owner)}, " <>
      "copy it to a backend that travels before sending it, e.g. " <>
      "Nx.backend_transfer(tensor, Nx.BinaryBackend); for a distributed Nx.Serving, set " <>
      "Nx.Serving.distributed_postprocessing(serving, &Nx.backend_transfer(&1, Nx.BinaryBackend)) " <>
      "for its results, and build inputs on Nx.BinaryBackend (or copy them there in batched_run/3's " <>
      "distributed_preprocessing). On the same machine, Nx.to_pointer(tensor, mode: :ipc) shares it " <>
      "with another node."
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
  # Raises ArgumentError with `message` when the boolean scalar `flag` is
  # true. In a function being compiled the check becomes a program step,
  # made when the compiled function runs (and raising there).
  def check(flag, message) do
    if Process.get(@trace) do
      EMLX.Defn.Trace.step({:check, flag, message})
    else
      if item(flag) not in [false, 0], do: raise(ArgumentError, message)
    end

    :ok
  end

  @doc false
  # Runs a compiled program on `queue` with `inputs`; `{outputs, hooks}`.
  # While it runs, the program may ask this process to run a callback (id
  # => function of a list of arrays, giving a list of arrays). A callback
  # runs with a command queue of its own on `device` bound, so that what it
  # builds never waits behind the program's queue, which is waiting for it.
  def run_program(queue, program, inputs, callbacks \\ %{}, device \\ :cpu) do
    submit = &EMLX.NIF.program_run(queue, program, inputs, &1, &2)

    try do
      program_job(submit, callbacks, device, queue)
    rescue
      # An input that is an unevaluated tensor of another queue (by type).
      EMLX.CrossQueueError ->
        settle(queue, inputs)
        program_job(submit, callbacks, device, queue)
    end
  end

  # A small straight-line program on an idle CPU queue runs in the NIF
  # itself and answers `{:done, result}`. One with large outputs answers
  # `:collect` first: garbage is collected (see collect/0), and it is
  # submitted again.
  defp program_job(submit, callbacks, device, queue, collected \\ false) do
    ref = make_ref()

    case submit.(ref, collected) do
      :ok when callbacks == %{} ->
        case poll(ref, device) do
          {result, _ns} -> result
          nil -> await_program(ref, callbacks, device, queue)
        end

      :ok ->
        await_program(ref, callbacks, device, queue)

      {:done, result} ->
        result

      :collect ->
        collect()
        program_job(submit, callbacks, device, queue, true)
    end
  end

  defp await_program(ref, callbacks, device, queue) do
    receive do
      {:emlx_callback, ^ref, id, arrays, reply} ->
        case run_callback(Map.fetch!(callbacks, id), arrays, device, queue) do
          {:ok, results} ->
            EMLX.NIF.program_callback_reply(reply, results)
            await_program(ref, callbacks, device, queue)

          {:error, exception, stacktrace} ->
            EMLX.NIF.program_callback_reply(reply, {:error, Exception.message(exception)})
            # The program fails at the callback: collect its reply, raise ours.
            receive do
              {^ref, _reply, _ns} -> :ok
            end

            reraise exception, stacktrace
        end

      {^ref, reply, _ns} ->
        unwrap(reply)
    end
  end

  # The program's queue waits for the callback: a callback that needed it
  # to evaluate something would wait forever, so that raises instead.
  @waiting {__MODULE__, :waiting_queue}

  defp run_callback(fun, arrays, device, waiting) do
    queue = EMLX.CommandQueue.new!(device)
    previous = Process.put(@waiting, EMLX.NIF.queue_info(waiting).id)

    try do
      EMLX.CommandQueue.with_queue(queue, fn ->
        results = fun.(arrays)
        Enum.each(results, &eval([&1]))
        {:ok, results}
      end)
    rescue
      e -> {:error, e, __STACKTRACE__}
    after
      if previous, do: Process.put(@waiting, previous), else: Process.delete(@waiting)
      EMLX.CommandQueue.close(queue)
    end
  end

  defp not_waiting!(tensors) do
    with id when id != nil <- Process.get(@waiting) do
      for {_, ref} = t when is_reference(ref) <- List.wrap(tensors),
          EMLX.NIF.tensor_queue_id(t) == id and not EMLX.NIF.tensor_ready(t) do
        raise ArgumentError,
              "a callback of a compiled function (Nx.runtime_call/4) cannot compute a tensor of the " <>
                "command queue that runs the function, which is waiting for the callback; evaluate " <>
                "the tensor before calling the compiled function"
      end
    end

    :ok
  end

  @doc false
  # Evaluates `tensors` on their queue; emits the [:emlx, :eval, _] span.
  def eval(tensors) do
    reading!(tensors, "EMLX.eval/1")

    if EMLX.Telemetry.enabled?() do
      EMLX.Telemetry.span([:emlx, :eval], local(tensors, fn -> eval_metadata(tensors) end), fn ->
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

    case local(tensors, fn -> EMLX.NIF.eval_now(tensors, ref) end) do
      :done ->
        {:ok, 0}

      {:done, ns} ->
        {:ok, ns}

      :ok ->
        await(ref, tensors)

      :collect ->
        collect()

        case local(tensors, fn -> EMLX.NIF.eval(tensors, ref) end) do
          :done -> {:ok, 0}
          :ok -> await(ref, tensors)
        end
    end
  end

  @doc false
  def item(tensor) do
    reading!(tensor, "reading a tensor's value (EMLX.item/1, Nx.to_number/1)")
    value([tensor], &EMLX.NIF.item_now(tensor, &1), &EMLX.NIF.item(tensor, &1))
  end

  @doc false
  # The tensor's bytes; emits the [:emlx, :to_binary, _] span. `nx_type`
  # (the Nx type the bytes stand for, when the caller is EMLX.Backend) and
  # `finish` (turns the array's bytes into the binary returned, such as
  # packing 4-bit integers) belong to the Nx path; the span measures what
  # is returned.
  def to_blob(tensor, limit, nx_type \\ nil, finish \\ &Function.identity/1) do
    reading!(tensor, "reading a tensor's data (EMLX.to_blob/1, Nx.to_binary/1)")

    if EMLX.Telemetry.enabled?() do
      EMLX.Telemetry.span([:emlx, :to_binary], local([tensor], fn -> blob_metadata(tensor, limit, nx_type) end), fn ->
        {binary, ns} = job([tensor], &EMLX.NIF.to_blob_now(tensor, limit, &1), &EMLX.NIF.to_blob(tensor, limit, &1))
        binary = finish.(binary)
        size = byte_size(binary)
        {binary, %{byte_size: size, mlx_duration: to_native(ns)}, %{byte_size: size}}
      end)
    else
      {binary, _ns} = job([tensor], &EMLX.NIF.to_blob_now(tensor, limit, &1), &EMLX.NIF.to_blob(tensor, limit, &1))
      finish.(binary)
    end
  end

  @doc false
  def tensor_data_ptr(tensor) do
    reading!(tensor, "EMLX.tensor_data_ptr/1")
    value([tensor], &EMLX.NIF.tensor_data_ptr(tensor, &1))
  end

  @doc false
  def tensor_to_shm(tensor, permissions) do
    reading!(tensor, "EMLX.tensor_to_shm/2")
    value([tensor], &EMLX.NIF.tensor_to_shm(tensor, permissions, &1))
  end

  defp reading!(tensors, what) do
    if Process.get(@trace), do: EMLX.Defn.Trace.check_read!(tensors, what)
    not_waiting!(tensors)
  end

  @doc false
  def synchronize(queue), do: value([], &EMLX.NIF.queue_synchronize(queue, &1))

  # A job's value, without its timing.
  defp value(tensors, submit, submit_later \\ nil) do
    {value, _ns} = job(tensors, submit, submit_later)
    value
  end

  # Submits a job tagged with a fresh reference and waits for its reply:
  # `{value, run_ns}`, or raises the error the queue reported. A read of an
  # already-evaluated tensor is answered by the NIF itself ({:done, value}),
  # and so is a small graph on an idle CPU queue, evaluated right in the NIF
  # ({:done, value, run_ns}). For a large graph a `_now` NIF answers
  # `:collect` instead: garbage is collected first (see collect/0) and
  # `submit_later` sends the job.
  defp job(tensors, submit, submit_later \\ nil) do
    ref = make_ref()

    case local(tensors, fn -> submit.(ref) end) do
      :ok ->
        await(ref, tensors)

      {:done, value} ->
        {value, 0}

      {:done, value, ns} ->
        {value, ns}

      :collect ->
        collect()
        job(tensors, submit_later)
    end
  end

  # Before a large evaluation: intermediate tensors this process no longer
  # references release their arrays, so that MLX may reuse their buffers in
  # place (it cannot while anything else holds them). A minor collection:
  # such intermediates are young.
  # The VM runs the destructors of the resources a collection drops a little
  # later (after its schedulers next pass a point of progress), and they are
  # what hands the dropped arrays to the queue: yielding once lets them run
  # before the evaluation is sent, so the queue frees those arrays first and
  # MLX can reuse their buffers (measured: 3 buffers of 64 MiB without the
  # yield, 1 with it, for exp(x) * y + z).
  defp collect do
    :erlang.garbage_collect(self(), type: :minor)
    :erlang.yield()
  end

  # No timeout is needed: the reply is guaranteed by the native layer. The
  # job holds the caller's reply handle (queue.rs, ReplyTo), which answers
  # from its destructor if the job is dropped unanswered, so a queue thread
  # that dies (a panic outside any job) answers this job and every waiting
  # one with an error as it unwinds, and a panic while encoding a result is
  # answered with an error too. Only the VM itself going down can leave this
  # receive waiting.
  defp await(ref, tensors) do
    poll(ref, device_of(tensors)) ||
      receive do
        {^ref, reply, ns} -> {unwrap(reply), ns}
      end
  end

  # A GPU job's reply is first looked for without blocking, for up to the
  # poll window (`EMLX_GPU_POLL_US`, default 5000 us, read when EMLX starts;
  # see gpu_poll_window/0): a process blocked in `receive` leaves its
  # scheduler idle, the scheduler goes to sleep, and waking it for the reply
  # costs 5-10 us on an H200 machine for a reply due tens of microseconds
  # later (a tiny add + eval: 36 -> 31 us; raw MLX 22 us), and more once the
  # core has slept longer: with a 200 us window an 8192^2 bf16 matmul took
  # 1.05-1.09x raw MLX's time, with a longer one 1.00-1.02x (same machine,
  # same hour). GPU work leaves the CPU free for this; the loop is
  # preemptible, so other processes still run, and a job longer than the
  # window is then waited for as usual. CPU jobs are not polled for: there
  # the polling scheduler would take a core from the job itself.
  @gpu_poll_key {__MODULE__, :gpu_poll}
  @gpu_poll_default_us 5000

  @doc false
  # Reads EMLX_GPU_POLL_US (microseconds; 0 turns polling off) once, when
  # the application starts.
  def gpu_poll_window do
    us =
      case Integer.parse(System.get_env("EMLX_GPU_POLL_US", "")) do
        {us, ""} when us >= 0 -> min(us, 1_000_000)
        _ -> @gpu_poll_default_us
      end

    :persistent_term.put(@gpu_poll_key, System.convert_time_unit(us, :microsecond, :native))
  end

  defp poll(ref, :gpu) do
    window = :persistent_term.get(@gpu_poll_key, 0)
    if window > 0, do: poll_until(ref, System.monotonic_time() + window)
  end

  defp poll(_ref, _device), do: nil

  defp device_of([{device, _} | _]), do: device
  defp device_of(_tensors), do: nil

  defp poll_until(ref, until) do
    receive do
      {^ref, reply, ns} -> {unwrap(reply), ns}
    after
      0 -> if System.monotonic_time() < until, do: poll_until(ref, until)
    end
  end

  defp unwrap(:ok), do: :ok
  defp unwrap({:ok, value}), do: value
  defp unwrap({:error, {module, message}}), do: raise(module, message)

  defp to_native(ns), do: System.convert_time_unit(ns, :nanosecond, :native)

  defp eval_metadata([{device, _} = first | _] = tensors),
    do: %{device: device, queue: EMLX.NIF.tensor_queue_id(first), count: length(tensors)}

  defp eval_metadata([]), do: %{device: nil, queue: nil, count: 0}

  # `dtype` is the Nx type, as the original EMLX reports it ({:f, 32});
  # `mlx_dtype` the MLX dtype holding it.
  defp blob_metadata({device, _} = tensor, limit, nx_type) do
    mlx = EMLX.NIF.scalar_type(tensor)

    %{
      device: device,
      queue: EMLX.NIF.tensor_queue_id(tensor),
      shape: EMLX.NIF.shape(tensor),
      dtype: nx_type || EMLX.Types.nx_type(mlx),
      mlx_dtype: mlx,
      limit: limit
    }
  end
end
