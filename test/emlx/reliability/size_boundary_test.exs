if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Reliability.SizeBoundaryTest do
    # MLX's 32-bit limits (native/bridge/limits.cc, ops/staged.cc), swept
    # just below and above 2^31 elements, at 2^31 bytes, and past 2^32
    # elements. The tensors are broadcast views of a small row (or column),
    # so the tests need next to no memory: every value is known by formula,
    # which is the oracle (element [i, j] of a row view is j, of a column
    # view i). An operation EMLX cannot compute right past the limit must
    # raise ArgumentError before evaluating.
    #
    # The reductions over 2^31+ elements are real work (seconds each); they
    # run on a queue of their own, so the rest of the suite goes on.
    use ExUnit.Case, async: true

    @moduletag :nx
    @moduletag timeout: 600_000

    @two31 2_147_483_648
    @two32 4_294_967_296

    # {rows, cols}: just below 2^31 elements, exactly 2^31, just above, past 2^32.
    @below {46_340, 46_341}
    @at {32_768, 65_536}
    @above {46_341, 46_341}
    @past32 {65_537, 65_537}

    setup_all do
      q = EMLX.CommandQueue.new!(:cpu, owner: nil)
      on_exit(fn -> EMLX.CommandQueue.close(q) end)
      %{q: q}
    end

    setup do
      Nx.default_backend({EMLX.Backend, device: :cpu})
      :ok
    end

    # Runs the test body with every op built on the suite's own queue.
    defmacrop on_queue(ctx, do: body) do
      quote do
        EMLX.CommandQueue.with_queue(unquote(ctx).q, fn -> unquote(body) end)
      end
    end

    # Element [i, j] = j (type `type`).
    defp rows({rows, cols}, type \\ :s64), do: Nx.broadcast(Nx.iota({cols}, type: type), {rows, cols})
    # Element [i, j] = i.
    defp cols({rows, cols}, type \\ :s64), do: Nx.broadcast(Nx.iota({rows, 1}, type: type), {rows, cols})

    defp refused?(fun) do
      {us, result} = :timer.tc(fn -> try do: {:ok, fun.()}, rescue: (e in ArgumentError -> {:raised, e.message}) end)
      # Refused before evaluation: an answer within a second, not after
      # minutes of work (or a crash) on 2^31 elements.
      assert us < 1_000_000, "took #{div(us, 1000)} ms"
      match?({:raised, _}, result) and elem(result, 1) =~ "2^31"
    end

    test "the shapes sit where they should" do
      size = fn {r, c} -> r * c end
      assert size.(@below) < @two31 and size.(@below) > @two31 - 50_000
      assert size.(@at) == @two31
      assert size.(@above) > @two31 and size.(@above) < @two31 + 5_000
      assert size.(@past32) > @two32
    end

    describe "views past 2^31 and 2^32 elements read right, at any offset" do
      for {name, shape} <- [below: @below, at: @at, above: @above, past32: @past32] do
        @shape shape
        test "slices, reversals, transposes, split reshapes and gathers (#{name})", ctx do
          on_queue ctx do
            {r, c} = @shape
            t = rows(@shape)
            assert Nx.to_flat_list(Nx.slice(t, [r - 1, c - 3], [1, 3])) == [c - 3, c - 2, c - 1]
            assert Nx.to_flat_list(Nx.slice(Nx.reverse(t), [0, 0], [1, 2])) == [c - 1, c - 2]
            assert Nx.to_flat_list(Nx.slice(Nx.transpose(cols(@shape)), [c - 1, r - 2], [1, 2])) == [r - 2, r - 1]
            split = Nx.reshape(cols(@shape), {r, 1, c})
            assert Nx.to_flat_list(Nx.slice(split, [r - 1, 0, c - 1], [1, 1, 1])) == [r - 1]
            picked = Nx.gather(t, Nx.tensor([[r - 1, c - 1], [r - 2, 0], [0, c - 2]]))
            assert Nx.to_flat_list(picked) == [c - 1, 0, c - 2]

            assert Nx.to_flat_list(Nx.take(cols(@shape), Nx.tensor([r - 1]), axis: 0) |> Nx.slice([0, 0], [1, 2])) == [
                     r - 1,
                     r - 1
                   ]

            # The last two rows summed along the row: 2 * (0 + ... + c - 1).
            assert Nx.to_number(Nx.sum(Nx.slice(t, [r - 2, 0], [2, c]))) == c * (c - 1)
          end
        end
      end
    end

    describe "operations MLX would compute wrong past 2^31 elements are refused before evaluating" do
      @big {2, 1_073_741_825}

      test "element-wise results, scans, sorts, selects, concatenation, padding, convolution", ctx do
        on_queue ctx do
          t = cols(@big, :u8)

          for {what, fun} <- [
                add: fn -> Nx.add(t, 1) end,
                compare: fn -> Nx.greater(t, 3) end,
                select: fn -> Nx.select(Nx.greater(t, 3), t, 0) end,
                cumulative_sum: fn -> Nx.cumulative_sum(t, axis: 1) end,
                sort: fn -> Nx.sort(t, axis: 1) end,
                argsort: fn -> Nx.argsort(t, axis: 1) end,
                concatenate: fn -> Nx.concatenate([t, t], axis: 0) end,
                pad: fn -> Nx.pad(t, 0, [{0, 1, 0}, {0, 0, 0}]) end,
                put_slice: fn -> Nx.put_slice(t, [0, 0], Nx.tensor([[7]], type: :u8)) end,
                conv: fn ->
                  x = Nx.reshape(Nx.as_type(t, :f32), {1, 1, 2, 1_073_741_825})
                  Nx.conv(x, Nx.broadcast(1.0, {1, 1, 1, 1})) |> Nx.reshape(@big)
                end
              ] do
            assert refused?(fn -> fun.() |> Nx.slice([0, 0], [1, 2]) |> Nx.to_flat_list() end),
                   "#{what} was not refused"
          end
        end
      end

      test "the same operations just below the limit are not refused by it", ctx do
        on_queue ctx do
          # (Evaluated on small slices of the operand, so no 2^31-element result is made.)
          t = rows(@below, :u8)
          assert Nx.to_flat_list(Nx.add(Nx.slice(t, [0, 0], [1, 3]), 1)) == [1, 2, 3]
          assert Nx.to_flat_list(Nx.cumulative_sum(Nx.slice(t, [7, 0], [1, 4]), axis: 1)) == [0, 1, 3, 6]
        end
      end
    end

    describe "reductions over 2^31+ elements are computed right (staged below MLX's 32-bit counts)" do
      test "an integer sum just below 2^31 elements, and the issue's 50000 x 50000", ctx do
        on_queue ctx do
          {r, c} = @below
          assert Nx.to_number(Nx.sum(rows(@below))) == r * div(c * (c - 1), 2)
          assert Nx.to_number(Nx.sum(rows({50_000, 50_000}))) == 50_000 * div(50_000 * 49_999, 2)
        end
      end

      test "a float32 sum of exactly 2^31 elements, within sqrt(n) * eps", ctx do
        on_queue ctx do
          {r, c} = @at
          exact = r * div(c * (c - 1), 2)
          sum = Nx.to_number(Nx.sum(rows(@at, :f32)))
          assert abs(sum - exact) / exact < :math.sqrt(@two31) * 1.2e-7
          # (Not Nx.mean: Nx itself divides by the element count as an s32
          # constant, which wraps to -2^31 here, on Nx.BinaryBackend too.)
        end
      end

      test "argmax, max and any just above 2^31 elements", ctx do
        on_queue ctx do
          {r, c} = @above
          # The maximum c - 1 first appears in row 0; the last row holds the column view's maximum.
          assert Nx.to_number(Nx.argmax(rows(@above), type: :s64)) == c - 1
          assert Nx.to_number(Nx.argmax(cols(@above), type: :s64)) == (r - 1) * c
          assert Nx.to_number(Nx.argmax(cols(@above), type: :s64, tie_break: :high)) == r * c - 1
          assert Nx.to_number(Nx.reduce_max(rows(@above))) == c - 1
          zeros = Nx.broadcast(Nx.multiply(Nx.iota({c}, type: :u8), 0), @above)
          assert Nx.to_number(Nx.any(zeros)) == 0
        end
      end

      test "a sum and an argmin past 2^32 elements", ctx do
        on_queue ctx do
          {r, c} = @past32
          assert Nx.to_number(Nx.sum(rows(@past32))) == r * div(c * (c - 1), 2)
          # The minimum 0 of the reversed column view is in its last row: an index past 2^32.
          reversed = Nx.broadcast(Nx.reverse(Nx.iota({r, 1}, type: :s64)), @past32)
          assert Nx.to_number(Nx.argmin(reversed, type: :s64)) == (r - 1) * c
        end
      end
    end

    @tag :large_memory
    test "to_binary and from_binary just above 2^31 bytes", ctx do
      on_queue ctx do
        n = div(@two31, 4) + 1
        bin = Nx.to_binary(Nx.broadcast(Nx.tensor(1.5, type: :f32), {n}))
        assert byte_size(bin) == @two31 + 4
        assert binary_part(bin, @two31, 4) == <<1.5::float-32-native>>
        back = Nx.from_binary(bin, :f32)
        assert Nx.to_flat_list(Nx.slice(back, [n - 2], [2])) == [1.5, 1.5]
      end
    end
  end
end
