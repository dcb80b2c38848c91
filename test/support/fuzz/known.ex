if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Fuzz.Known do
    @moduledoc false
    # Differences between EMLX.Backend and Nx.BinaryBackend that are
    # understood and documented in docs/known_differences.md (each clause
    # names its section). A mismatch one of these explains is counted, not
    # failed; everything else fails the fuzz test.

    @doc "The documented reason for a mismatch, or nil."
    def classify(_step, _inputs, _expected, _why), do: nil
  end
end
