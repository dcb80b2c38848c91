defmodule EMLX.OpTableTest do
  # The Elixir op table (lib/emlx/ops/) and the native one
  # (native/bridge/ops/) must declare the same ops, once each.
  use ExUnit.Case, async: true

  test "every Elixir op exists natively and every native op is exposed" do
    elixir = Enum.map(EMLX.Ops.table(), fn {name, _, _, _} -> Atom.to_string(name) end)
    native = EMLX.NIF.op_names()
    assert Enum.sort(Enum.uniq(elixir)) == Enum.sort(native)
    assert length(Enum.uniq(native)) == length(native)
  end

  test "every table entry is an exported, documented EMLX function" do
    Code.ensure_loaded!(EMLX)
    {:docs_v1, _, _, _, _, _, docs} = Code.fetch_docs(EMLX)

    for {name, params, _doc, _opts} <- EMLX.Ops.table() do
      arity = length(params)
      assert function_exported?(EMLX, name, arity), "EMLX.#{name}/#{arity} is not exported"

      assert Enum.any?(docs, fn
               {{:function, ^name, ^arity}, _, _, %{"en" => text}, _} -> text != ""
               _ -> false
             end),
             "EMLX.#{name}/#{arity} has no @doc"
    end
  end
end
