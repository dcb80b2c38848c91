defmodule EMLX.Build.Cuda do
  @moduledoc false
  # What MLX's CUDA build needs at run time besides libmlx, installed under
  # priv/ by the source build (EMLX.Build.Source), so precompiled CUDA
  # artifacts carry it too.

  @doc "Whether the MLX prefix is a CUDA build (its wheel ships include/cccl)."
  def cuda?(prefix), do: File.dir?(Path.join(prefix, "include/cccl"))

  # MLX's CUDA build (its wheel ships include/cccl) needs at run time:
  #   * its headers (CCCL, CUTLASS, CuTe, MLX's own), which it compiles its
  #     JIT kernels with (NVRTC) and finds at dirname(libmlx)/../include;
  #   * the CUDA 13 libraries, which libmlx's rpath finds in
  #     $ORIGIN/../../nvidia/<package>/lib, i.e. priv/nvidia (NVIDIA's
  #     nvidia-* wheels' layout, also in PyTorch's CUDA 13 environments).
  # priv/nvidia becomes a link to EMLX_CUDA_LIBS_DIR, else to the
  # site-packages/nvidia of EMLX_PYTHON (python3) that holds them, else to
  # the wheels that MLX's own wheel requires, installed once with pip into
  # the EMLX cache (a few GB).
  def install(prefix, priv) do
    headers = Path.join(priv, "mlx/include")
    stamp = Path.join(headers, ".emlx-from")

    unless File.read(stamp) == {:ok, prefix} do
      File.rm_rf!(headers)
      File.cp_r!(Path.join(prefix, "include"), headers)
      File.write!(stamp, prefix)
    end

    link = Path.join(priv, "nvidia")

    case File.lstat(link) do
      {:ok, %{type: :directory}} ->
        Mix.shell().info("emlx: keeping #{link} (a folder, not a link made by the build)")

      {:ok, %{type: :symlink}} ->
        if not complete_cuda_libs?(link), do: relink(link, cuda_libs_dir(prefix))

      _ ->
        relink(link, cuda_libs_dir(prefix))
    end

    install_cuda_crt(priv, Path.dirname(Path.dirname(prefix)))
  end

  # NVRTC compiles some of MLX's kernels (quantized matmuls) with CUDA's
  # mma.h, which includes crt/mma.h from NVIDIA's nvidia-cuda-crt wheel;
  # MLX's wheel does not require it and PyTorch's CUDA environments lack it.
  # Unless the linked libraries have it, the headers of the crt release that
  # matches their NVRTC go to priv/mlx/include/crt, a folder NVRTC searches.
  defp install_cuda_crt(priv, cache) do
    nvidia = Path.join(priv, "nvidia")
    crt = Path.join(priv, "mlx/include/crt")

    with false <- File.exists?(Path.join(nvidia, "cu13/include/crt/mma.h")),
         [builtins | _] <- Path.wildcard(Path.join(nvidia, "cu13/lib/libnvrtc-builtins.so.*")),
         [_, version] <- Regex.run(~r/\.so\.(\d+\.\d+)$/, builtins) do
      stamp = Path.join(crt, ".emlx-version")

      unless File.read(stamp) == {:ok, version} do
        from = Path.join([cache, "cuda-crt-#{version}", "nvidia/cu13/include/crt"])
        unless File.exists?(Path.join(from, "mma.h")), do: fetch_crt(version, Path.join(cache, "cuda-crt-#{version}"))
        File.rm_rf!(crt)
        File.cp_r!(from, crt)
        File.write!(stamp, version)
      end
    end
  end

  defp fetch_crt(version, dir) do
    python = System.get_env("EMLX_PYTHON", "python3")
    wheels = Path.join(dir, "wheel")
    Mix.shell().info("emlx: fetching NVIDIA's CUDA #{version} crt headers (nvidia-cuda-crt, for NVRTC) into #{dir}")
    args = ["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", wheels]

    with {_, 0} <- System.cmd(python, args ++ ["nvidia-cuda-crt==#{version}.*"], stderr_to_stdout: true),
         [wheel | _] <- Path.wildcard(Path.join(wheels, "nvidia_cuda_crt-*.whl")),
         {_, 0} <- System.cmd(python, ["-m", "zipfile", "-e", wheel, dir], stderr_to_stdout: true) do
      :ok
    else
      _ -> Mix.raise("could not fetch nvidia-cuda-crt==#{version}.* with `#{python} -m pip download`")
    end
  end

  defp relink(link, dir) do
    File.rm(link)
    File.ln_s!(dir, link)
  end

  # The libraries libmlx (CUDA 13 build) loads, and the folders of its rpath
  # under nvidia/ (CUDA 13's wheels put most in cu13/lib).
  @cuda_libs ~w(libcudart.so.13 libcublasLt.so.13 libcudnn.so.9 libcufft.so.12 libcusolver.so.12
                libnvrtc.so.13 libnccl.so.2)
  @cuda_lib_dirs ~w(cu13 cublas cuda_nvrtc cudnn cufft cusolver nccl)

  defp complete_cuda_libs?(dir) do
    Enum.all?(@cuda_libs, fn lib -> Enum.any?(@cuda_lib_dirs, &File.exists?(Path.join([dir, &1, "lib", lib]))) end)
  end

  defp cuda_libs_dir(prefix) do
    python = System.get_env("EMLX_PYTHON", "python3")
    complete? = &complete_cuda_libs?/1

    case System.get_env("EMLX_CUDA_LIBS_DIR") do
      dir when dir not in [nil, ""] ->
        complete?.(dir) ||
          Mix.raise(
            "EMLX_CUDA_LIBS_DIR=#{dir} does not hold the CUDA 13 libraries #{Enum.join(@cuda_libs, ", ")} " <>
              "in its #{Enum.join(@cuda_lib_dirs, "/, ")}/ lib folders"
          )

        Path.expand(dir)

      _ ->
        Enum.find(python_nvidia_dirs(python), complete?) || pip_cuda_libs(prefix, python, complete?)
    end
  end

  defp python_nvidia_dirs(python) do
    code = "import site; print('\\n'.join(site.getsitepackages() + [site.getusersitepackages()]))"

    case System.find_executable(python) && System.cmd(python, ["-c", code], stderr_to_stdout: true) do
      {out, 0} -> for dir <- String.split(out, "\n", trim: true), do: Path.join(dir, "nvidia")
      _ -> []
    end
  end

  defp pip_cuda_libs(prefix, python, complete?) do
    # The same cache build.rs unpacks the wheel into: <cache>/mlx-cuda-<version>/mlx.
    cache = Path.dirname(Path.dirname(prefix))
    target = Path.join(cache, "cuda13-libs")
    dir = Path.join(target, "nvidia")

    unless complete?.(dir) do
      metadata = Path.wildcard(Path.join(Path.dirname(prefix), "mlx_cuda*.dist-info/METADATA"))
      requirements = for f <- metadata, line <- File.stream!(f), req = requirement(line), do: req

      requirements != [] ||
        Mix.raise("no Requires-Dist in #{inspect(metadata)}: cannot tell which CUDA libraries MLX needs")

      Mix.shell().info(
        "emlx: installing the CUDA 13 libraries MLX's CUDA build loads (#{Enum.join(requirements, ", ")}; " <>
          "a few GB) into #{target}; set EMLX_CUDA_LIBS_DIR to a site-packages/nvidia folder to use others"
      )

      args = ["-m", "pip", "install", "--quiet", "--only-binary=:all:", "--target", target] ++ requirements

      case System.cmd(python, args, into: IO.stream(:stdio, :line), stderr_to_stdout: true) do
        {_, 0} -> :ok
        {_, status} -> Mix.raise("`#{python} -m pip install` of the CUDA 13 libraries failed (exit #{status})")
      end
    end

    dir
  end

  defp requirement("Requires-Dist: " <> req), do: if(String.contains?(req, ";"), do: nil, else: String.trim(req))
  defp requirement(_), do: nil
end
