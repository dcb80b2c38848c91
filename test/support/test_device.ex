defmodule EMLX.TestDevice do
  @moduledoc false
  # The one place the suite's device is chosen: EMLX_TEST_DEVICE=cpu (the
  # default) or gpu. Test helpers put their tensors there (float64 ones
  # excepted: device_for/1); tests that cannot run in a GPU run carry
  # `@tag cpu_only: "why"` and are excluded there (test_helper.exs). Read at
  # run time, not when test/support is compiled: the GPU machine runs a
  # suite compiled elsewhere.

  @doc "The suite's device, `:cpu` or `:gpu`."
  @spec device() :: :cpu | :gpu
  def device do
    case :persistent_term.get({__MODULE__, :device}, nil) do
      nil ->
        device = from_env(System.get_env("EMLX_TEST_DEVICE", "cpu"))
        :persistent_term.put({__MODULE__, :device}, device)
        device

      device ->
        device
    end
  end

  @doc "Whether the suite runs on the GPU."
  @spec gpu?() :: boolean()
  def gpu?, do: device() == :gpu

  @doc """
  How long a task of a many-process test may take when its work goes to a
  device's default command queue. Async tests share those queues, and some
  hold one for seconds (the 2^31-element reductions of
  size_boundary_test.exs, the 10^6-element sums): a task waiting behind
  them is slow, not wrong, so Task's 5 s default is too short (it timed out
  in full runs, most often on 16-core machines where more tests overlap).
  """
  @spec shared_queue_timeout() :: pos_integer()
  def shared_queue_timeout, do: 60_000

  @doc "The EMLX.Backend (with its device option) the suite's Nx tensors use."
  @spec backend() :: {module(), keyword()}
  def backend, do: {EMLX.Backend, device: device()}

  @doc """
  The device for tensors of `type` (an MLX dtype atom or an Nx type):
  float64 lives on the CPU by nature (MLX has no GPU kernels for it), so in
  a GPU run the helpers keep float64 tensors, and the computations that
  involve them, on the CPU, where they still run; everything else goes to
  `device/0`.
  """
  @spec device_for(atom() | tuple()) :: :cpu | :gpu
  def device_for(type) when type in [:float64, :f64, {:f, 64}], do: :cpu
  def device_for(_type), do: device()

  @doc """
  Tolerance options for float32 (and complex64) results of matrix
  products (dot, conv, einsum, attention, and the identities checked with
  them): `opts` unchanged on the CPU; on the GPU, where MLX computes them
  in TF32 (operands rounded to a 10-bit mantissa, as PyTorch's TF32 does),
  at least `gpu` (default `atol: 1.0e-2, rtol: 2.0e-3`): an n-term sum of
  terms up to T is off by up to about n·T·2⁻¹⁰, so tests of larger terms
  pass a larger `:atol`. With `MLX_ENABLE_TF32=0` MLX computes them in full
  float32 and `opts` stay as they are.
  """
  @spec tf32(keyword(), keyword()) :: keyword()
  def tf32(opts \\ [], gpu \\ [atol: 1.0e-2, rtol: 2.0e-3]) do
    if gpu?() and System.get_env("MLX_ENABLE_TF32") != "0" do
      Keyword.merge(opts, Keyword.new(gpu, fn {k, v} -> {k, max(opts[k] || 0.0, v)} end))
    else
      opts
    end
  end

  defp from_env("cpu"), do: :cpu

  defp from_env("gpu") do
    if EMLX.NIF.gpu_available(),
      do: :gpu,
      else: raise("EMLX_TEST_DEVICE=gpu, but this EMLX build's MLX has no GPU (build with EMLX_MLX_VARIANT=cuda)")
  end

  defp from_env(other), do: raise("EMLX_TEST_DEVICE must be cpu or gpu, got #{inspect(other)}")
end
