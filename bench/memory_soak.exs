# Memory soak: N create / evaluate / drop cycles (default 1,000,000) on the
# default CPU queue, reporting resident memory (VmRSS) and MLX's counters
# before and after. Each cycle copies a tensor in (from_blob), builds a lazy
# add, reads it back (to_blob: evaluation on the queue) and checks the
# bytes, builds a second node that is dropped unevaluated (released on the
# queue thread) and, every other cycle, deallocates the result explicitly
# instead of leaving it to the garbage collector.
#
#     mix run bench/memory_soak.exs            # 1,000,000 cycles
#     mix run bench/memory_soak.exs 200000     # fewer
#
# Exits non-zero if RSS grew by more than the bound (16 MiB) or MLX's active
# memory did not come back to where it started. The :long test
# test/emlx/reliability/memory_soak_test.exs loads this file for MemorySoak.

defmodule MemorySoak do
  @moduledoc false
  @bound 16 * 1024 * 1024

  def bound, do: @bound

  def rss do
    "/proc/self/status"
    |> File.read!()
    |> String.split("\n")
    |> Enum.find_value(fn line ->
      case String.split(line) do
        ["VmRSS:", kb, "kB"] -> String.to_integer(kb) * 1024
        _ -> nil
      end
    end)
  end

  def cycles(0), do: :ok

  def cycles(n) do
    x = rem(n, 1_000_000) * 1.0
    a = EMLX.from_blob(<<x::float-32-native, 2.0::float-32-native>>, {2}, :float32, :cpu)
    b = EMLX.add(a, a)
    y = 2 * x
    <<^y::float-32-native, 4.0::float-32-native>> = EMLX.to_blob(b)
    _unevaluated = EMLX.multiply(b, a)
    if rem(n, 2) == 0, do: :ok = EMLX.deallocate(b)
    cycles(n - 1)
  end

  # Garbage-collects, lets the VM run the resource destructors (they may
  # wait for thread progress) and the queue finish its release jobs.
  defp settle(tries \\ 20) do
    before = EMLX.memory_info().active_memory
    :erlang.garbage_collect()
    Process.sleep(50)
    :ok = EMLX.CommandQueue.synchronize(%EMLX.CommandQueue{ref: EMLX.CommandQueue.default(:cpu)})
    EMLX.clear_cache()
    if tries > 0 and EMLX.memory_info().active_memory != before, do: settle(tries - 1), else: :ok
  end

  defp snapshot(label) do
    settle()
    info = EMLX.memory_info()
    rss = rss()
    IO.puts("#{label}: RSS #{mib(rss)}, MLX active #{info.active_memory} B, cache #{info.cache_memory} B")
    {rss, info.active_memory}
  end

  defp mib(bytes), do: :io_lib.format("~.1f MiB", [bytes / 1_048_576]) |> to_string()

  @doc "Runs `n` cycles and prints the figures; returns {ok?, figures}."
  def run(n) do
    # Warm-up: the allocator's pools, code loading, the queue thread.
    cycles(20_000)
    {rss0, active0} = snapshot("start (after 20,000 warm-up cycles)")
    {us, :ok} = :timer.tc(fn -> cycles(n) end)
    {rss1, active1} = snapshot("end   (after #{n} cycles)")
    growth = rss1 - rss0

    IO.puts(
      "#{n} cycles in #{Float.round(us / 1.0e6, 1)} s (#{Float.round(us / n, 1)} us/cycle); " <>
        "RSS #{if growth >= 0, do: "+", else: "-"}#{mib(abs(growth))} (bound #{mib(@bound)}); " <>
        "MLX active #{active0} -> #{active1} B"
    )

    figures = %{rss_start: rss0, rss_end: rss1, active_start: active0, active_end: active1, us: us}
    {growth <= @bound and active1 <= active0, figures}
  end
end

unless Process.get(:memory_soak_as_library) do
  n =
    case System.argv() do
      [arg | _] -> arg |> String.replace("_", "") |> String.to_integer()
      [] -> 1_000_000
    end

  {ok?, _figures} = MemorySoak.run(n)
  unless ok?, do: System.halt(1)
end
