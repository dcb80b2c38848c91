defmodule EMLX.Defn.Trace do
  @moduledoc false
  # The recorder behind `compiler: EMLX`. While a defn function is lowered
  # (EMLX.Defn.Lower), the calling process is tracing: every lazy op that
  # the EMLX functions build (`EMLX.Native.op/3`, the one door to the C++
  # op table) still runs, on stand-in inputs that are never evaluated, so
  # shapes, types and argument errors come out exactly as in eager mode;
  # and it is also written down as a program step `{:op, name, args, outs}`.
  # The steps, with the tensors they read and wrote, are what
  # `EMLX.NIF.program_new/1` turns into a native program (program.rs).
  #
  # So a compiled function runs the very same composition of table ops as
  # `EMLX.Backend` does eagerly: there is no second lowering to keep in step.
  #
  # Steps are kept per block (a stack of frames: loop bodies and branches
  # are blocks of their own). Reading the value of a traced tensor (eval,
  # item, to_blob) is refused: it has no value until the program runs.

  @key {__MODULE__, :state}

  @doc false
  def key, do: @key

  @doc false
  # Runs `fun` with tracing on; returns `{fun's result, steps, callbacks}`
  # (callbacks: id => function, see callback/3).
  def run(fun) do
    previous = Process.put(@key, %{frames: [[]], traced: MapSet.new(), callbacks: %{}})

    try do
      result = fun.()
      %{frames: [steps], callbacks: callbacks} = Process.get(@key)
      {result, Enum.reverse(steps), callbacks}
    after
      if previous, do: Process.put(@key, previous), else: Process.delete(@key)
    end
  end

  @doc false
  # Runs `fun` with a new, empty block on top; returns `{result, steps}`.
  def block(fun) do
    update(fn state -> %{state | frames: [[] | state.frames]} end)
    result = fun.()
    %{frames: [steps | rest]} = state = Process.get(@key)
    Process.put(@key, %{state | frames: rest})
    {result, Enum.reverse(steps)}
  end

  @doc false
  # Records one op of the table (called by EMLX.Native.op/3 with its result).
  def record(name, args, result) do
    outs = if is_list(result), do: result, else: [result]

    update(fn %{frames: [steps | rest], traced: traced} = state ->
      %{state | frames: [[{:op, name, args, outs} | steps] | rest], traced: Enum.into(outs, traced)}
    end)

    result
  end

  @doc false
  # Adds a non-op step (while, cond, hook, check) to the current block.
  def step(step) do
    update(fn %{frames: [steps | rest]} = state -> %{state | frames: [[step | steps] | rest]} end)
  end

  @doc false
  # A callback step: when the program runs, `fun` gets the evaluated arrays
  # of `ins` in the calling process and returns the arrays that become
  # `outs` (stand-ins, see placeholder/3).
  def callback(fun, ins, outs) do
    update(fn %{frames: [steps | rest], callbacks: callbacks} = state ->
      id = map_size(callbacks)
      step = {:callback, id, ins, outs}
      %{state | frames: [[step | steps] | rest], callbacks: Map.put(callbacks, id, fun)}
    end)
  end

  @doc false
  # A stand-in tensor of `shape` and MLX `dtype` on `device` (a program
  # input, a loop's state, a branch's results): a broadcast view of a zero,
  # so it costs no memory; marked traced so its value is never read.
  def placeholder(device, shape, dtype) do
    state = Process.delete(@key)

    ref =
      try do
        EMLX.Native.lazy(fn -> EMLX.broadcast_to(EMLX.scalar_tensor(0, dtype, device), shape) end)
      after
        if state, do: Process.put(@key, state)
      end

    update(fn s -> %{s | traced: MapSet.put(s.traced, ref)} end)
    ref
  end

  @doc false
  def active?, do: Process.get(@key) != nil

  @doc false
  def traced?(ref) do
    case Process.get(@key) do
      nil -> false
      state -> MapSet.member?(state.traced, ref)
    end
  end

  @doc false
  # Raises when `tensors` holds a traced tensor: `what` reads values.
  def check_read!(tensors, what) do
    if Enum.any?(List.wrap(tensors), &traced?/1) do
      raise ArgumentError,
            "#{what} cannot run inside a function compiled with compiler: EMLX: it reads a " <>
              "tensor's values while the function is being compiled, and values exist only " <>
              "when the compiled function runs"
    end
  end

  defp update(fun), do: Process.put(@key, fun.(Process.get(@key)))
end
