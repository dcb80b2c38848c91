defmodule EMLX.DoctestTest do
  use ExUnit.Case, async: true

  doctest EMLX
  doctest EMLX.Types
  doctest EMLX.CommandQueue
  doctest EMLX.Telemetry
end
