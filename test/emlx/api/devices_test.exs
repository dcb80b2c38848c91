defmodule EMLX.API.DevicesTest do
  # Behaviour that depends on the device and on the MLX build, checked on
  # every device this build has (the CPU, and the GPU of a CUDA or Metal
  # build) whatever EMLX_TEST_DEVICE says. Oracles: sums and DFTs computed
  # here in Elixir, list indexing, and /proc/meminfo.
  use ExUnit.Case, async: true
  import EMLX.APIHelpers

  @devices if EMLX.NIF.gpu_available(), do: [:cpu, :gpu], else: [:cpu]

  # The DFT of a list of reals (or {re, im}), over n points (cropped or zero-padded).
  defp dft(xs, n) do
    xs = xs |> Enum.take(n) |> then(&(&1 ++ List.duplicate(0.0, n - length(&1))))

    for k <- 0..(n - 1) do
      xs
      |> Enum.with_index()
      |> Enum.reduce({0.0, 0.0}, fn {x, j}, {re, im} ->
        a = -2 * :math.pi() * k * j / n
        {re + x * :math.cos(a), im + x * :math.sin(a)}
      end)
    end
  end

  # The 2-D DFT of a matrix of reals.
  defp dft2(rows) do
    {n1, n2} = {length(rows), length(hd(rows))}

    for k1 <- 0..(n1 - 1) do
      for k2 <- 0..(n2 - 1) do
        for {row, j1} <- Enum.with_index(rows), {x, j2} <- Enum.with_index(row), reduce: {0.0, 0.0} do
          {re, im} ->
            a = -2 * :math.pi() * (k1 * j1 / n1 + k2 * j2 / n2)
            {re + x * :math.cos(a), im + x * :math.sin(a)}
        end
      end
    end
  end

  # 1-D cross-correlation of one channel: x dilated (d_in - 1 zeros between
  # neighbours), padded, then the kernel (dilated by d_k) slid by `stride`.
  defp conv1d(x, w, stride, {lo, hi}, d_k, d_in) do
    dilated =
      x |> Enum.intersperse(:gap) |> Enum.flat_map(&if(&1 == :gap, do: List.duplicate(0.0, d_in - 1), else: [&1]))

    p = List.duplicate(0.0, lo) ++ dilated ++ List.duplicate(0.0, hi)
    span = (length(w) - 1) * d_k + 1

    for i <- 0..div(length(p) - span, stride) do
      w |> Enum.with_index() |> Enum.map(fn {wk, k} -> wk * Enum.at(p, i * stride + k * d_k) end) |> Enum.sum()
    end
  end

  for device <- @devices do
    describe "on #{device}" do
      # In a build with a GPU, MLX's default device is the GPU, and these ops
      # build helper nodes on the default device's stream (fftn's padding,
      # gather's index broadcast, imag's zeros): on :cpu they failed with
      # "MLX was asked to evaluate a graph on a thread that does not own its
      # command queue's stream".
      test "fft and rfft that crop or zero-pad" do
        d = unquote(device)
        xs = [1.0, 2.0, -1.0, 0.5, 3.0]
        x = tensor(xs, :float32, d)

        for n <- [3, 5, 8] do
          assert_close(EMLX.fft(x, n, 0), dft(xs, n), atol: 1.0e-4)
          assert_close(EMLX.rfft(x, n, 0), Enum.take(dft(xs, n), div(n, 2) + 1), atol: 1.0e-4)
        end

        # two axes: axis 0 zero-padded from 2 to 3, axis 1 cropped from 3 to 2
        grid = tensor([[1.0, 0.0, 2.0], [0.0, -1.0, 1.0]], :float32, d)
        assert_close(EMLX.fft2(grid, [3, 2], [0, 1]), dft2([[1.0, 0.0], [0.0, -1.0], [0.0, 0.0]]), atol: 1.0e-4)
      end

      test "gather with indices that broadcast, from a transposed tensor" do
        d = unquote(device)
        # t[i][j] = 4 * j + i, shape {4, 3}
        t = EMLX.arange(0, 12, 1, true, d) |> EMLX.reshape({3, 4}) |> EMLX.transpose([1, 0])
        rows = tensor([[0], [2], [3]], :int32, d)
        cols = tensor([[0, 2]], :int32, d)
        out = EMLX.gather(t, [rows, cols], [0, 1], [1, 1])
        assert EMLX.shape(out) == {3, 2, 1, 1}
        assert flat(out) == for(r <- [0, 2, 3], c <- [0, 2], do: 4 * c + r)
      end

      test "imag and real of real tensors" do
        d = unquote(device)
        x = tensor([1.5, -2.0, 0.0], :float32, d)
        assert to_list(EMLX.imag(x)) == [0.0, 0.0, 0.0]
        assert to_list(EMLX.real(x)) == [1.5, -2.0, 0.0]
      end

      test "ops built concurrently from many processes on both devices evaluate on their queues" do
        d = unquote(device)
        xs = [1.0, 2.0, 3.0]

        1..16
        |> Task.async_stream(
          fn i ->
            x = tensor(xs, :float32, if(rem(i, 2) == 0, do: d, else: :cpu))
            for _ <- 1..20, do: assert_close(EMLX.fft(x, 4, 0), dft(xs, 4), atol: 1.0e-5)
          end,
          timeout: EMLX.TestDevice.shared_queue_timeout()
        )
        |> Enum.each(fn {:ok, _} -> :ok end)
      end

      # MLX's CUDA convolution ignored input dilation (values that changed
      # from run to run); the GPU path now interleaves the zeros itself.
      test "convolution with input dilation, stable over runs" do
        d = unquote(device)
        xs = [1.0, -2.0, 3.0, 0.5, -1.0, 2.0, 4.0]
        ws = [1.0, 2.0, -1.0]
        x = tensor([Enum.map(xs, &[&1])], :float32, d)
        w = tensor([Enum.map(ws, &[&1])], :float32, d)

        for {stride, pad, d_k, d_in} <- [{1, {0, 0}, 1, 2}, {1, {2, 1}, 1, 3}, {2, {1, 1}, 2, 2}, {1, {0, 0}, 2, 4}] do
          want = conv1d(xs, ws, stride, pad, d_k, d_in) |> Enum.map(&[&1])

          for _run <- 1..3 do
            got = EMLX.conv_general(x, w, [stride], [elem(pad, 0)], [elem(pad, 1)], [d_k], [d_in], 1)
            assert_close(got, [want], EMLX.TestDevice.tf32(atol: 1.0e-5))
          end
        end

        # 2-D, dilated along both axes differently: out = x dilated, a 1x1 kernel of 2
        img = tensor([[[[1.0], [2.0]], [[3.0], [4.0]]]], :float32, d)
        two = tensor([[[[2.0]]]], :float32, d)
        out = EMLX.conv_general(img, two, [1, 1], [0, 0], [0, 0], [1, 1], [2, 3], 1)

        assert to_list(out) == [
                 [[[2.0], [0.0], [0.0], [4.0]], [[0.0], [0.0], [0.0], [0.0]], [[6.0], [0.0], [0.0], [8.0]]]
               ]
      end

      # MLX's GPU scatter refuses 8-byte types (int64, uint64, complex64
      # except sums). Values past 32 bits check that no half is lost.
      test "scatter and scatter_add of 64-bit integers and complex64" do
        d = unquote(device)
        big = 0x1_0000_0001
        idx = tensor([0, 2, 2], :int32, d)

        for type <- [:int64, :uint64] do
          base = tensor([5, 6, 7, 8], type, d)
          upd = tensor([[big], [0xFFFF_FFFF], [1]], type, d)
          assert to_list(EMLX.scatter_add(base, [idx], upd, [0])) == [5 + big, 6, 7 + 0xFFFF_FFFF + 1, 8]

          upd = tensor([[big], [3 * big], [3 * big]], type, d)
          assert to_list(EMLX.scatter(base, [idx], upd, [0])) == [big, 6, 3 * big, 8]
        end

        # duplicates of different updates: one of them wins whole
        base = tensor([0, 0], :int64, d)
        upd = tensor([[0x2_0000_0001], [0x1_0000_0002]], :int64, d)
        [won, 0] = to_list(EMLX.scatter(base, [tensor([0, 0], :int32, d)], upd, [0]))
        assert won in [0x2_0000_0001, 0x1_0000_0002]

        base = tensor([{1.0, 1.0}, {2.0, 0.0}], :complex64, d)
        upd = tensor([[{0.5, -2.0}]], :complex64, d)
        one = tensor([1], :int32, d)
        assert to_list(EMLX.scatter(base, [one], upd, [0])) == [{1.0, 1.0}, {0.5, -2.0}]
        assert to_list(EMLX.scatter_add(base, [one], upd, [0])) == [{1.0, 1.0}, {2.5, -2.0}]
      end

      test "a result larger than the device's memory is refused when the op is built" do
        d = unquote(device)
        memory = EMLX.device_info(d).memory
        assert memory > 0
        n = isqrt(div(memory, 4)) + 2
        where = if d == :cpu, do: "this machine's memory", else: "the GPU's memory"

        assert_raise ArgumentError, ~r/eye: .* would need \d+ bytes, more than #{where} \(#{memory} bytes\)/, fn ->
          EMLX.eye(n, n, :float32, d)
        end

        # one that fits is built (not evaluated)
        assert EMLX.shape(EMLX.eye(n, div(n, 2), :float32, d)) == {n, div(n, 2)}
      end
    end
  end

  test "the CPU's memory is the machine's (MemTotal)" do
    case File.read("/proc/meminfo") do
      {:ok, info} ->
        [_, kb] = Regex.run(~r/MemTotal:\s+(\d+) kB/, info)
        assert_in_delta EMLX.device_info(:cpu).memory, String.to_integer(kb) * 1024, 1_048_576

      {:error, _} ->
        assert EMLX.device_info(:cpu).memory > 0
    end
  end

  test "device_info of an unknown device, or of a GPU this build lacks" do
    assert_raise ArgumentError, ~r/unknown device :tpu/, fn -> EMLX.device_info(:tpu) end

    unless EMLX.NIF.gpu_available() do
      assert_raise ArgumentError, ~r/this MLX build has no GPU/, fn -> EMLX.device_info(:gpu) end
    end
  end

  defp isqrt(n), do: n |> :math.sqrt() |> floor()
end
