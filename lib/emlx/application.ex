defmodule EMLX.Application do
  @moduledoc false
  use Application
  require Logger

  @impl true
  def start(_type, _args) do
    # MLX's CPU backend compiles kernels through popen/pclose, which needs
    # the default SIGCHLD disposition (the BEAM ignores the signal).
    :os.set_signal(:sigchld, :default)

    # Programs compiled by `compiler: EMLX` (EMLX.Defn), by function and
    # input signature.
    :ets.new(EMLX.Defn.Cache, [:named_table, :public, :set, read_concurrency: true])

    case EMLX.NIF.load_error() do
      nil ->
        EMLX.CommandQueue.start_defaults()

      reason ->
        Logger.error(EMLX.NIF.explain_load_error(reason) <> " EMLX calls will raise.")
    end

    Supervisor.start_link([], strategy: :one_for_one, name: EMLX.Supervisor)
  end

  @impl true
  def prep_stop(state) do
    if EMLX.NIF.load_error() == nil, do: EMLX.CommandQueue.stop_defaults()
    state
  end
end
