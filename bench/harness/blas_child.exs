# Run by Bench.Blas in a second BEAM whose :emlx application directory holds
# the NIF built with EMLX_NO_OPENBLAS=1. Answers Bench.Driver's line
# protocol for one workload, the f32 matmul:
#   setup KEY N     -> "ok"          (builds two NxN f32 operands)
#   run KEY INNER   -> "ok <ns>"     (INNER matmuls, each evaluated)
#   quit
{:ok, _} = Application.ensure_all_started(:emlx)
Code.ensure_loaded!(EMLX)

defmodule Bench.BlasChild do
  def loop(state) do
    case IO.read(:stdio, :line) do
      :eof ->
        :ok

      {:error, _} ->
        :ok

      line ->
        case String.split(String.trim(line)) do
          ["quit"] ->
            :ok

          ["setup", key, n] ->
            n = String.to_integer(n)
            a = wave(n * n) |> EMLX.reshape({n, n})
            b = EMLX.cos(a)
            EMLX.eval(a)
            EMLX.eval(b)
            mm(a, b) |> EMLX.eval()
            IO.puts("ok")
            loop(Map.put(state, key, {a, b}))

          ["run", key, inner] ->
            {a, b} = Map.fetch!(state, key)
            :erlang.garbage_collect()
            t0 = System.monotonic_time(:nanosecond)
            for _ <- 1..String.to_integer(inner), do: mm(a, b) |> EMLX.eval()
            IO.puts("ok #{System.monotonic_time(:nanosecond) - t0}")
            loop(state)

          other ->
            IO.puts("error unknown request #{inspect(other)}")
            loop(state)
        end
    end
  end

  # The same call and operands as bench/harness/workloads.exs: sin(i * 0.001).
  defp mm(a, b) do
    if function_exported?(EMLX, :matmul, 2),
      do: apply(EMLX, :matmul, [a, b]),
      else: EMLX.tensordot(a, b, [1], [0])
  end

  defp wave(n) do
    EMLX.arange(0, n, 1, false, :cpu)
    |> EMLX.multiply(EMLX.scalar_tensor(0.001, :float32, :cpu))
    |> EMLX.sin()
  end
end

blas = if File.read!("/proc/self/maps") =~ "libopenblas", do: "openblas", else: "none"
IO.puts("ready blas=#{blas} nif=#{:code.priv_dir(:emlx)}")
Bench.BlasChild.loop(%{})
