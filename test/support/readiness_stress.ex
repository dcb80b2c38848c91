defmodule EMLX.ReadinessStress do
  @moduledoc false
  # Many processes ask about one tensor's readiness, and use it, while its
  # queue thread evaluates it: the reads that used to look at MLX's status
  # from scheduler threads (eval, needs_eval_for, strides, inline reads,
  # ops taking the tensor, releases). Used by the readiness test and, with
  # fewer processes, run under valgrind's helgrind (docs/thread_checking.md).
  #
  # The tensor: the row sums of 64 chained products of a 256x256 matrix of
  # 1/256s, which is its own square exactly in float32, so every row sum is
  # exactly 1.0 (the oracle).

  alias EMLX.CommandQueue

  @n 256

  @doc """
  Runs `rounds` rounds with `processes` readers each; returns the list of
  failures (empty when every read gave the oracle's bytes and nothing raised).
  """
  def run(opts \\ []) do
    processes = Keyword.get(opts, :processes, 32)
    rounds = Keyword.get(opts, :rounds, 10)
    steps = Keyword.get(opts, :steps, 64)
    q = CommandQueue.new!(:cpu)
    other = CommandQueue.new!(:cpu)

    try do
      Enum.flat_map(1..rounds, fn _ -> round(q, other, processes, steps) end)
    after
      Enum.each([q, other], &CommandQueue.close/1)
    end
  end

  @doc "The bytes every read of the tensor must give."
  def oracle, do: for(_ <- 1..@n, into: <<>>, do: <<1.0::float-32-native>>)

  defp shared(q, steps) do
    CommandQueue.with_queue(q, fn ->
      m = EMLX.full(1 / @n, {@n, @n}, :float32, :cpu)
      chain = Enum.reduce(1..steps, m, fn _, acc -> EMLX.tensordot(acc, m, [1], [0]) end)
      EMLX.sum(chain, [1], false)
    end)
  end

  defp round(q, other, processes, steps) do
    t = shared(q, steps)
    parent = self()
    evaluator = spawn_link(fn -> send(parent, {:evaluated, self(), catching(fn -> EMLX.eval(t) end)}) end)

    readers =
      for i <- 1..processes do
        spawn_link(fn -> send(parent, {:read, self(), catching(fn -> reads(t, q, other, i) end)}) end)
      end

    evaluated = receive(do: ({:evaluated, ^evaluator, r} -> r))
    failures = for pid <- readers, do: receive(do: ({:read, ^pid, r} -> r))

    [evaluated | failures]
    |> List.flatten()
    |> Enum.reject(&(&1 == :ok))
  end

  # One reader: a few passes of every readiness-dependent call, each checked.
  defp reads(t, q, other, i) do
    oracle = oracle()

    for pass <- 1..4 do
      _ = EMLX.NIF.needs_eval_for(other.ref, t)
      _ = EMLX.NIF.strides(t)

      # An op taking the tensor, and one that may return it unchanged.
      doubled = CommandQueue.with_queue(q, fn -> EMLX.add(t, t) end)
      same = CommandQueue.with_queue(q, fn -> EMLX.reshape(t, {@n}) end)

      checks =
        case rem(i + pass, 4) do
          0 -> [EMLX.to_blob(t) == oracle]
          1 -> [EMLX.to_blob(same) == oracle, EMLX.item(EMLX.sum(doubled, [0], false)) == 2.0 * @n]
          # Another queue uses it: evaluated there first if it is not ready yet.
          2 -> [EMLX.to_blob(CommandQueue.with_queue(other, fn -> EMLX.subtract(t, t) end)) == zeros()]
          3 -> [EMLX.eval(t) == :ok, EMLX.to_blob(t) == oracle]
        end

      # Drop references so that releases run while the queue works.
      if rem(pass, 2) == 0, do: :erlang.garbage_collect()
      if Enum.all?(checks), do: :ok, else: {:wrong, i, pass, checks}
    end
  end

  defp zeros, do: for(_ <- 1..@n, into: <<>>, do: <<0.0::float-32-native>>)

  defp catching(fun) do
    fun.()
  rescue
    e -> {:raised, Exception.message(e)}
  end
end
