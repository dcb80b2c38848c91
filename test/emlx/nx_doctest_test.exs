if Code.ensure_loaded?(Nx) do
  defmodule EMLX.NxDoctestTest do
    use ExUnit.Case, async: false
    @moduletag :nx

    setup_all do
      previous = Application.get_env(:emlx, :inspect_device)
      Application.put_env(:emlx, :inspect_device, false)
      on_exit(fn -> Application.put_env(:emlx, :inspect_device, previous) end)
    end

    setup do
      Nx.default_backend({EMLX.Backend, device: :cpu})
      :ok
    end

    doctest Nx
    doctest Nx.LinAlg
  end
end
