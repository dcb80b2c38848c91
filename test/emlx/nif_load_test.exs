defmodule EMLX.NIFLoadTest do
  # What a user is told when the NIF does not load: the loader's message
  # (erlang:load_nif/2's {Reason, Text}, as EMLX.NIF stores it) mapped to
  # the library that is missing and what to do. The inputs are the texts
  # glibc's dynamic loader gives.
  use ExUnit.Case, async: true

  defp load_failed(missing),
    do:
      "load_failed: Failed to load NIF library /app/priv/libemlx.so: " <>
        "'#{missing}: cannot open shared object file: No such file or directory'"

  test "the NIF itself is not built: run mix compile" do
    text =
      "load_failed: Failed to load NIF library: '/app/priv/libemlx.so: cannot open shared object file: No such file or directory'"

    assert EMLX.NIF.explain_load_error(text) =~ ~r/native library is not built .* Run `mix compile`/
  end

  test "the NVIDIA driver's libcuda is missing: says it is a CUDA build and what to build instead" do
    msg = EMLX.NIF.explain_load_error(load_failed("libcuda.so.1"))
    assert msg =~ "libcuda.so.1 comes with NVIDIA's GPU driver"
    assert msg =~ "EMLX_MLX_VARIANT=cpu"
    refute msg =~ "Run `mix compile`"
  end

  test "a CUDA 13 library is missing: names it, its wheel, and EMLX_CUDA_LIBS_DIR" do
    for {lib, wheel} <- [
          {"libcublasLt.so.13", "nvidia-cublas"},
          {"libcudnn.so.9", "nvidia-cudnn-cu13"},
          {"libcufft.so.12", "nvidia-cufft"},
          {"libnvrtc.so.13", "nvidia-cuda-nvrtc"},
          {"libnccl.so.2", "nvidia-nccl-cu13"}
        ] do
      msg = EMLX.NIF.explain_load_error(load_failed(lib))
      assert msg =~ "#{lib} (from NVIDIA's #{wheel} wheel) was not found"
      assert msg =~ "EMLX_CUDA_LIBS_DIR"
    end
  end

  test "OpenBLAS and libmlx" do
    assert EMLX.NIF.explain_load_error(load_failed("libopenblas.so.0")) =~ "apt-get install libopenblas0"
    assert EMLX.NIF.explain_load_error(load_failed("libmlx.so")) =~ "libmlx.so is missing from priv/mlx/lib"
  end

  test "anything else keeps the loader's text and the rebuild advice" do
    msg = EMLX.NIF.explain_load_error("bad_lib: Library not found")
    assert msg =~ "(bad_lib: Library not found)"
    assert msg =~ "Run `mix compile`"
    assert EMLX.NIF.explain_load_error(nil) =~ "unknown reason"
  end

  test "a loaded NIF: a GPU build has MLX's PTX cache set before MLX reads it" do
    assert EMLX.NIF.load_error() == nil

    if EMLX.NIF.gpu_available() and :os.type() == {:unix, :linux} do
      assert System.get_env("MLX_PTX_CACHE_DIR") not in [nil, ""]
    end
  end
end
