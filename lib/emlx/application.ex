defmodule EMLX.Application do
  @moduledoc false
  use Application
  require Logger

  @impl true
  def start(_type, _args) do
    # MLX's CPU backend compiles kernels through popen/pclose, which needs
    # the default SIGCHLD disposition (the BEAM ignores the signal).
    :os.set_signal(:sigchld, :default)
    EMLX.Native.gpu_poll_window()

    # Programs compiled by `compiler: EMLX` (EMLX.Defn), by function and
    # input signature.
    :ets.new(EMLX.Defn.Cache, [:named_table, :public, :set, read_concurrency: true])

    case EMLX.NIF.load_error() do
      nil ->
        EMLX.CommandQueue.start_defaults()
        warn_generic_blas(EMLX.blas_info())

      reason ->
        Logger.error(EMLX.NIF.explain_load_error(reason) <> " EMLX calls will raise.")
    end

    Supervisor.start_link([], strategy: :one_for_one, name: EMLX.Supervisor)
  end

  # An OpenBLAS older than 0.3.25 (Debian bookworm's 0.3.21, with
  # EMLX_BLAS=system) runs its generic Prescott kernels on Intel models it
  # does not know (Emerald and Granite Rapids, recent desktop parts): matmul
  # 5-10x slower than it should be. Say so, and what to do, whenever an
  # AVX2 CPU runs pre-AVX kernels.
  @sse_cores ~w(Prescott Katmai Coppermine Northwood Banias Core2 Penryn Dunnington Nehalem Atom)

  defp warn_generic_blas(%{core: core, kind: kind}) when core in @sse_cores do
    if cpu_flag?("avx2") do
      advice =
        case System.get_env("OPENBLAS_CORETYPE") do
          nil ->
            "set OPENBLAS_CORETYPE (SkylakeX for AVX-512 CPUs, Haswell for AVX2), " <>
              "or build EMLX with the default EMLX_BLAS=wheel (a newer OpenBLAS)"

          forced ->
            "OPENBLAS_CORETYPE=#{forced} selects them: unset it to let OpenBLAS choose"
        end

      Logger.warning(
        "EMLX: #{kind} runs its pre-AVX #{core} kernels on this AVX2 CPU " <>
          "(matmul several times slower than it can be): #{advice}"
      )
    end
  end

  defp warn_generic_blas(_info), do: :ok

  defp cpu_flag?(flag) do
    case File.read("/proc/cpuinfo") do
      {:ok, info} ->
        info |> String.split("\n") |> Enum.any?(&(String.starts_with?(&1, "flags") and &1 =~ ~r/\b#{flag}\b/))

      _ ->
        false
    end
  end

  @impl true
  def prep_stop(state) do
    if EMLX.NIF.load_error() == nil, do: EMLX.CommandQueue.stop_defaults()
    state
  end
end
