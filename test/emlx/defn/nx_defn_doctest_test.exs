if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Defn.NxDefnDoctestTest do
    # Nx's own doctests of Nx.Defn and Nx.Defn.Kernel (and EMLX.Defn's), with
    # `compiler: EMLX` as the default defn compiler and EMLX.Backend as the
    # default backend.
    use ExUnit.Case, async: false
    @moduletag :nx

    setup_all {EMLX.DoctestSetup, :hide_inspect_device}

    setup do
      Nx.default_backend({EMLX.Backend, device: :cpu})
      Nx.Defn.default_options(compiler: EMLX, device: :cpu)
      :ok
    end

    doctest EMLX.Defn
    doctest Nx.Defn

    describe "Nx.Defn.Kernel" do
      use Nx.Defn.Kernel
      doctest Nx.Defn.Kernel
    end
  end
end
