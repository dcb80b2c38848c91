if Code.ensure_loaded?(Nx) do
  defmodule EMLX.DistributedTest do
    # EMLX across BEAM nodes (Erlang distribution on loopback, a :peer node
    # running EMLX): a distributed Nx.Serving whose results are moved to
    # Nx.BinaryBackend before they travel, checked against the same math on
    # Nx.BinaryBackend; an EMLX tensor that reaches another node raises an
    # ArgumentError that names its node and what to do; Nx.to_pointer(mode:
    # :ipc) shares a tensor between the nodes in both directions. Skipped,
    # with the reason printed, where distribution cannot start (no epmd).
    use ExUnit.Case, async: false
    @moduletag :nx

    alias EMLX.PeerHelpers

    setup_all do
      case start_peer() do
        {:ok, peer, node, started_here} ->
          on_exit(fn ->
            :peer.stop(peer)
            if started_here, do: Node.stop()
          end)

          {:ok, node: node}

        {:error, reason} ->
          IO.puts(:stderr, "\nSkipping #{inspect(__MODULE__)}: #{reason}")
          {:skip, reason}
      end
    end

    defp start_peer do
      with {:ok, started_here} <- distribution() do
        name = :"emlx_peer_#{System.unique_integer([:positive])}"
        paths = Enum.flat_map(:code.get_path(), &[~c"-pa", &1])

        case :peer.start(%{name: name, host: ~c"127.0.0.1", longnames: true, args: paths}) do
          {:ok, peer, node} ->
            :ok = :erpc.call(node, PeerHelpers, :boot, [])
            {:ok, peer, node, started_here}

          {:error, reason} ->
            {:error, "the peer node did not start: #{inspect(reason)}"}
        end
      end
    end

    # This node in distribution (started here if it is not already).
    defp distribution do
      cond do
        Node.alive?() ->
          {:ok, false}

        System.find_executable("epmd") == nil ->
          {:error, "no epmd executable, so Erlang distribution cannot start"}

        true ->
          System.cmd("epmd", ["-daemon"], stderr_to_stdout: true)

          case Node.start(:"emlx_test_#{System.unique_integer([:positive])}@127.0.0.1", :longnames) do
            {:ok, _} -> {:ok, true}
            {:error, reason} -> {:error, "Erlang distribution did not start (epmd?): #{inspect(reason)}"}
          end
      end
    end

    test "a distributed Nx.Serving on the peer answers with portable tensors", %{node: node} do
      name = :"portable_#{System.unique_integer([:positive])}"
      {:ok, _} = :erpc.call(node, PeerHelpers, :start_serving, [name, true])
      wait_for_serving(name)

      input = Nx.tensor([[1.0, 2.0], [3.0, 4.0]], backend: Nx.BinaryBackend)
      batch = Nx.Batch.concatenate([input])
      result = Nx.Serving.batched_run({:distributed, name}, batch)

      assert %Nx.Tensor{data: %Nx.BinaryBackend{}} = result
      assert result == input |> Nx.multiply(2) |> Nx.add(1)
    end

    test "an EMLX tensor from another node raises an ArgumentError that says what to do", %{node: node} do
      name = :"raw_#{System.unique_integer([:positive])}"
      {:ok, _} = :erpc.call(node, PeerHelpers, :start_serving, [name, false])
      wait_for_serving(name)

      result = Nx.Serving.batched_run({:distributed, name}, Nx.Batch.concatenate([Nx.tensor([[1.0]])]))
      assert %Nx.Tensor{data: %EMLX.Backend{ref: {_, ref}}} = result
      assert node(ref) == node

      message = ~r/lives on node #{Regex.escape(inspect(node))}.*Nx.backend_transfer.*distributed_postprocessing/
      assert_raise ArgumentError, message, fn -> Nx.to_flat_list(result) end
      assert_raise ArgumentError, message, fn -> Nx.add(result, 1) end

      tensor = :erpc.call(node, PeerHelpers, :emlx_tensor, [])
      assert_raise ArgumentError, message, fn -> EMLX.shape(EMLX.Backend.from_nx(tensor)) end
      assert_raise ArgumentError, message, fn -> EMLX.eval(EMLX.Backend.from_nx(tensor)) end
    end

    test "Nx.to_pointer(mode: :ipc) shares a tensor between the nodes, both ways", %{node: node} do
      pointer = :erpc.call(node, PeerHelpers, :ipc_pointer, [])
      assert %Nx.Pointer{kind: :ipc, handle: "/emlx_" <> _} = pointer
      here = Nx.from_pointer({EMLX.Backend, device: :cpu}, pointer, {:f, 32}, {2, 3})
      assert Nx.to_flat_list(here) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]

      mine = Nx.tensor([[1, -2], [3, 40_000]], type: :s32, backend: {EMLX.Backend, device: :cpu})
      pointer = Nx.to_pointer(mine, mode: :ipc)
      assert :erpc.call(node, PeerHelpers, :read_pointer, [pointer, {:s, 32}, {2, 2}]) == [1, -2, 3, 40_000]
    end

    # Nx.Serving's process group reaches this node shortly after the start.
    defp wait_for_serving(name, tries \\ 200) do
      cond do
        :pg.get_members(Nx.Serving.PG, name) != [] -> :ok
        tries == 0 -> flunk("the serving #{name} never became visible from this node")
        true -> Process.sleep(20) && wait_for_serving(name, tries - 1)
      end
    end
  end
end
