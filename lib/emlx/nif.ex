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
    from_blob: 4,
    from_blob_dirty: 4,
    shape: 1,
    meta: 1,
    strides: 1,
    scalar_type: 1,
    nbytes: 1,
    itemsize: 1,
    needs_eval_for: 2,
    deallocate: 1,
    is_tensor_ref: 1,
    # runtime.rs: queues, jobs answered by message, memory
    queue_new: 3,
    queue_make_default: 1,
    queue_close: 1,
    queue_info: 1,
    queue_synchronize: 2,
    queue_threads: 0,
    tensor_queue_id: 1,
    gpu_available: 0,
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
    # sharing.rs: raw addresses and POSIX shared memory
    tensor_data_ptr: 2,
    tensor_to_shm: 3,
    shm_unlink: 1
  ]

  @doc false
  def __load__ do
    path = :filename.join(:code.priv_dir(:emlx), ~c"libemlx")

    case :erlang.load_nif(path, 0) do
      :ok ->
        :ok

      {:error, {:reload, _}} ->
        :ok

      {:error, {reason, text}} ->
        :persistent_term.put({__MODULE__, :load_error}, "#{reason}: #{text}")
        :ok
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
  def __not_loaded__ do
    raise EMLX.NIFError,
          "EMLX's native library is not loaded (#{load_error() || "unknown reason"}). " <>
            "Run `mix compile` in the emlx project (it needs Rust's cargo and, for the default " <>
            "libmlx, Python's pip; see the README), or set MLX_DIR to an MLX install and rebuild."
  end
end
