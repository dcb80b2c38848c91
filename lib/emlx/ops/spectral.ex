defmodule EMLX.Ops.Spectral do
  @moduledoc false
  # Discrete Fourier transforms.
  # Entries: see EMLX.Ops. Native twin: native/bridge/ops/spectral.cc.

  @types """
  The result is `:complex64`; real inputs are converted. MLX has no
  complex128, so `:float64` inputs raise `ArgumentError` instead of silently
  losing precision: convert them to `:float32` first.
  """

  def table do
    [
      {:fft, [tensor: :tensor, n: :int, axis: :axis],
       """
       The discrete Fourier transform along `axis`, over `n` points: the axis
       is cropped or zero-padded to length `n` first. Unnormalized.

       #{@types}
           iex> t = EMLX.ones({4}, :float32, :cpu)
           iex> EMLX.fft(t, 4, 0) |> EMLX.real() |> EMLX.to_blob()
           <<4.0::float-32-native, 0.0::float-32-native, 0.0::float-32-native, 0.0::float-32-native>>
       """, []},
      {:ifft, [tensor: :tensor, n: :int, axis: :axis],
       """
       The inverse discrete Fourier transform along `axis` over `n` points
       (cropping or zero-padding the axis), scaled by `1 / n`.

       #{@types}
           iex> t = EMLX.ones({4}, :float32, :cpu)
           iex> EMLX.ifft(t, 4, 0) |> EMLX.real() |> EMLX.to_blob()
           <<1.0::float-32-native, 0.0::float-32-native, 0.0::float-32-native, 0.0::float-32-native>>
       """, []},
      {:fft2, [tensor: :tensor, s: :shape, axes: :axes],
       """
       The two-dimensional discrete Fourier transform over `axes` (two distinct
       axes), with lengths `s` (each axis cropped or zero-padded). Unnormalized.

       #{@types}
           iex> t = EMLX.ones({2, 2}, :float32, :cpu)
           iex> EMLX.fft2(t, [2, 2], [0, 1]) |> EMLX.real() |> EMLX.to_blob()
           <<4.0::float-32-native, 0.0::float-32-native, 0.0::float-32-native, 0.0::float-32-native>>
       """, []},
      {:ifft2, [tensor: :tensor, s: :shape, axes: :axes],
       """
       The inverse of `fft2/3`, scaled by `1 / (s0 * s1)`.

       #{@types}
           iex> t = EMLX.ones({2, 2}, :float32, :cpu)
           iex> EMLX.ifft2(t, [2, 2], [0, 1]) |> EMLX.real() |> EMLX.to_blob()
           <<1.0::float-32-native, 0.0::float-32-native, 0.0::float-32-native, 0.0::float-32-native>>
       """, []}
    ]
  end
end
