defmodule EMLX.Ops.Backend do
  @moduledoc false
  # MLX ops that EMLX.Backend needs beyond the EMLX function API.
  # Entries: see EMLX.Ops. Native twin: native/bridge/ops/backend.cc.

  def table do
    [
      # --- backend ---
      {:matmul, [tensorA: :tensor, tensorB: :tensor],
       """
       Matrix product of the last two axes, broadcasting the leading (batch)
       axes; floating-point and complex types only.

           iex> a = EMLX.ones({4, 2, 3}, :float32, :cpu)
           iex> b = EMLX.ones({4, 3, 5}, :float32, :cpu)
           iex> EMLX.matmul(a, b) |> EMLX.shape()
           {4, 2, 5}
       """, []},
      {:dynamic_slice, [tensor: :tensor, tensor_starts: :tensor, axes: :axes, slice_size: :shape],
       """
       A slice of `slice_size` starting, along each of `axes`, at the index
       held by `tensor_starts` (a 1-d integer tensor with one start per
       axis). Starts are clamped so that the slice fits in the tensor.

           iex> t = EMLX.arange(0, 6, 1, true, :cpu)
           iex> starts = EMLX.from_blob(<<2::32-native>>, {1}, :int32, :cpu)
           iex> EMLX.dynamic_slice(t, starts, [0], {3}) |> EMLX.to_blob()
           <<2::64-native, 3::64-native, 4::64-native>>
       """, []},
      {:dynamic_slice_update, [tensor: :tensor, tensor_updates: :tensor, tensor_starts: :tensor, axes: :axes],
       """
       `tensor` with `tensor_updates` written at the start indices held by
       `tensor_starts` (one per axis in `axes`), clamped so that the update
       fits in the tensor.

           iex> t = EMLX.full(0, {4}, :int32, :cpu)
           iex> update = EMLX.full(7, {2}, :int32, :cpu)
           iex> starts = EMLX.from_blob(<<1::32-native>>, {1}, :int32, :cpu)
           iex> EMLX.dynamic_slice_update(t, update, starts, [0]) |> EMLX.to_blob()
           <<0::32-native, 7::32-native, 7::32-native, 0::32-native>>
       """, []},
      {:rfft, [tensor: :tensor, n: :int, axis: :int],
       """
       FFT of a real tensor along `axis`, padded or cut to `n` points, keeping
       the `div(n, 2) + 1` non-redundant frequencies.

           iex> t = EMLX.from_blob(<<1.0::float-32-native, 1.0::float-32-native>>, {2}, :float32, :cpu)
           iex> EMLX.rfft(t, 4, 0) |> EMLX.shape()
           {3}
       """, []},
      {:irfft, [tensor: :tensor, n: :int, axis: :int],
       """
       Inverse of `rfft/3`: the `n` real points whose FFT has the given
       non-redundant frequencies along `axis`.

           iex> t = EMLX.from_blob(<<1.0::float-32-native, 1.0::float-32-native>>, {2}, :float32, :cpu)
           iex> t |> EMLX.rfft(4, 0) |> EMLX.irfft(4, 0) |> EMLX.to_blob()
           <<1.0::float-32-native, 1.0::float-32-native, 0.0::float-32-native, 0.0::float-32-native>>
       """, []},
      {:precise_unary, [tensor: :tensor, name: :string],
       """
       `name` (`"exp"`, `"log1p"`, `"sin"`, `"cos"`, `"erf"`, `"erfc"`, `"cbrt"`,
       `"erf_inv"` or `"sigmoid"`) of each element, computed in double
       precision with the C library and rounded to the tensor's type (MLX
       computes some of them for float64 with float32 accuracy, and has no
       cbrt or erfc). `cbrt` is `pow(|x|, 1/3)` with the sign of x and
       `erf_inv` Nx's polynomial, as `Nx.BinaryBackend` computes them.
       Real floating-point tensors on the CPU only.

           iex> t = EMLX.from_blob(<<1.0::float-64-native>>, {1}, :float64, :cpu)
           iex> EMLX.precise_unary(t, "exp") |> EMLX.to_blob()
           <<2.718281828459045::float-64-native>>
       """, []},
      {:linalg_det, [tensor: :tensor],
       """
       The determinants of the square matrices in the last two axes (float32
       or float64; computed on the CPU, as MLX's linalg runs there).

           iex> t = EMLX.from_blob(<<2.0::float-32-native, 1.0::float-32-native, 1.0::float-32-native, 3.0::float-32-native>>, {2, 2}, :float32, :cpu)
           iex> EMLX.linalg_det(t) |> EMLX.item()
           5.0
       """, []},
      {:from_address, [address: :int, byte_size: :int, shape: :shape, type: :type, device: :device],
       """
       A tensor holding a copy of the `byte_size` bytes at `address` in this
       OS process (as given by `tensor_data_ptr/1`), read as `type` elements
       of `shape`. The address must point to that many readable bytes: MLX
       cannot check it, and a wrong address may crash the VM.

           iex> t = EMLX.from_blob(<<1, 2, 3>>, {3}, :uint8, :cpu)
           iex> {address, 3} = EMLX.tensor_data_ptr(t)
           iex> EMLX.from_address(address, 3, {3}, :uint8, :cpu) |> EMLX.to_blob()
           <<1, 2, 3>>
       """, []},
      {:from_shm, [name: :string, byte_size: :int, shape: :shape, type: :type, device: :device],
       """
       A tensor holding a copy of the first `byte_size` bytes of the POSIX
       shared-memory segment `name` (as made by `tensor_to_shm/2`), read as
       `type` elements of `shape`. The segment's name is removed afterwards:
       a segment is handed over once.

           iex> t = EMLX.from_blob(<<1, 2, 3>>, {3}, :uint8, :cpu)
           iex> {name, 3} = EMLX.tensor_to_shm(t, 0o600)
           iex> EMLX.from_shm(name, 3, {3}, :uint8, :cpu) |> EMLX.to_blob()
           <<1, 2, 3>>
       """, []}
    ]
  end
end
