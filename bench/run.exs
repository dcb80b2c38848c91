# EMLX benchmark: EMLX side by side with raw MLX (same libmlx), numpy and
# Nx.BinaryBackend, measured in the same run, interleaved.
#
#   mix run bench/run.exs [options]
#
#   --only NAMES      comma-separated workload groups or ids (prefixes work):
#                     dispatch, round_trip, matmul, elementwise, sum, softmax,
#                     mlp, sdpa, binary, blas, small, gpu (--device gpu only);
#                     e.g. --only matmul_f32_1024,sum
#   --device cpu|gpu  where EMLX and raw MLX run (default cpu; gpu needs an
#                     MLX build with a GPU, and uses mlx-cuda-13 in Python)
#   --quick           fewer, shorter repetitions (a smoke run, noisier)
#   --budget SECONDS  time each runner's samples of one workload may take (default 3)
#   --binary-timeout SECONDS  skip Nx.BinaryBackend where one run takes longer (default 3)
#   --no-python       skip the raw MLX and numpy references
#   --publish         also write bench/RESULTS.md (the committed table; with
#                     --device gpu, bench/RESULTS-gpu.md)
#   --list            list the workloads and exit
#
# Writes bench/results/latest.md and latest.json (git-ignored) and prints the
# table. See bench/README.md.

harness = Path.join(__DIR__, "harness")

# nx_*.exs only where Nx is available. Compiled together: they call each other.
nx = if Code.ensure_loaded?(Nx), do: ~w(nx_work nx_block), else: []
# compiler.exs: the compiler: EMLX rows, where EMLX.Backend is part of the build.
nx = if Code.ensure_loaded?(Nx) and Code.ensure_loaded?(EMLX.Backend), do: nx ++ ~w(compiler), else: nx

files =
  for f <- ~w(measure driver python report blas workloads small data_in gpu_workloads) ++ nx,
      do: Path.join(harness, "#{f}.exs")

{:ok, _modules, _warnings} = Kernel.ParallelCompiler.require(files)

defmodule Bench.Run do
  @switches [
    only: :string,
    device: :string,
    quick: :boolean,
    budget: :float,
    binary_timeout: :float,
    python: :boolean,
    publish: :boolean,
    list: :boolean,
    help: :boolean
  ]

  def main(argv) do
    {opts, rest, invalid} = OptionParser.parse(argv, strict: @switches)

    if invalid != [] or rest != [] or opts[:help] do
      IO.puts(usage())
      if opts[:help], do: System.halt(0), else: System.halt(1)
    end

    device =
      case opts[:device] || "cpu" do
        "cpu" -> :cpu
        "gpu" -> :gpu
        other -> abort("--device must be cpu or gpu, got #{other}")
      end

    if device == :gpu and not EMLX.NIF.gpu_available() do
      abort("--device gpu: this EMLX build's MLX has no GPU (build with EMLX_MLX_VARIANT=cuda on an NVIDIA machine)")
    end

    measure_opts =
      if opts[:quick],
        do: [budget_ms: 500, min_reps: 3, max_reps: 10, rep_ms: 2],
        else: [budget_ms: 3000, min_reps: 7, max_reps: 40, rep_ms: 5]

    measure_opts =
      if b = opts[:budget], do: Keyword.put(measure_opts, :budget_ms, round(b * 1000)), else: measure_opts

    binary_ms = round((opts[:binary_timeout] || if(opts[:quick], do: 1.0, else: 3.0)) * 1000)
    load_start = loadavg()
    blas = EMLX.blas_info()

    if opts[:list] do
      ctx = context(device, nil, "--list", blas, binary_ms)
      for w <- Bench.Workloads.all(ctx), do: IO.puts("#{String.pad_trailing(w.group, 12)} #{w.id}: #{w.title}")
      System.halt(0)
    end

    {py, py_why, py_info} =
      if Keyword.get(opts, :python, true) do
        case Bench.Python.start(device, preload(blas)) do
          {:ok, d} -> {d, nil, d.info}
          {:error, reason} -> {nil, "Python reference unavailable: #{reason}", "unavailable (#{reason})"}
        end
      else
        {nil, "--no-python", "not run (--no-python)"}
      end

    ctx = context(device, py, py_why, blas, binary_ms)
    workloads = select(Bench.Workloads.all(ctx), opts[:only])
    total = length(workloads)

    measured =
      workloads
      |> Enum.with_index(1)
      |> Enum.map(fn {w, i} ->
        IO.write("[#{i}/#{total}] #{w.id} ... ")
        results = Bench.Measure.run(w.runners, Keyword.merge(measure_opts, w[:measure] || []))
        w = Map.merge(w, %{results: results, rows: []})
        w = %{w | rows: Bench.Report.rows(w, results)}
        IO.puts(summary(w))
        w
      end)

    Bench.Blas.stop()
    if py, do: Bench.Driver.stop(py)

    meta = meta(device, blas, py_info, load_start, argv)
    write(meta, measured, opts[:publish])
  end

  defp context(device, py, py_why, blas, binary_ms) do
    %{
      device: device,
      py: py,
      py_why: py_why,
      blas: blas,
      nx?: Code.ensure_loaded?(Nx),
      backend?: Code.ensure_loaded?(EMLX.Backend),
      backend: {EMLX.Backend, device: device},
      binary_ms: binary_ms
    }
  end

  defp select(workloads, nil), do: workloads

  defp select(workloads, only) do
    names = String.split(only, ",", trim: true)
    picked = Enum.filter(workloads, fn w -> Enum.any?(names, &(w.group == &1 or String.starts_with?(w.id, &1))) end)
    if picked == [], do: abort("--only #{only} matches no workload (see --list)")
    picked
  end

  defp summary(w) do
    w.runners
    |> Enum.map(fn r ->
      case w.results[r.id] do
        %{status: :ok, median: m} -> "#{r.label} #{Bench.Report.fmt_time(m / (w[:per] || 1))}"
        %{status: :skipped} -> "#{r.label} skipped"
      end
    end)
    |> Enum.join(", ")
  end

  defp write(meta, measured, publish?) do
    dir = Path.join(__DIR__, "results")
    File.mkdir_p!(dir)
    md = Bench.Report.markdown(meta, measured)

    json =
      Bench.JSON.pretty(%{
        meta: meta,
        workloads:
          Enum.map(measured, fn w ->
            Map.take(w, [:id, :group, :title, :size, :dtype, :per, :unit, :flops, :bytes, :notes, :rows])
            |> Map.put(:device, meta.device)
            |> Map.put(:goals, Map.new(w.goals, fn {k, v} -> {k, Tuple.to_list(v)} end))
          end)
      })

    File.write!(Path.join(dir, "latest.md"), md)
    File.write!(Path.join(dir, "latest.json"), json <> "\n")
    stamp = String.replace(meta.date, ~r/[^0-9]/, "")
    File.write!(Path.join(dir, "#{stamp}.json"), json <> "\n")
    published = if meta.device == :gpu, do: "RESULTS-gpu.md", else: "RESULTS.md"
    if publish?, do: File.write!(Path.join(__DIR__, published), md)

    IO.puts("\n" <> md)
    IO.puts("Wrote #{Path.relative_to_cwd(dir)}/latest.md and latest.json#{if publish?, do: " and bench/#{published}"}")
  end

  defp meta(device, blas, py_info, load_start, argv) do
    root = Path.expand("..", __DIR__)

    %{
      command: command(argv),
      device: device,
      date: DateTime.utc_now() |> DateTime.truncate(:second) |> DateTime.to_iso8601(),
      cpu: cpu_model(),
      cores:
        :erlang.system_info(:logical_processors_available)
        |> then(&if(is_integer(&1), do: &1, else: System.schedulers_online())),
      memory: mem_total(),
      load_start: load_start,
      load_end: loadavg(),
      commit: commit(root),
      otp: System.otp_release(),
      elixir: System.version(),
      nx: if(Code.ensure_loaded?(Nx), do: to_string(Application.spec(:nx, :vsn)), else: "not available"),
      backend: if(Code.ensure_loaded?(EMLX.Backend), do: "present", else: "not in this build"),
      blas: blas,
      coretype: blas_env(),
      python: py_info
    }
  end

  # The command line that reproduces this run, with the environment
  # variables that change its figures.
  defp command(argv) do
    env = for v <- ~w(OPENBLAS_NUM_THREADS OPENBLAS_CORETYPE EMLX_NO_NX), x = System.get_env(v), do: "#{v}=#{x} "
    Enum.join(env) <> Enum.join(["mix run bench/run.exs" | argv], " ")
  end

  # OpenBLAS settings from the environment (they reach the Python and
  # second-BEAM references too).
  defp blas_env do
    case for v <- ~w(OPENBLAS_NUM_THREADS OPENBLAS_CORETYPE), x = System.get_env(v), do: "#{v}=#{x}" do
      [] -> ""
      set -> " (#{Enum.join(set, ", ")})"
    end
  end

  # What the Python reference preloads so that raw MLX's cblas_*/LAPACK
  # calls bind to the NIF's BLAS too: the trampolines in front of the wheel's
  # OpenBLAS, or the system OpenBLAS itself.
  defp preload(%{kind: "openblas (scipy-openblas32 wheel)", sgemm_from: shim}), do: shim
  defp preload(%{kind: "openblas (system)", library: lib}), do: lib
  defp preload(_), do: nil

  defp cpu_model do
    with {:ok, info} <- File.read("/proc/cpuinfo"),
         [_, model] <- Regex.run(~r/model name\s*:\s*(.+)/, info) do
      String.trim(model)
    else
      _ -> to_string(:erlang.system_info(:system_architecture))
    end
  end

  defp mem_total do
    with {:ok, info} <- File.read("/proc/meminfo"),
         [_, kb] <- Regex.run(~r/MemTotal:\s*(\d+) kB/, info) do
      "#{div(String.to_integer(kb), 1024 * 1024)} GiB RAM"
    else
      _ -> "unknown RAM"
    end
  end

  defp loadavg do
    case File.read("/proc/loadavg") do
      {:ok, s} -> s |> String.split() |> Enum.take(3) |> Enum.join(" ")
      _ -> "unknown"
    end
  end

  defp commit(root) do
    case System.cmd("git", ["-C", root, "describe", "--always", "--dirty"], stderr_to_stdout: true) do
      {out, 0} -> "commit " <> String.trim(out)
      _ -> "(not a git checkout)"
    end
  end

  defp abort(msg) do
    IO.puts(:stderr, msg)
    System.halt(1)
  end

  defp usage do
    File.read!(__ENV__.file)
    |> String.split("\n")
    |> Enum.take_while(&String.starts_with?(&1, "#"))
    |> Enum.map_join("\n", &String.replace(&1, ~r/^# ?/, ""))
  end
end

Bench.Run.main(System.argv())
