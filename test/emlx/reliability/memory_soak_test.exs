defmodule EMLX.Reliability.MemorySoakTest do
  # 1,000,000 create / evaluate / drop cycles keep resident memory flat.
  # Minutes long: excluded by default, run with `mix test --only long`.
  # The cycle and the figures are bench/memory_soak.exs's (loaded below).
  use ExUnit.Case, async: false

  @moduletag :long
  @moduletag timeout: :infinity

  Process.put(:memory_soak_as_library, true)
  Code.require_file("../../../bench/memory_soak.exs", __DIR__)
  Process.delete(:memory_soak_as_library)

  test "1,000,000 cycles: RSS grows by at most 16 MiB and MLX's active memory comes back" do
    {ok?, figures} = MemorySoak.run(1_000_000)
    assert figures.rss_end - figures.rss_start <= MemorySoak.bound(), inspect(figures)
    assert figures.active_end <= figures.active_start, inspect(figures)
    assert ok?
  end
end
