defmodule EMLX.Build.RuntimeCheck do
  @moduledoc false
  # After an install on Linux: asks the dynamic loader (ldd) which libraries
  # the NIF would not find here, and says what provides them. A warning, not
  # an error: the machine that compiles may not be the one that runs.

  @hints [
    {~r/^libopenblas/, "OpenBLAS (Debian/Ubuntu: apt-get install libopenblas0-pthread)"},
    {~r/^lib(gfortran|quadmath)/, "the Fortran runtime OpenBLAS uses (Debian/Ubuntu: apt-get install libgfortran5)"},
    {~r/^libcuda\.so/,
     "an NVIDIA driver (CUDA 13 needs driver 580 or newer); without an NVIDIA GPU use the cpu variant: unset EMLX_MLX_VARIANT"},
    {~r/^lib(cublas|cudart|cudnn|cufft|cusolver|cusparse|nccl|nvrtc|nvJitLink)/,
     "the CUDA 13 libraries MLX's cuda build loads (see \"NVIDIA GPU\" in the getting-started guide)"}
  ]

  @doc "Warning lines for `priv`, or `[]` when everything resolves (or ldd is unavailable)."
  def warnings(priv, os \\ :os.type()) do
    nif = Path.join(priv, "libemlx.so")
    ldd = System.find_executable("ldd")

    with {:unix, :linux} <- os,
         true <- ldd != nil and File.regular?(nif),
         {out, _} <- System.cmd(ldd, [nif], stderr_to_stdout: true) do
      out |> missing_libraries() |> Enum.map(&advice/1)
    else
      _ -> []
    end
  end

  @doc "The library names an `ldd` listing reports as not found."
  def missing_libraries(ldd_output) do
    for line <- String.split(ldd_output, "\n"),
        [_, name] <- [Regex.run(~r/^\s*(\S+)\s+=>\s+not found/, line)],
        uniq: true,
        do: name
  end

  @doc "What to install for a library the loader cannot find."
  def advice(name) do
    hint = Enum.find_value(@hints, "the package that provides it", fn {re, text} -> Regex.match?(re, name) && text end)
    "#{name} not found: install #{hint}"
  end

  @doc "Prints the warnings, if any, saying the NIF will not load until they are fixed."
  def report(priv) do
    case warnings(priv) do
      [] ->
        :ok

      lines ->
        Mix.shell().error(
          "emlx: warning: #{Path.join(priv, "libemlx.so")} will not load on this machine until these " <>
            "libraries are found:\n" <> Enum.map_join(lines, "\n", &"  - #{&1}")
        )
    end
  end
end
