if Code.ensure_loaded?(Nx) do
  defmodule EMLX.PeerHelpers do
    @moduledoc false
    # What the distributed tests run on a peer node (:erpc calls by module,
    # function and arguments: the peer loads this compiled module from the
    # code path, which the test module itself is not on).

    @backend {EMLX.Backend, device: :cpu}

    @doc "Starts the applications EMLX needs on the peer."
    def boot do
      {:ok, _} = Application.ensure_all_started(:nx)
      {:ok, _} = Application.ensure_all_started(:emlx)
      :ok
    end

    @doc """
    Starts a serving named `name` on the peer (unlinked, so it outlives the
    :erpc call): it doubles and adds one on EMLX.Backend. With `portable`,
    results are moved to Nx.BinaryBackend before they leave the node
    (distributed_postprocessing); without, they leave as EMLX tensors.
    """
    def start_serving(name, portable) do
      serving =
        Nx.Serving.new(fn _opts ->
          fn batch ->
            x = batch |> then(&Nx.Defn.jit_apply(fn t -> t end, [&1])) |> Nx.backend_transfer(@backend)
            %Nx.Tensor{data: %EMLX.Backend{}} = x
            x |> Nx.multiply(2) |> Nx.add(1)
          end
        end)

      serving =
        if portable,
          do: Nx.Serving.distributed_postprocessing(serving, &Nx.backend_transfer(&1, Nx.BinaryBackend)),
          else: serving

      {:ok, pid} = Nx.Serving.start_link(serving: serving, name: name, batch_size: 4, batch_timeout: 10)
      Process.unlink(pid)
      {:ok, pid}
    end

    @doc "An EMLX tensor computed on the peer, shared through POSIX shared memory."
    def ipc_pointer do
      t = Nx.iota({2, 3}, type: :f32, backend: @backend) |> Nx.multiply(0.5)
      Nx.to_pointer(t, mode: :ipc)
    end

    @doc "The values of an :ipc pointer made on another node, read on the peer."
    def read_pointer(pointer, type, shape) do
      t = Nx.from_pointer(@backend, pointer, type, shape)
      %Nx.Tensor{data: %EMLX.Backend{}} = t
      Nx.to_flat_list(t)
    end

    @doc "An EMLX tensor made on the peer, returned as it is."
    def emlx_tensor, do: Nx.tensor([1.0, 2.0], backend: @backend)
  end
end
