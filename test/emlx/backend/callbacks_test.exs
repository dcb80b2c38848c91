if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.CallbacksTest do
    use EMLX.BackendCase, async: true

    doctest EMLX.Backend

    test "the dispatch table covers every Nx.Backend callback, once" do
      callbacks = Nx.Backend.behaviour_info(:callbacks) |> Enum.sort()
      table = EMLX.Backend.__sections__() |> Enum.flat_map(fn {_module, funs} -> funs end)
      # init/1 is EMLX.Backend's own; every other callback is in the table.
      assert Enum.sort([{:init, 1} | table]) == callbacks
      assert length(Enum.uniq(table)) == length(table)
      assert length(callbacks) == 115

      for {name, arity} <- callbacks do
        assert function_exported?(EMLX.Backend, name, arity), "EMLX.Backend.#{name}/#{arity} is missing"
      end

      for {module, funs} <- EMLX.Backend.__sections__(), {name, arity} <- funs do
        Code.ensure_loaded!(module)

        assert function_exported?(module, name, arity), "#{inspect(module)}.#{name}/#{arity} is missing"
      end
    end

    test "no callback raises 'not supported' for ordinary input" do
      # One call per callback family that the original EMLX left unimplemented.
      t = emlx(bin([[1, 2], [3, 4]]))
      assert Nx.to_number(Nx.reduce(t, 0, fn a, b -> Nx.add(a, b) end)) == 10
      assert Nx.to_flat_list(Nx.window_reduce(t, 0, {1, 2}, fn a, b -> Nx.max(a, b) end)) == [2, 4]
      assert Nx.to_flat_list(Nx.population_count(t)) == [1, 1, 2, 1]
      assert Nx.to_flat_list(Nx.count_leading_zeros(t)) == [31, 30, 30, 29]
    end
  end
end
