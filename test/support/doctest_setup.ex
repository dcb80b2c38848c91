defmodule EMLX.DoctestSetup do
  @moduledoc false
  # Setup shared by the modules that run Nx's own doctests on EMLX.

  @doc "Hides the device line of inspected tensors (Nx's printed examples have none) for the module's tests."
  def hide_inspect_device(_context) do
    previous = Application.get_env(:emlx, :inspect_device)
    Application.put_env(:emlx, :inspect_device, false)
    ExUnit.Callbacks.on_exit(fn -> Application.put_env(:emlx, :inspect_device, previous) end)
    :ok
  end
end
