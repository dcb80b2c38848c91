if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.AccurateSumTest do
    # Floating-point sums stay accurate to about sqrt(n) * eps (relative to
    # the sum of magnitudes) however long: MLX's CPU kernels add
    # sequentially, and EMLX stages them (ops/staged.cc). Oracles: the exact
    # sum of the same float32 values, computed in Elixir in float64, and
    # closed forms; the reductions inside means, log-sum-exp, softmax,
    # variance and EMLX.Fast's norms are checked on inputs whose results are
    # known exactly.
    use EMLX.BackendCase, async: true

    @eps 1.1920929e-7
    # The worst seen is 5 * sqrt(n) * eps: a constant 0.1 over 4096 elements
    # (one sequential run, as short as a run gets before it is staged).
    @c 8

    setup do
      Nx.default_backend({EMLX.Backend, device: :cpu})
      :ok
    end

    defp values(:ones, n), do: List.duplicate(1.0, n)
    defp values(:tenth, n), do: List.duplicate(0.1, n)
    defp values(:ramp, n), do: for(i <- 0..(n - 1), do: :math.sin(i * 2.0 / n))
    defp values(:uniform, n), do: for(_ <- 1..n, do: :rand.uniform())
    defp values(:normal, n), do: for(_ <- 1..n, do: :rand.normal())

    defp f32(list), do: for(x <- list, into: <<>>, do: <<x::float-32-native>>)
    defp floats(bin), do: for(<<x::float-32-native <- bin>>, do: x)

    test "sums of n float32 values, n from 1000 to 10^6, stay within #{@c} * sqrt(n) * eps" do
      :rand.seed(:exsss, {13, 13, 13})

      for n <- [1000, 4096, 4097, 10_000, 100_000, 1_000_000], kind <- [:ones, :tenth, :ramp, :uniform, :normal] do
        bin = f32(values(kind, n))
        xs = floats(bin)
        exact = Enum.sum(xs)
        scale = xs |> Enum.map(&abs/1) |> Enum.sum()
        got = bin |> Nx.from_binary(:f32) |> Nx.sum() |> Nx.to_number()
        assert abs(got - exact) <= @c * :math.sqrt(n) * @eps * scale, "#{kind} x #{n}: #{got}, exact #{exact}"
      end
    end

    describe "the issue's examples (20,000,000 float32 values)" do
      @n 20_000_000

      test "20M ones sum to 20M (not 2^24)" do
        assert Nx.to_number(Nx.sum(Nx.broadcast(Nx.tensor(1.0), {@n}))) == 2.0e7
        # and materialised, and as a mean
        ones = Nx.add(Nx.multiply(Nx.iota({@n}, type: :f32), 0.0), 1.0)
        assert Nx.to_number(Nx.sum(ones)) == 2.0e7
        assert Nx.to_number(Nx.mean(ones)) == 1.0
      end

      test "the sum of sin(i * 1e-7) is within sqrt(n) * eps of the closed form (it was 4.3% off)" do
        # sum_{i<n} sin(i h) = sin(n h / 2) sin((n - 1) h / 2) / sin(h / 2)
        h = 1.0e-7
        exact = :math.sin(@n * h / 2) * :math.sin((@n - 1) * h / 2) / :math.sin(h / 2)
        got = Nx.iota({@n}, type: :f32) |> Nx.multiply(h) |> Nx.sin() |> Nx.sum() |> Nx.to_number()
        assert abs(got - exact) / exact < :math.sqrt(@n) * @eps
      end
    end

    test "sums over one axis of a matrix and over several axes are staged too" do
      # 4096 rows of 5000 tenths, summed along each axis and over all.
      x = Nx.broadcast(Nx.tensor(0.1, type: :f32), {4096, 5000})
      row = Nx.sum(x, axes: [1]) |> Nx.to_flat_list()
      col = Nx.sum(x, axes: [0]) |> Nx.to_flat_list()
      tenth = 0.10000000149011612
      assert Enum.all?(row, &(abs(&1 - 5000 * tenth) <= @c * :math.sqrt(5000) * @eps * 5000 * tenth))
      assert Enum.all?(col, &(abs(&1 - 4096 * tenth) <= @c * :math.sqrt(4096) * @eps * 4096 * tenth))
      total = Nx.to_number(Nx.sum(x))
      assert abs(total - 4096 * 5000 * tenth) <= :math.sqrt(4096 * 5000) * @eps * 4096 * 5000 * tenth
    end

    test "half-precision sums and products accumulate in float32" do
      # 300 bfloat16 ones summed in bfloat16 stop at 256; 3000 float16 ones at 2048.
      assert Nx.to_number(Nx.sum(Nx.broadcast(Nx.tensor(1.0, type: :bf16), {300}))) == 300.0
      assert Nx.to_number(Nx.sum(Nx.broadcast(Nx.tensor(1.0, type: :f16), {3000}))) == 3000.0
      # 1.001^1000 = 2.7169... : each float16 step would round away most of the 0.001.
      p = Nx.product(Nx.broadcast(Nx.tensor(1.001, type: :f32) |> Nx.as_type(:f16), {1000})) |> Nx.to_number()
      base = Nx.tensor(1.001, type: :f16) |> Nx.to_number()
      assert abs(p - :math.pow(base, 1000)) / :math.pow(base, 1000) < 2.0e-3
    end

    test "float32 products stay within about sqrt(n) * eps" do
      :rand.seed(:exsss, {7, 7, 7})
      bin = f32(for _ <- 1..100_000, do: 1.0 + (:rand.uniform() - 0.5) * 1.0e-4)
      exact = bin |> floats() |> Enum.reduce(1.0, &(&1 * &2))
      got = bin |> Nx.from_binary(:f32) |> Nx.product() |> Nx.to_number()
      assert abs(got - exact) / exact < 4 * :math.sqrt(100_000) * @eps
    end

    describe "the reductions inside composed functions over long axes" do
      @n 20_000_000

      test "log-sum-exp, softmax, variance and standard deviation" do
        zeros = Nx.broadcast(Nx.tensor(0.0), {@n})
        assert_in_delta Nx.to_number(Nx.logsumexp(zeros)), :math.log(@n), 1.0e-5

        # softmax = exp(x - max) / sum(exp(x - max)): 1 / n each.
        e = Nx.exp(Nx.subtract(zeros, Nx.reduce_max(zeros)))
        softmax = Nx.divide(e, Nx.sum(e))
        assert_in_delta Nx.to_number(softmax[0]) * @n, 1.0, 1.0e-5

        # 0.1 and 0.3 alternating: mean 0.2, variance 0.01.
        # (As float32: 0.1 and 0.3 are 0.10000000149 and 0.30000001192.)
        x = Nx.tile(Nx.tensor([0.1, 0.3]), [div(@n, 2)])
        bound = :math.sqrt(@n) * @eps
        assert_in_delta Nx.to_number(Nx.mean(x)), 0.2000000067, 0.2 * bound
        assert_in_delta Nx.to_number(Nx.variance(x)), 0.0100000005, 0.01 * bound
        assert_in_delta Nx.to_number(Nx.standard_deviation(x)), 0.1000000025, 0.1 * bound
      end

      test "EMLX.Fast's rms_norm and layer_norm over rows longer than MLX's sequential runs" do
        n = 4_194_304
        tenths = EMLX.full(0.1, {1, n}, :float32, :cpu)
        w = EMLX.full(1.0, {n}, :float32, :cpu)
        # x / rms(x) = 1 for a constant x.
        rms = EMLX.fast_rms_norm(tenths, w, 0.0) |> EMLX.to_blob() |> floats()
        assert Enum.all?(Enum.take(rms, 3) ++ Enum.take(rms, -3), &(abs(&1 - 1.0) < 1.0e-4))

        pair = EMLX.from_blob(f32([0.1, 0.3]), {1, 1, 2}, :float32, :cpu)
        alternating = pair |> EMLX.broadcast_to({1, div(n, 2), 2}) |> EMLX.reshape({1, n})
        ln = EMLX.fast_layer_norm_no_bias(alternating, w, 0.0) |> EMLX.to_blob() |> floats()
        assert Enum.all?(Enum.zip(Enum.take(ln, 4), [-1.0, 1.0, -1.0, 1.0]), fn {a, b} -> abs(a - b) < 1.0e-3 end)
      end
    end
  end
end
