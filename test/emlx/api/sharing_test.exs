defmodule EMLX.API.SharingTest do
  # tensor_data_ptr/1, tensor_to_shm/2, shm_unlink/1. Segments are read
  # back through the file system (/dev/shm on Linux), independently of MLX.
  use ExUnit.Case, async: true
  import EMLX.FusedOracle

  @moduletag :shm

  defp shm_path("/" <> name), do: Path.join("/dev/shm", name)

  setup_all do
    if File.dir?("/dev/shm"), do: :ok, else: {:skip, "no /dev/shm on this system"}
  end

  describe "tensor_to_shm/2" do
    test "the segment holds the tensor's row-major bytes" do
      t = tensor(rand({3, 4}, 1))
      {name, size} = EMLX.tensor_to_shm(t, 0o600)
      # The original EMLX's prefix (tools that sweep stale segments look for it).
      assert String.starts_with?(name, "/emlx_")
      assert size == 48
      assert File.read!(shm_path(name)) == EMLX.to_blob(t)
      assert EMLX.shm_unlink(name) == :ok
      refute File.exists?(shm_path(name))
    end

    test "a transposed tensor is written in its logical (row-major) order" do
      data = [[1, 2, 3], [4, 5, 6]]
      t = EMLX.transpose(tensor(data, :int32), [1, 0])
      {name, 24} = EMLX.tensor_to_shm(t, 0o600)
      expected = for x <- [1, 4, 2, 5, 3, 6], into: <<>>, do: <<x::signed-32-native>>
      assert File.read!(shm_path(name)) == expected
      EMLX.shm_unlink(name)
    end

    test "a lazy result is evaluated first" do
      t = EMLX.add(tensor([1.5, 2.5]), tensor([1.0, 1.0]))
      {name, 8} = EMLX.tensor_to_shm(t, 0o600)
      assert File.read!(shm_path(name)) == <<2.5::float-32-native, 3.5::float-32-native>>
      EMLX.shm_unlink(name)
    end

    test "the permission bits are applied (within the umask)" do
      {name, _} = EMLX.tensor_to_shm(tensor([1.0]), 0o400)
      assert Bitwise.band(File.stat!(shm_path(name)).mode, 0o777) == 0o400
      EMLX.shm_unlink(name)
    end

    test "an empty tensor gives an empty segment" do
      t = EMLX.reshape(tensor([], :float32), {0, 3})
      {name, 0} = EMLX.tensor_to_shm(t, 0o600)
      assert File.read!(shm_path(name)) == <<>>
      EMLX.shm_unlink(name)
    end

    test "every call makes a new segment" do
      t = tensor([7], :uint8)
      names = for _ <- 1..20, do: elem(EMLX.tensor_to_shm(t, 0o600), 0)
      assert length(Enum.uniq(names)) == 20
      Enum.each(names, &EMLX.shm_unlink/1)
    end
  end

  describe "shm_unlink/1" do
    test "unlinking twice, or a name never created, is :ok" do
      {name, _} = EMLX.tensor_to_shm(tensor([1.0]), 0o600)
      assert EMLX.shm_unlink(name) == :ok
      assert EMLX.shm_unlink(name) == :ok
      assert EMLX.shm_unlink("/emlx-test-absent") == :ok
    end
  end

  describe "tensor_data_ptr/1" do
    test "gives a stable address and the byte size of the evaluated tensor" do
      t = EMLX.multiply(tensor(rand({4, 5}, 2)), tensor(2.0))
      {address, size} = EMLX.tensor_data_ptr(t)
      assert is_integer(address) and address > 0
      assert size == 80
      assert EMLX.tensor_data_ptr(t) == {address, size}
    end

    test "a strided view is made contiguous once, keeping its values" do
      data = rand({3, 4}, 3)
      t = EMLX.transpose(tensor(data), [1, 0])
      {address, 48} = EMLX.tensor_data_ptr(t)
      assert EMLX.tensor_data_ptr(t) == {address, 48}
      assert to_list(t) == transpose(data)
      assert EMLX.strides(t) == [3, 1]
    end

    test "an empty tensor gives {0, 0}" do
      assert EMLX.tensor_data_ptr(EMLX.reshape(tensor([], :float32), {0})) == {0, 0}
    end

    test "two tensors sharing a buffer report the same address; distinct ones differ" do
      a = tensor([1.0, 2.0])
      {pa, 8} = EMLX.tensor_data_ptr(a)
      {pb, 8} = EMLX.tensor_data_ptr(EMLX.reshape(a, {2, 1}))
      {pc, 8} = EMLX.tensor_data_ptr(tensor([1.0, 2.0]))
      assert pa == pb
      assert pa != pc
    end
  end
end
