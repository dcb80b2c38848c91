if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.IndexingTest do
    use EMLX.BackendCase, async: true

    @types [{:s, 32}, {:u, 8}, {:f, 32}, {:f, 64}, {:bf, 16}, {:c, 64}]

    describe "gather" do
      for type <- @types do
        test "on #{inspect(type)}" do
          t = random({3, 4, 2}, unquote(type))
          check(&Nx.gather/2, [t, bin([[0, 1, 1], [2, 3, 0], [1, 0, 1]])])
          check(&Nx.gather(&1, &2, axes: [1]), [t, bin([[3], [0], [2]])])
          check(&Nx.gather(&1, &2, axes: [0, 2]), [t, bin([[[1, 1], [0, 0]], [[2, 1], [0, 0]]], type: :s64)])
        end
      end

      test "indices of every integer type" do
        t = Nx.iota({4, 5}, backend: Nx.BinaryBackend)
        for type <- [:u8, :s8, :u16, :s16, :u32, :u64], do: check(&Nx.gather/2, [t, bin([[1, 2], [3, 4]], type: type)])
      end

      test "out-of-range indices are clamped (never read outside the tensor)" do
        t = emlx(Nx.iota({3, 3}, backend: Nx.BinaryBackend))
        result = Nx.gather(t, Nx.tensor([[5, 0], [-2, 7], [1, 1]]))
        assert Nx.to_flat_list(result) == [6, 2, 4]
      end
    end

    describe "indexed_add and indexed_put" do
      for type <- @types do
        test "on #{inspect(type)}" do
          t = random({3, 4}, unquote(type))
          idx = bin([[0, 1], [2, 3], [0, 1], [1, 0]])
          upd = random({4}, unquote(type), 2)
          # Repeated indices add in another order: within rounding for floats.
          tol = if float?(unquote(type)), do: [atol: 0.02, rtol: 0.01], else: []
          check(&Nx.indexed_add/3, [t, idx, upd], tol)
          # Distinct indices: which of two updates to one place wins is not defined.
          check(&Nx.indexed_put/3, [t, bin([[0, 1], [2, 3], [1, 0]]), Nx.slice(upd, [0], [3])])
          check(&Nx.indexed_add(&1, &2, &3, axes: [1]), [t, bin([[3], [0]]), random({2, 3}, unquote(type), 3)])
          check(&Nx.indexed_put(&1, &2, &3, axes: [0]), [t, bin([[2]]), random({1, 4}, unquote(type), 4)])
        end
      end

      test "types merge and rank-3 targets" do
        t = random({2, 3, 4}, {:s, 16})
        idx = bin([[1, 2, 3], [0, 0, 0], [1, 2, 3]])
        check(&Nx.indexed_add/3, [t, idx, bin([0.5, 1.5, 2.5])])
        check(&Nx.indexed_put(&1, &2, &3, axes: [0, 2]), [t, bin([[1, 0], [0, 3]]), random({2, 3}, {:s, 16}, 5)])
      end

      test "out-of-range updates are dropped" do
        t = emlx(Nx.broadcast(Nx.tensor(0, backend: Nx.BinaryBackend), {3}))
        assert Nx.to_flat_list(Nx.indexed_add(t, Nx.tensor([[1], [5], [-1]]), Nx.tensor([1, 2, 3]))) == [0, 1, 0]
        assert Nx.to_flat_list(Nx.indexed_put(t, Nx.tensor([[2], [3]]), Nx.tensor([7, 8]))) == [0, 0, 7]
      end
    end

    describe "take and take_along_axis" do
      for type <- @types do
        test "on #{inspect(type)}" do
          t = random({3, 4}, unquote(type))
          check(&Nx.take/2, [t, bin([2, 0, 2])])
          check(&Nx.take(&1, &2, axis: 1), [t, bin([[3, 1], [0, 0]], type: :u8)])
          check(&Nx.take_along_axis(&1, &2, axis: 1), [t, bin([[3, 2], [1, 0], [0, 0]])])
          check(&Nx.take_along_axis(&1, &2, axis: 0), [t, bin([[2, 1, 0, 0]])])
        end
      end
    end
  end
end
