defmodule EMLX.NIF do
  @moduledoc false
  # Loader and stubs for the Rust NIF (native/src). The list below is the
  # whole native interface; the stubs only run when the library failed to
  # load, and then say why and what to do.

  @on_load :__load__

  @nifs [
    # ops.rs: the generic op over the C++ op table, creation from bytes, metadata
    op_names: 0,
    op: 3,
    lazy_op: 3,
    from_blob: 4,
    from_blob_dirty: 4,
    shape: 1,
    meta: 1,
    strides: 1,
    scalar_type: 1,
    nbytes: 1,
    itemsize: 1,
    needs_eval_for: 2,
    tensor_ready: 1,
    deallocate: 1,
    is_tensor_ref: 1,
    # runtime.rs: queues, jobs answered by message, devices, memory
    queue_new: 3,
    queue_make_default: 1,
    queue_close: 1,
    queue_info: 1,
    queue_synchronize: 2,
    queue_threads: 0,
    tensor_queue_id: 1,
    gpu_available: 0,
    device_info: 1,
    mlx_version: 0,
    eval: 2,
    eval_now: 2,
    item: 2,
    item_now: 2,
    to_blob: 3,
    to_blob_now: 3,
    memory_info: 0,
    blas_info: 0,
    reset_peak_memory: 0,
    clear_cache: 0,
    set_cache_limit: 1,
    set_memory_limit: 1,
    # program.rs: compiled programs (compiler: EMLX)
    program_new: 1,
    program_run: 5,
    program_callback_reply: 2,
    # sharing.rs: raw addresses and POSIX shared memory
    tensor_data_ptr: 2,
    tensor_to_shm: 3,
    shm_unlink: 1,
    # faults.rs: fault injection, for the test suite only
    queue_fault: 3
  ]

  @doc false
  def __load__ do
    path = :filename.join(:code.priv_dir(:emlx), ~c"libemlx")

    case :erlang.load_nif(path, 0) do
      :ok ->
        ptx_cache()

      {:error, {:reload, _}} ->
        :ok

      {:error, {reason, text}} ->
        :persistent_term.put({__MODULE__, :load_error}, "#{reason}: #{text}")
        :ok
    end
  end

  # MLX's CUDA backend compiles kernels at run time (seconds each) and keeps
  # them in MLX_PTX_CACHE_DIR, which it reads at its first kernel: by
  # default a folder of the EMLX cache, per MLX version and GPU
  # architecture (the files are machine code for that architecture), so
  # compiled kernels survive restarts. A value the user set wins. Runs
  # before any queue exists, so before MLX can read it.
  defp ptx_cache do
    if System.get_env("MLX_PTX_CACHE_DIR") in [nil, ""] and :os.type() == {:unix, :linux} and gpu_available() do
      {_name, architecture, _memory} = device_info(:gpu)
      System.put_env("MLX_PTX_CACHE_DIR", Path.join([cache_dir(), "ptx", mlx_version(), architecture]))
    end

    :ok
  end

  @doc false
  # The EMLX cache directory, as the build finds it (build.rs).
  def cache_dir do
    cond do
      dir = System.get_env("EMLX_CACHE_DIR") -> dir
      dir = System.get_env("XDG_CACHE_HOME") -> Path.join(dir, "emlx")
      home = System.get_env("HOME") -> Path.join(home, ".cache/emlx")
      true -> Path.join(System.tmp_dir!(), "emlx-cache")
    end
  end

  @doc false
  def load_error, do: :persistent_term.get({__MODULE__, :load_error}, nil)

  for {name, arity} <- @nifs do
    args = Macro.generate_arguments(arity, __MODULE__)
    # Called through apply/3 so the compiler's type inference does not
    # conclude from the raising stub that the NIF never returns.
    def unquote(name)(unquote_splicing(args)), do: apply(__MODULE__, :__not_loaded__, [])
  end

  @doc false
  def __not_loaded__, do: raise(EMLX.NIFError, explain_load_error(load_error()))

  @rebuild "Run `mix compile` in the emlx project (it needs Rust's cargo and, for the default " <>
             "libmlx, Python's pip; see the README), or set MLX_DIR to an MLX install and rebuild."

  @cuda_help "This EMLX is built on MLX's CUDA backend (EMLX_MLX_VARIANT=cuda), whose libmlx loads " <>
               "the CUDA 13 libraries from priv/nvidia, a link `mix compile` makes to the folder it " <>
               "found (or downloaded) them in. Set EMLX_CUDA_LIBS_DIR to a site-packages/nvidia folder " <>
               "holding cu13/, cublas/, cudnn/, cufft/, cusolver/, cuda_nvrtc/ and nccl/ (NVIDIA's " <>
               "nvidia-* Python wheels, which PyTorch's CUDA 13 build also brings) and run `mix compile`."

  # Libraries libmlx's CUDA build loads, and where they come from.
  @cuda_libs [
    {~r/^libcublas/, "nvidia-cublas"},
    {~r/^libcudnn/, "nvidia-cudnn-cu13"},
    {~r/^libcufft/, "nvidia-cufft"},
    {~r/^libcusolver/, "nvidia-cusolver"},
    {~r/^libcusparse/, "nvidia-cusparse"},
    {~r/^libnvrtc/, "nvidia-cuda-nvrtc"},
    {~r/^libnvJitLink/, "nvidia-nvjitlink"},
    {~r/^libcudart/, "nvidia-cuda-runtime"},
    {~r/^libnccl/, "nvidia-nccl-cu13"}
  ]

  @doc false
  # What to tell a user whose NIF did not load, from the loader's message:
  # the library that was missing and where it comes from, when that is it.
  def explain_load_error(nil), do: "EMLX's native library is not loaded (unknown reason). " <> @rebuild

  def explain_load_error(text) do
    prefix = "EMLX's native library could not be loaded (#{text})."

    case Regex.run(~r/([\w.+-]+\.so[\w.]*): cannot open shared object file/, text) do
      [_, "libemlx.so"] ->
        "EMLX's native library is not built (#{text}). " <> @rebuild

      [_, "libmlx.so"] ->
        prefix <> " libmlx.so is missing from priv/mlx/lib. " <> @rebuild

      [_, "libcuda.so" <> _ = lib] ->
        prefix <>
          " #{lib} comes with NVIDIA's GPU driver: this EMLX is built on MLX's CUDA backend " <>
          "(EMLX_MLX_VARIANT=cuda), which needs an NVIDIA GPU and its driver. On a machine without " <>
          "them, build the CPU variant: EMLX_MLX_VARIANT=cpu mix compile."

      [_, "libopenblas" <> _ = lib] ->
        prefix <>
          " #{lib} (OpenBLAS, linked for MLX's matrix products) is not installed: install it " <>
          "(Debian/Ubuntu: apt-get install libopenblas0) or rebuild with EMLX_NO_OPENBLAS=1."

      [_, lib] ->
        case Enum.find(@cuda_libs, fn {re, _} -> Regex.match?(re, lib) end) do
          {_, wheel} -> prefix <> " #{lib} (from NVIDIA's #{wheel} wheel) was not found. " <> @cuda_help
          nil -> prefix <> " The library #{lib} was not found. " <> @rebuild
        end

      nil ->
        prefix <> " " <> @rebuild
    end
  end
end
