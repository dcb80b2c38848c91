defmodule Bench.Python do
  @moduledoc """
  The raw-MLX and numpy reference: bench/ref.py in a Python virtual
  environment holding `mlx==0.32.4` with the same libmlx wheel as EMLX
  (`mlx-cpu==0.32.4`, or `mlx-cuda-13==0.32.4` for `--device gpu`) and numpy.

  The environment is created on first use under the EMLX cache directory
  (`$EMLX_CACHE_DIR`, else `~/.cache/emlx`), outside the repository, with the
  ordinary `python3 -m venv` and `pip install`. `EMLX_BENCH_PYTHON` names an
  interpreter to use instead (it must have `mlx` and `numpy`).

  When EMLX's NIF links OpenBLAS, the same OpenBLAS library is preloaded
  into Python, so raw MLX's GEMM runs on the same BLAS as EMLX's (MLX's
  wheel otherwise uses the reference BLAS it bundles). numpy keeps its own
  OpenBLAS (its symbols are prefixed, so the preload does not touch it).
  """

  @mlx "0.32.4"
  @numpy "2.4.6"

  @doc "Starts the reference driver, or returns `{:error, reason}`."
  def start(device, blas_path) do
    with {:ok, python} <- interpreter(device) do
      env =
        [{"EMLX_BENCH_DEVICE", Atom.to_string(device)}, {"PYTHONUNBUFFERED", "1"}] ++
          if(blas_path, do: [{"LD_PRELOAD", blas_path}], else: [])

      script = Path.join(__DIR__, "../ref.py") |> Path.expand()
      Bench.Driver.start("python", python, [script], env, &Bench.JSON.encode/1)
    end
  end

  defp interpreter(device) do
    case System.get_env("EMLX_BENCH_PYTHON") do
      nil -> venv(device)
      python -> {:ok, python}
    end
  end

  defp variant(:gpu), do: {"cuda", "mlx-cuda-13==#{@mlx}"}
  defp variant(_), do: {"cpu", "mlx-cpu==#{@mlx}"}

  defp venv(device) do
    {name, wheel} = variant(device)
    dir = Path.join(cache_dir(), "bench-venv-#{name}")
    python = Path.join(dir, "bin/python")
    stamp = Path.join(dir, "emlx-bench-#{@mlx}-#{@numpy}")

    if File.exists?(stamp) do
      {:ok, python}
    else
      IO.puts("Setting up the Python reference environment in #{dir} (mlx==#{@mlx}, #{wheel}, numpy==#{@numpy})")
      python3 = System.find_executable("python3") || System.find_executable("python")

      with true <- python3 != nil || {:error, "no python3 on PATH"},
           :ok <- cmd(python3, ["-m", "venv", dir]),
           :ok <- cmd(python, ["-m", "pip", "install", "--quiet", "mlx==#{@mlx}", wheel, "numpy==#{@numpy}"]) do
        File.write!(stamp, "")
        {:ok, python}
      end
    end
  end

  defp cmd(exe, args) do
    case System.cmd(exe, args, stderr_to_stdout: true) do
      {_, 0} -> :ok
      {out, status} -> {:error, "`#{Enum.join([exe | args], " ")}` failed (#{status}): #{String.slice(out, -400, 400)}"}
    end
  end

  @doc false
  # The EMLX cache directory, as the build and EMLX itself find it.
  def cache_dir, do: EMLX.NIF.cache_dir()
end

defmodule Bench.JSON do
  @moduledoc "A small JSON encoder (the bench runs on Elixir versions without JSON)."

  def encode(nil), do: "null"
  def encode(true), do: "true"
  def encode(false), do: "false"
  def encode(x) when is_atom(x), do: encode(Atom.to_string(x))
  def encode(x) when is_integer(x), do: Integer.to_string(x)
  def encode(x) when is_float(x), do: :erlang.float_to_binary(x, [:short])
  def encode(x) when is_binary(x), do: [?", escape(x), ?"] |> IO.iodata_to_binary()

  def encode(x) when is_list(x), do: IO.iodata_to_binary([?[, Enum.map_join(x, ",", &encode/1), ?]])

  def encode(x) when is_tuple(x), do: encode(Tuple.to_list(x))

  def encode(%{} = m) do
    body = Enum.map_join(m, ",", fn {k, v} -> encode(to_string(k)) <> ":" <> encode(v) end)
    "{" <> body <> "}"
  end

  @doc "Indented JSON for files people read."
  def pretty(x, indent \\ "")

  def pretty(%{} = m, indent) when map_size(m) > 0 do
    inner = indent <> "  "

    body =
      m
      |> Enum.sort_by(fn {k, _} -> to_string(k) end)
      |> Enum.map_join(",\n", fn {k, v} -> inner <> encode(to_string(k)) <> ": " <> pretty(v, inner) end)

    "{\n" <> body <> "\n" <> indent <> "}"
  end

  def pretty(x, indent) when is_list(x) and x != [] do
    inner = indent <> "  "
    "[\n" <> Enum.map_join(x, ",\n", &(inner <> pretty(&1, inner))) <> "\n" <> indent <> "]"
  end

  def pretty(x, _indent), do: encode(x)

  defp escape(s) do
    for <<c::utf8 <- s>>, into: "" do
      case c do
        ?" -> "\\\""
        ?\\ -> "\\\\"
        ?\n -> "\\n"
        ?\t -> "\\t"
        c when c < 0x20 -> "\\u" <> String.pad_leading(Integer.to_string(c, 16), 4, "0")
        c -> <<c::utf8>>
      end
    end
  end
end
