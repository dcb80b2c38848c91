# EMLX quickstart: real work on MLX through the Rust NIF, checked as it goes.
#
#   bin/dev mix run examples/quickstart.exs
#
# Part 1 uses the low-level EMLX functions (no Nx needed); part 2 runs an Nx
# program on EMLX.Backend when Nx is available.

defmodule Quickstart do
  def f32(list), do: for(x <- list, into: <<>>, do: <<x::float-32-native>>)
  def floats(bin), do: for(<<x::float-32-native <- bin>>, do: x)

  def time(fun) do
    {us, value} = :timer.tc(fun)
    {us / 1000, value}
  end
end

n = 1024
IO.puts("EMLX quickstart on #{EMLX.default_device()} (MLX via Rust NIF)\n")

# A deterministic n x n matrix a[i][j] = ((i * 7 + j * 3) mod 11 - 5) / 4 and
# the identity-plus-ones matrix b = I + 1: a @ b = a + row sums of a.
a_list = for i <- 0..(n - 1), j <- 0..(n - 1), do: (rem(i * 7 + j * 3, 11) - 5) / 4
a = EMLX.from_blob(Quickstart.f32(a_list), {n, n}, :float32, :cpu)
b = EMLX.add(EMLX.eye(n, n, :float32, :cpu), EMLX.full(1.0, {n, n}, :float32, :cpu))

{ms, c} = Quickstart.time(fn -> c = EMLX.tensordot(a, b, [1], [0]); EMLX.eval(c); c end)
gflops = 2 * n * n * n / (ms / 1000) / 1.0e9
IO.puts("matmul #{n}x#{n} f32: #{Float.round(ms, 1)} ms (#{Float.round(gflops, 1)} GFLOP/s, first call)")

{ms, c2} = Quickstart.time(fn -> c = EMLX.tensordot(a, b, [1], [0]); EMLX.eval(c); c end)
IO.puts("matmul #{n}x#{n} f32: #{Float.round(ms, 1)} ms (#{Float.round(2 * n * n * n / (ms / 1000) / 1.0e9, 1)} GFLOP/s, warm)")

# Check row 0 against the identity: c[0][j] = a[0][j] + sum(a[0]).
row0 = Enum.take(a_list, n)
expected = Enum.map(row0, &(&1 + Enum.sum(row0)))
got = c |> EMLX.to_blob(n) |> Quickstart.floats()
max_err = Enum.zip(got, expected) |> Enum.map(fn {x, y} -> abs(x - y) end) |> Enum.max()
IO.puts("  row 0 checked against a + rowsum(a): max abs error #{max_err}")
true = max_err < 1.0e-3
true = EMLX.to_blob(c) == EMLX.to_blob(c2)

# A lazy element-wise chain, evaluated once: sum(exp(x) * y + z) over 4M f32
# (summed per row of 2048 first, so every partial sum is exact in f32).
m = 4 * 1024 * 1024
x = EMLX.full(0.0, {m}, :float32, :cpu)
y = EMLX.full(2.0, {m}, :float32, :cpu)
z = EMLX.full(0.5, {m}, :float32, :cpu)
{ms, total} =
  Quickstart.time(fn ->
    EMLX.add(EMLX.multiply(EMLX.exp(x), y), z)
    |> EMLX.reshape({2048, 2048})
    |> EMLX.sum([1], false)
    |> EMLX.sum([0], false)
    |> EMLX.item()
  end)

IO.puts("sum(exp(x) * y + z) over #{m} f32: #{total} (expected #{2.5 * m}) in #{Float.round(ms, 1)} ms")
true = total == 2.5 * m

if Code.ensure_loaded?(EMLX.Backend) do
  IO.puts("\nNx on EMLX.Backend:")
  Nx.default_backend(EMLX.Backend)
  t = Nx.iota({3, 4}, type: :f32)
  softmax = Nx.exp(t) |> Nx.divide(Nx.sum(Nx.exp(t), axes: [1], keep_axes: true))
  IO.inspect(softmax, label: "softmax of iota({3, 4})")
  IO.inspect(Nx.sum(softmax, axes: [1]), label: "row sums (all 1.0)")
else
  IO.puts("\n(Nx is not available here: the Nx part of the quickstart is skipped)")
end

IO.puts("\nMLX memory: #{inspect(EMLX.memory_info())}")
