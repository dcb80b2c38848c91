defmodule EMLX.API.BadInputTest do
  # Bad input across the families: each case must raise the named exception
  # with a message a user can act on, and the VM (and its command queue)
  # must keep working afterwards. None of these may crash the VM: several
  # (a zero slice stride, a zero feature group, empty matrices, huge
  # shapes, out-of-bounds as_strided) abort the process inside plain MLX.
  use ExUnit.Case, async: true
  import EMLX.APIHelpers

  defp m, do: tensor([[1.0, 2.0], [3.0, 4.0]], :float32)
  defp mi, do: tensor([[1, 2], [3, 4]], :int32)
  defp idx, do: tensor([1, 0], :int32)
  defp zero, do: tensor(0.0, :float32)
  defp conv_x(type \\ :float32), do: EMLX.ones({1, 4, 1}, type, dev())
  defp conv_k(type \\ :float32), do: EMLX.ones({1, 2, 1}, type, dev())

  # A side n for which an n x n float64 needs more than the machine's memory
  # (80 GB on a 24 GB machine; more on a larger one).
  defp past_ram, do: floor(:math.sqrt(EMLX.device_info(:cpu).memory / 8)) + 2

  defp freed do
    t = tensor([1.0], :float32)
    :ok = EMLX.deallocate(t)
    t
  end

  @freed ~r/deallocated with EMLX.deallocate\/1 and can no longer be used/
  @too_big ~r/would need .* bytes, more than this machine's memory/
  @over_limit ~r/cannot evaluate: an array of shape .* needs \d+ bytes, more than MLX's memory limit/

  # {family, description, fun, exception, message pattern}
  @cases [
    # --- wrong term types ---
    {:types, "an atom where a tensor goes", quote(do: EMLX.add(:foo, m())), ArgumentError,
     ~r/expected an EMLX tensor \({device, ref}\), got: :foo/},
    {:types, "a string as second tensor", quote(do: EMLX.add(m(), "bar")), ArgumentError,
     ~r/add: argument 2 must be a tensor/},
    {:types, "an integer as second tensor", quote(do: EMLX.multiply(m(), 1)), ArgumentError,
     ~r/multiply: argument 2 must be a tensor/},
    {:types, "an atom for axes", quote(do: EMLX.sum(m(), :all, false)), ArgumentError,
     ~r/sum: argument 2 must be a list of integers/},
    {:types, "a string for a boolean", quote(do: EMLX.sum(m(), [0], "yes")), ArgumentError,
     ~r/sum: argument 3 must be a boolean/},
    {:types, "an atom inside a shape", quote(do: EMLX.reshape(m(), {2, :x})), ArgumentError,
     ~r/reshape: argument 2: expected a list of integers, of numbers or of tensors/},
    {:types, "a float inside a shape", quote(do: EMLX.reshape(m(), {2, 2.0})), ArgumentError,
     ~r/reshape: argument 2 must be a list of integers/},
    {:types, "from_blob of a non-binary", quote(do: EMLX.from_blob(123, {1}, :int32, dev())), ArgumentError,
     ~r/from_blob expects a binary, got: 123/},
    {:types, "from_blob with too few bytes", quote(do: EMLX.from_blob(<<1, 2, 3>>, {1}, :int32, dev())), ArgumentError,
     ~r/the binary has 3 bytes but a tensor of 1 int32 elements needs 4/},
    {:types, "a string scalar", quote(do: EMLX.scalar_tensor("1", :int32, dev())), ArgumentError,
     ~r/expected a number, :nan, :infinity, :neg_infinity or a Complex, got: "1"/},
    {:types, "an unknown type", quote(do: EMLX.astype(m(), :float128)), ArgumentError,
     ~r/unknown type :float128: expected one of/},
    {:types, "complex128", quote(do: EMLX.astype(m(), {:c, 128})), ArgumentError, ~r/MLX has no complex128/},
    {:types, "an 8-bit float", quote(do: EMLX.ones({2}, {:f, 8}, dev())), ArgumentError,
     ~r/MLX has no 8-bit float storage/},
    {:types, "a float where an integer goes", quote(do: EMLX.eye(2.5, 2, :float32, dev())), ArgumentError,
     ~r/eye: argument 1 must be an integer/},
    {:types, "a negative to_blob limit", quote(do: EMLX.to_blob(m(), -1)), ArgumentError,
     ~r/to_blob limit must be a non-negative integer, got: -1/},
    {:types, "item of four elements", quote(do: EMLX.item(m())), ArgumentError,
     ~r/item: the tensor must have exactly one element, it has 4/},
    {:types, "a number as einsum spec", quote(do: EMLX.einsum(m(), m(), 42)), ArgumentError,
     ~r/einsum: argument 3 must be an atom or string/},
    {:types, "an unknown eigh triangle", quote(do: EMLX.linalg_eigh(m(), :X)), ArgumentError,
     ~r/linalg_eigh: uplo must be :L .* or :U .*, got "X"/},
    {:types, "a string tolerance", quote(do: EMLX.isclose(m(), m(), "a", 0.0, false)), ArgumentError,
     ~r/isclose: argument 3 must be a number/},
    {:types, "an empty tensor list", quote(do: EMLX.concatenate([], 0)), ArgumentError,
     ~r/expected a non-empty list of EMLX tensors/},
    {:types, "a made-up tensor reference", quote(do: EMLX.add({:cpu, make_ref()}, m())), ArgumentError,
     ~r/add: argument 1: expected an EMLX tensor/},
    {:types, "shape of a made-up tensor", quote(do: EMLX.shape({:cpu, make_ref()})), ArgumentError,
     ~r/expected an EMLX tensor/},

    # --- out-of-range axes ---
    {:axes, "sum over axis 5", quote(do: EMLX.sum(m(), [5], false)), ArgumentError,
     ~r/Invalid axis 5 for array with 2 dimensions/},
    {:axes, "argmax along axis 7", quote(do: EMLX.argmax(m(), 7, false)), ArgumentError,
     ~r/argmax: axis 7 is out of range for a tensor of rank 2 \(expected -2 to 1\)/},
    {:axes, "argmin along axis -3", quote(do: EMLX.argmin(m(), -3, true)), ArgumentError,
     ~r/argmin: axis -3 is out of range/},
    {:axes, "sort along axis -9", quote(do: EMLX.sort(m(), -9)), ArgumentError, ~r/\[sort\] Axis -9 is out of bounds/},
    {:axes, "argsort along axis 2", quote(do: EMLX.argsort(m(), 2)), ArgumentError,
     ~r/\[argsort\] Axis 2 is out of bounds/},
    {:axes, "concatenate along axis 3", quote(do: EMLX.concatenate([m(), m()], 3)), ArgumentError,
     ~r/\[concatenate\] Axis 3 is out of bounds/},
    {:axes, "stack along axis 4", quote(do: EMLX.stack([m(), m()], 4)), ArgumentError,
     ~r/\[stack\] Axis 4 is out of bounds/},
    {:axes, "take along axis 2", quote(do: EMLX.take(m(), idx(), 2)), ArgumentError,
     ~r/take: axis 2 is out of range for a tensor of rank 2/},
    {:axes, "take_along_axis along -3", quote(do: EMLX.take_along_axis(m(), EMLX.reshape(idx(), {2, 1}), -3)),
     ArgumentError, ~r/take_along_axis: axis -3 is out of range/},
    {:axes, "gather on axis 9", quote(do: EMLX.gather(m(), [idx()], [9], [1, 1])), ArgumentError,
     ~r/gather: axis 9 is out of range/},
    {:axes, "scatter on axis 5", quote(do: EMLX.scatter(m(), [idx()], EMLX.ones({2, 1, 2}, :float32, dev()), [5])),
     ArgumentError, ~r/scatter: axis 5 is out of range/},
    {:axes, "cumulative sum along axis 3", quote(do: EMLX.cumulative_sum(m(), 3, false, false)), ArgumentError,
     ~r/\[cumsum\] Axis 3 is out of bounds/},
    {:axes, "squeezing a size-2 axis", quote(do: EMLX.squeeze(m(), [0])), ArgumentError,
     ~r/Cannot squeeze axis 0 with size 2/},
    {:axes, "repeated transpose axes", quote(do: EMLX.transpose(m(), [0, 0])), ArgumentError,
     ~r/\[transpose\] Repeat axes not allowed/},
    {:axes, "fft along axis 5", quote(do: EMLX.fft(m(), 4, 5)), ArgumentError, ~r/\[fftn\] Invalid axis/},
    {:axes, "fft2 over one axis twice", quote(do: EMLX.fft2(m(), [2, 2], [0, 0])), ArgumentError,
     ~r/\[fftn\] Duplicated axis/},
    {:axes, "pad on axis 4", quote(do: EMLX.pad(m(), [4], [1], [1], zero())), ArgumentError,
     ~r/\[pad\] Axis 4 is out of bounds/},

    # --- huge shapes ---
    {:huge, "ones of 4 TiB", quote(do: EMLX.ones({1_048_576, 1_048_576}, :float32, dev())), ArgumentError,
     ~r/ones: the result of shape \(1048576, 1048576\) and type float32 would need 4398046511104 bytes/},
    {:huge, "full past 2^64 bytes", quote(do: EMLX.full(1, {65_536, 65_536, 65_536, 65_536, 65_536}, :float32, dev())),
     ArgumentError, ~r/would need more than 2\^64 bytes/},
    {:huge, "a dimension of 2^31", quote(do: EMLX.reshape(m(), {2 ** 31})), ArgumentError,
     ~r/reshape: argument 2 must be a shape of non-negative dimensions below 2\^31/},
    {:huge, "a negative dimension", quote(do: EMLX.ones({-1}, :float32, dev())), ArgumentError,
     ~r/ones: argument 1 must be a shape of non-negative dimensions/},
    {:huge, "materialising a 160 GB broadcast",
     quote(do: EMLX.to_blob(EMLX.broadcast_to(m(), {100_000, 100_000, 2, 2}))), EMLX.NIFError, @over_limit},
    {:huge, "an identity larger than the machine's memory", quote(do: EMLX.eye(past_ram(), past_ram(), :float64, :cpu)),
     ArgumentError, @too_big},
    {:huge, "materialising as_strided of 2^60 elements",
     quote(do: EMLX.to_blob(EMLX.as_strided(m(), {2 ** 30, 2 ** 30}, [0, 0], 0))), EMLX.NIFError, @over_limit},
    {:huge, "padding past 32-bit dimensions", quote(do: EMLX.pad(m(), [0], [2_000_000_000], [2_000_000_000], zero())),
     ArgumentError, ~r/outside the supported range/},
    {:huge, "arange of 10^12 elements", quote(do: EMLX.arange(0, 1.0e12, 1, true, dev())), ArgumentError,
     ~r/\[arange\] Maximum size exceeded/},
    {:huge, "input dilation past 32 bits",
     quote(do: EMLX.conv_general(conv_x(), conv_k(), [1], [0], [0], [1], [1_000_000_000], 1)), ArgumentError,
     ~r/outside the supported range/},

    # --- views and slices that would leave the buffer ---
    {:views, "as_strided past the end", quote(do: EMLX.as_strided(m(), {1000}, [1000], 0)), ArgumentError,
     ~r/as_strided: shape \(1000,\) with these strides and offset 0 reaches element 999000, outside the input's 4 elements/},
    {:views, "as_strided before the start", quote(do: EMLX.as_strided(m(), {3}, [-1], 1)), ArgumentError,
     ~r/reaches element -1/},
    {:views, "a negative as_strided offset", quote(do: EMLX.as_strided(m(), {1}, [1], -1)), ArgumentError,
     ~r/as_strided: the offset must be non-negative/},
    {:views, "as_strided strides that do not match the shape", quote(do: EMLX.as_strided(m(), {2}, [1, 1], 0)),
     ArgumentError, ~r/as_strided: got 2 strides for a shape of rank 1/},
    {:views, "a zero slice stride", quote(do: EMLX.slice(m(), [0, 0], [2, 2], [0, 1])), ArgumentError,
     ~r/slice: strides must be non-zero/},
    {:views, "slice bounds of the wrong length", quote(do: EMLX.slice(m(), [0], [2, 2], [1, 1])), ArgumentError,
     ~r/\[slice\] Invalid number of indices or strides/},
    {:views, "a slice update of the wrong shape",
     quote(do: EMLX.slice_update(m(), EMLX.ones({3}, :float32, dev()), [0, 0], [2, 2])), ArgumentError,
     ~r/Shapes \(3\) and \(2,2\) cannot be broadcast/},
    {:views, "a negative padding", quote(do: EMLX.pad(m(), [0], [-1], [0], zero())), ArgumentError,
     ~r/Invalid low padding size \(-1\)/},
    {:views, "a tensor as pad value", quote(do: EMLX.pad(m(), [0], [1], [0], m())), ArgumentError,
     ~r/pad: the pad value must be a one-element tensor, got shape \(2, 2\)/},
    {:views, "pad sizes that do not match the axes", quote(do: EMLX.pad(m(), [0, 1], [1], [0], zero())), ArgumentError,
     ~r/Invalid number of padding sizes/},
    {:views, "viewing 3 bytes as float32", quote(do: EMLX.view(tensor([1, 2, 3], :uint8), :float32)), ArgumentError,
     ~r/\[view\]/},

    # --- mismatched shapes and dtypes ---
    {:mismatch, "adding shapes that do not broadcast",
     quote(do: EMLX.add(tensor([1, 2], :int32), tensor([1, 2, 3], :int32))), ArgumentError,
     ~r/Shapes \(2\) and \(3\) cannot be broadcast/},
    {:mismatch, "where with a predicate that does not broadcast",
     quote(do: EMLX.where(tensor([true, false, true], :bool), m(), m())), ArgumentError, ~r/cannot be broadcast/},
    {:mismatch, "stacking different shapes", quote(do: EMLX.stack([m(), tensor([1.0], :float32)], 0)), ArgumentError,
     ~r/\[stack\] All arrays must have the same shape/},
    {:mismatch, "clip without any bound", quote(do: EMLX.clip(m(), nil, nil)), ArgumentError,
     ~r/At most one of a_min and a_max may be None/},
    {:mismatch, "bitwise and of floats", quote(do: EMLX.bitwise_and(m(), m())), EMLX.NIFError,
     ~r/\[bitwise_and\] Only allowed on integer or boolean types/},
    {:mismatch, "argmax of an empty tensor", quote(do: EMLX.argmax(tensor([], :float32), false)), ArgumentError,
     ~r/Cannot argmax reduce zero size array/},

    # --- indexing ---
    {:indexing, "float indices for take", quote(do: EMLX.take(m(), tensor([0.0], :float32), 0)), ArgumentError,
     ~r/take: indices must be an integer tensor, got float32/},
    {:indexing, "float indices for gather", quote(do: EMLX.gather(m(), [tensor([0.0], :float32)], [0], [1, 2])),
     ArgumentError, ~r/gather: every index tensor must be an integer tensor, got float32/},
    {:indexing, "taking from an empty axis", quote(do: EMLX.take(EMLX.reshape(tensor([], :float32), {0, 2}), idx(), 0)),
     ArgumentError, ~r/take: cannot read from axis 0, which has size 0/},
    {:indexing, "more index tensors than axes", quote(do: EMLX.gather(m(), [idx(), idx()], [0], [1, 2])), ArgumentError,
     ~r/gather: got 2 index tensors for 1 axes/},
    {:indexing, "a gather slice larger than the axis", quote(do: EMLX.gather(m(), [idx()], [0], [1, 3])), ArgumentError,
     ~r/gather: slice size 3 on axis 1 exceeds its dimension 2/},
    {:indexing, "slice sizes of the wrong length", quote(do: EMLX.gather(m(), [idx()], [0], [1])), ArgumentError,
     ~r/gather: slice_sizes has 1 entries for a tensor of rank 2/},
    {:indexing, "scatter updates of the wrong rank",
     quote(do: EMLX.scatter_add(mi(), [idx()], tensor([1, 1], :int32), [0])), ArgumentError,
     ~r/scatter_add: updates must have rank 3 \(the index rank 1 plus the tensor rank 2\)/},
    {:indexing, "scatter slices larger than the axis",
     quote(do: EMLX.scatter(mi(), [idx()], EMLX.ones({2, 3, 2}, :int32, dev()), [0])), ArgumentError,
     ~r/scatter: update slices of size 3 do not fit in axis 0 of size 2/},
    {:indexing, "scatter slices wider than a non-indexed axis",
     quote(do: EMLX.scatter_add(mi(), [idx()], EMLX.ones({2, 1, 5}, :int32, dev()), [0])), ArgumentError,
     ~r/scatter_add: update slices of size 5 do not fit in axis 1 of size 2/},
    {:indexing, "scatter on one axis twice",
     quote(do: EMLX.scatter(mi(), [idx(), idx()], EMLX.ones({2, 1, 1}, :int32, dev()), [0, 0])), ArgumentError,
     ~r/Repeat axes not allowed in scatter/},
    {:indexing, "a window larger than the padded input",
     quote(do: EMLX.window_scatter_max(m(), tensor([[1.0]], :float32), zero(), [3, 3], [0, 0], [0, 0], [1, 1])),
     ArgumentError, ~r/window_scatter_max: window size 3 on axis 0 exceeds the padded dimension 2/},
    {:indexing, "a window source of the wrong shape",
     quote(do: EMLX.window_scatter_max(m(), tensor([1.0], :float32), zero(), [2, 2], [0, 0], [0, 0], [1, 1])),
     ArgumentError, ~r/source has shape \(1,\) but the windows form shape \(1, 1\)/},
    {:indexing, "a zero window stride",
     quote(do: EMLX.window_scatter_min(m(), tensor([[1.0]], :float32), zero(), [2, 2], [0, 0], [0, 0], [0, 1])),
     ArgumentError, ~r/window sizes and strides must be positive/},
    {:indexing, "a tensor as init value",
     quote(do: EMLX.window_scatter_min(m(), tensor([[1.0]], :float32), m(), [2, 2], [0, 0], [0, 0], [1, 1])),
     ArgumentError, ~r/init_value must be a one-element tensor/},

    # --- linalg, einsum, conv, fft ---
    {:linalg, "inverse of integers", quote(do: EMLX.linalg_inv(mi())), ArgumentError,
     ~r/linalg_inv: MLX's linalg needs float32 or float64, got int32; convert with EMLX.astype\/2 first/},
    {:linalg, "inverse of a non-square matrix", quote(do: EMLX.linalg_inv(EMLX.ones({2, 3}, :float32, dev()))),
     ArgumentError, ~r/linalg_inv: expected square matrices .* got shape \(2, 3\)/},
    {:linalg, "cholesky of a vector", quote(do: EMLX.linalg_cholesky(tensor([1.0], :float32), false)), ArgumentError,
     ~r/Arrays must have >= 2 dimensions/},
    {:linalg, "solve with mismatched sizes", quote(do: EMLX.linalg_solve(m(), tensor([1.0, 2.0, 3.0], :float32))),
     ArgumentError, ~r/\[linalg::solve\] Last dimension of first input/},
    {:linalg, "svd of float16", quote(do: EMLX.linalg_svd(EMLX.astype(m(), :float16), true)), ArgumentError,
     ~r/linalg_svd: MLX's linalg needs float32 or float64, got float16/},
    {:linalg, "LU of bfloat16", quote(do: EMLX.linalg_lu(EMLX.astype(m(), :bfloat16))), ArgumentError,
     ~r/linalg_lu: MLX's linalg needs float32 or float64, got bfloat16/},
    {:linalg, "tri_inv of a non-square matrix", quote(do: EMLX.tri_inv(EMLX.ones({2, 3}, :float32, dev()), false)),
     ArgumentError, ~r/tri_inv: expected square matrices/},
    {:linalg, "the inverse of a singular matrix, at evaluation",
     quote(do: EMLX.eval(EMLX.linalg_inv(tensor([[1.0, 1.0], [1.0, 1.0]], :float32)))), EMLX.NIFError,
     ~r/LU factorization failed/},
    {:linalg, "einsum of integers", quote(do: EMLX.einsum(mi(), mi(), "ij,jk->ik")), ArgumentError,
     ~r/Only inexact types are supported/},
    {:linalg, "an einsum output subscript missing from the inputs", quote(do: EMLX.einsum(m(), m(), "ij,jk->ikq")),
     ArgumentError, ~r/einsum: output subscript 'q' does not appear in the inputs of "ij,jk->ikq"/},
    {:linalg, "an einsum spec for one operand", quote(do: EMLX.einsum(m(), m(), "ij")), ArgumentError,
     ~r/Number of operands, 2, does not match number of input subscripts, 1/},
    {:conv, "convolution of integers",
     quote(do: EMLX.conv_general(conv_x(:int32), conv_k(:int32), [1], [0], [0], [1], [1], 1)), ArgumentError,
     ~r/Convolution currently only supports floating point types/},
    {:conv, "zero feature groups", quote(do: EMLX.conv_general(conv_x(), conv_k(), [1], [0], [0], [1], [1], 0)),
     ArgumentError, ~r/conv_general: feature_group_count must be at least 1, got 0/},
    {:conv, "a zero convolution stride", quote(do: EMLX.conv_general(conv_x(), conv_k(), [0], [0], [0], [1], [1], 1)),
     ArgumentError, ~r/Stride sizes must be positive/},
    {:conv, "strides for two spatial axes on a 1-D convolution",
     quote(do: EMLX.conv_general(conv_x(), conv_k(), [1, 1], [0], [0], [1], [1], 1)), ArgumentError,
     ~r/Invalid strides/},
    {:conv, "a kernel wider than the cropped input",
     quote(do: EMLX.conv_general(conv_x(), conv_k(), [1], [-3], [0], [1], [1], 1)), ArgumentError,
     ~r/cannot be smaller than weight spatial dimensions/},
    {:spectral, "fft of float64", quote(do: EMLX.fft(tensor([[1.0, 2.0], [3.0, 4.0]], :float64), 2, 0)), ArgumentError,
     ~r/fft: MLX has no complex128, so a float64 tensor would lose precision/},
    {:spectral, "fft over zero points", quote(do: EMLX.fft(m(), 0, 0)), ArgumentError,
     ~r/Invalid FFT output size requested \(0\)/},
    {:spectral, "fft of a 0-d tensor", quote(do: EMLX.ifft(zero(), 1, 0)), ArgumentError,
     ~r/Requires array with at least one dimension/},
    {:spectral, "fft2 lengths that do not match the axes", quote(do: EMLX.fft2(m(), [2], [0, 1])), ArgumentError,
     ~r/Shape and axes have different sizes/},

    # --- deallocated tensors ---
    {:freed, "an op on a freed tensor", quote(do: EMLX.add(freed(), m())), ArgumentError, @freed},
    {:freed, "to_blob of a freed tensor", quote(do: EMLX.to_blob(freed())), ArgumentError, @freed},
    {:freed, "item of a freed tensor", quote(do: EMLX.item(freed())), ArgumentError, @freed},
    {:freed, "shape of a freed tensor", quote(do: EMLX.shape(freed())), ArgumentError, @freed},
    {:freed, "eval of a freed tensor", quote(do: EMLX.eval(freed())), ArgumentError, @freed},
    {:freed, "a freed tensor in a list", quote(do: EMLX.concatenate([m(), freed()], 0)), ArgumentError, @freed},
    {:freed, "a freed index tensor", quote(do: EMLX.gather(m(), [freed()], [0], [1, 2])), ArgumentError, @freed},
    {:freed, "linalg of a freed tensor", quote(do: EMLX.linalg_qr(freed())), ArgumentError, @freed},

    # --- devices ---
    {:devices, "an unknown device", quote(do: EMLX.ones({2}, :float32, :tpu)), ArgumentError,
     ~r/unknown device :tpu: expected :cpu or :gpu/},
    {:devices, "from_blob to an unknown device", quote(do: EMLX.from_blob(<<0::32>>, {1}, :float32, :metal)),
     ArgumentError, ~r/unknown device :metal/},
    {:devices, "a device that is not an atom", quote(do: EMLX.arange(0, 1, 1, true, "cpu")), ArgumentError,
     ~r/unknown device "cpu"/}
  ]

  for {{family, description, call, exception, pattern}, n} <- Enum.with_index(@cases, 1) do
    test "#{n}. #{family}: #{description}" do
      error = assert_raise unquote(exception), fn -> unquote(call) end
      assert Exception.message(error) =~ unquote(Macro.escape(pattern))
      still_alive!()
    end
  end

  unless EMLX.NIF.gpu_available() do
    test "the GPU on a machine without one" do
      assert_raise ArgumentError, ~r/no GPU queue: this MLX build has no GPU/, fn ->
        EMLX.scalar_tensor(1, :float32, :gpu)
      end

      assert_raise ArgumentError, ~r/no GPU queue/, fn -> EMLX.add({:gpu, make_ref()}, m()) end
      still_alive!()
    end
  end

  test "at least 60 cases over every family" do
    assert length(@cases) >= 60

    assert @cases |> Enum.map(&elem(&1, 0)) |> Enum.uniq() |> Enum.sort() ==
             Enum.sort([
               :types,
               :axes,
               :huge,
               :views,
               :mismatch,
               :indexing,
               :linalg,
               :conv,
               :spectral,
               :freed,
               :devices
             ])
  end

  test "all of them from many processes at once leave the VM working" do
    calls =
      unquote(for {_, _, call, exception, _} <- @cases, do: quote(do: {unquote(exception), fn -> unquote(call) end}))

    1..8
    |> Task.async_stream(fn _ -> for {exception, fun} <- calls, do: assert_raise(exception, fun) end, timeout: 60_000)
    |> Enum.each(fn result -> assert {:ok, _} = result end)

    still_alive!()
  end
end
