defmodule EMLX.API.ToDeviceTest do
  # EMLX.to_device/2 and the backend's copies across devices. This machine
  # may have no GPU: the same-device path and the error for :gpu on a
  # CPU-only build are checked everywhere; the move itself where MLX has a GPU.
  use ExUnit.Case, async: true
  import EMLX.FusedOracle

  @gpu EMLX.NIF.gpu_available()

  test "to_device to the tensor's own device is the tensor itself (no copy)" do
    t = tensor(rand({2, 3}, 1))
    {device, _} = t
    assert EMLX.to_device(t, device) === t
    lazy = EMLX.add(t, t)
    assert EMLX.to_device(lazy, device) === lazy
  end

  test "bad arguments raise ArgumentError" do
    t = tensor([1.0])
    assert_raise ArgumentError, ~r/unknown device :tpu/, fn -> EMLX.to_device(t, :tpu) end
    assert_raise ArgumentError, ~r/to_device: expected an EMLX tensor/, fn -> EMLX.to_device(:nope, :cpu) end
  end

  if @gpu do
    test "to_device moves values to the GPU and back, leaving the source usable" do
      data = rand({3, 4}, 2)
      t = EMLX.multiply(tensor(data), tensor(2.0))
      g = EMLX.to_device(t, :gpu)
      assert elem(g, 0) == :gpu
      back = EMLX.to_device(g, :cpu)
      assert elem(back, 0) == :cpu
      expected = map_leaves(data, &(&1 * 2.0))
      assert_close(to_list(back), expected, 0.0)
      assert_close(to_list(t), expected, 0.0)
    end
  else
    test "to_device(:gpu) on a CPU-only build says there is no GPU" do
      assert_raise ArgumentError, ~r/no GPU queue: this MLX build has no GPU/, fn ->
        EMLX.to_device(tensor([1.0]), :gpu)
      end
    end
  end

  if Code.ensure_loaded?(Nx) do
    test "Nx.backend_copy/transfer to the same device keep the values and the device" do
      t = Nx.tensor([[1.0, 2.0], [3.0, 4.0]], backend: {EMLX.Backend, device: :cpu})
      copy = Nx.backend_copy(t, {EMLX.Backend, device: :cpu})
      assert Nx.to_flat_list(copy) == [1.0, 2.0, 3.0, 4.0]
      assert {:cpu, _} = EMLX.Backend.from_nx(copy)
      # The copy outlives a deallocation of the original.
      Nx.backend_deallocate(t)
      assert Nx.to_flat_list(copy) == [1.0, 2.0, 3.0, 4.0]
    end

    unless @gpu do
      test "Nx.backend_transfer to the GPU on a CPU-only build raises with what to do" do
        t = Nx.tensor([1.0], backend: {EMLX.Backend, device: :cpu})
        assert_raise ArgumentError, ~r/no GPU/, fn -> Nx.backend_transfer(t, {EMLX.Backend, device: :gpu}) end
        # The source is still there.
        assert Nx.to_flat_list(t) == [1.0]
      end
    end
  end
end
