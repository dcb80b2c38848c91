defmodule Bench.Workloads do
  @moduledoc """
  The fixed set of workloads. Each is a map: `id`, `group` (what `--only`
  matches), `title`, `size`, `dtype`, optional `per`/`unit` (a call does
  `per` units of work: the dispatch chain reports time per op), `flops` or
  `bytes` (for a rate), `goals` (`%{reference_id => goal}`), `notes`, and
  `runners` (see Bench.Measure).

  Subjects: `:emlx` (the `EMLX` functions, no Nx needed) and `:nx_emlx`
  (Nx with `EMLX.Backend`). References: `:mlx` (raw MLX in Python, same
  libmlx), `:numpy`, `:binary` (Nx.BinaryBackend), memcpy, and the EMLX
  build without OpenBLAS. Every side builds its data with the same formula,
  `sin(iota * scale)`, so they compute on the same values.
  """

  alias Bench.Measure

  @mib 1024 * 1024

  # Workloads that run GEMMs pause before each sample (see Bench.Measure).
  @blas_settle [settle_ms: String.to_integer(System.get_env("EMLX_BENCH_SETTLE_MS", "150")), max_reps: 15]
  @big 16 * @mib

  @doc "All workloads for a context (device, reference drivers, what is loaded)."
  def all(ctx) do
    # function_exported?/3 does not load modules: load the ones asked about.
    Code.ensure_loaded!(EMLX)

    [
      dispatch(ctx, :build),
      dispatch(ctx, :eval),
      round_trip(ctx),
      matmul(ctx, 256, :float32),
      matmul(ctx, 1024, :float32),
      matmul(ctx, 2048, :float32),
      matmul(ctx, 1024, :bfloat16),
      elementwise(ctx),
      sum(ctx, "sum_8k", [8192], [0]),
      sum(ctx, "sum_20k", [20_000], [0]),
      sum(ctx, "sum_100k", [100_000], [0]),
      sum(ctx, "sum_1m", [1_000_000], [0]),
      sum(ctx, "sum_rows_32k", [64, 32_768], [1]),
      sum(ctx, "sum_all", [@big], [0]),
      sum(ctx, "sum_axis1", [4096, 4096], [1]),
      sum(ctx, "sum_axis0", [4096, 4096], [0]),
      softmax(ctx),
      mlp(ctx),
      sdpa(ctx),
      to_binary(ctx),
      from_binary(ctx, "from_binary", 64 * @mib, "64 MiB"),
      from_binary(ctx, "from_binary_16b", 16, "4 elements"),
      blas(ctx)
    ] ++ Bench.DataIn.all(ctx) ++ Bench.Small.all(ctx) ++ Bench.GpuWorkloads.all(ctx) ++ compiler(ctx)
  end

  # compiler: EMLX rows (bench/harness/compiler.exs), where Nx is loaded.
  defp compiler(ctx) do
    if Code.ensure_loaded?(Bench.CompilerWorkloads), do: apply(Bench.CompilerWorkloads, :all, [ctx]), else: []
  end

  ## Data (EMLX functions)

  @doc "sin(i * scale) for i in 0..n-1, evaluated, as `type`."
  def wave(n, scale, type, device) do
    t = EMLX.arange(0, n, 1, false, device) |> EMLX.multiply(EMLX.scalar_tensor(scale, :float32, device))
    t = EMLX.sin(t)
    t = if type == :float32, do: t, else: EMLX.astype(t, type)
    ready(t)
  end

  defp ready(t) do
    EMLX.eval(t)
    t
  end

  defp matmul_fun do
    if function_exported?(EMLX, :matmul, 2),
      do: {&apply(EMLX, :matmul, [&1, &2]), "EMLX.matmul"},
      else: {&EMLX.tensordot(&1, &2, [1], [0]), "EMLX.tensordot (no EMLX.matmul in this build)"}
  end

  ## Runner helpers

  def emlx(setup), do: Measure.local(:emlx, "EMLX", :subject, setup)

  def mlx(ctx, workload, params, id \\ :mlx, label \\ "raw MLX") do
    Bench.Driver.runner(ctx.py, id, label, :reference, %{impl: "mlx", workload: workload, params: params}, ctx.py_why)
  end

  # numpy always runs on the CPU, also in --device gpu runs.
  def numpy(ctx, workload, params, id \\ :numpy, label \\ "numpy") do
    label = if ctx.device == :gpu, do: label <> " (CPU)", else: label
    Bench.Driver.runner(ctx.py, id, label, :reference, %{impl: "numpy", workload: workload, params: params}, ctx.py_why)
  end

  # The Nx-level runners: EMLX.Backend as a subject, Nx.BinaryBackend as a
  # reference. Without Nx neither runs; without EMLX.Backend only the first
  # is skipped.
  def nx(ctx, workload, params, opts \\ []) do
    subject =
      cond do
        not ctx.nx? -> skip(:nx_emlx, "Nx + EMLX.Backend", :subject, "Nx is not available")
        not ctx.backend? -> skip(:nx_emlx, "Nx + EMLX.Backend", :subject, "EMLX.Backend is not in this build yet")
        true -> nx_runner(:nx_emlx, "Nx + EMLX.Backend", :subject, workload, params, ctx.backend, [])
      end

    binary =
      cond do
        opts[:binary] == false ->
          nil

        not ctx.nx? ->
          skip(:binary, "Nx.BinaryBackend", :reference, "Nx is not available")

        true ->
          nx_runner(:binary, "Nx.BinaryBackend", :reference, workload, params, Nx.BinaryBackend,
            timeout_ms: ctx.binary_ms
          )
      end

    Enum.reject([subject, binary], &is_nil/1)
  end

  defp nx_runner(id, label, role, workload, params, backend, extra) do
    Measure.local(id, label, role, fn -> apply(Bench.NxWork, :build, [workload, params, backend]) end, extra)
  end

  @doc "A runner that does not run, and says why."
  def skip(id, label, role, reason), do: %{id: id, label: label, role: role, prepare: fn -> {:skip, reason} end}

  ## Workloads

  @ops 1000

  defp dispatch(ctx, mode) do
    d = ctx.device

    chain = fn x0, c ->
      Enum.reduce(1..@ops, x0, fn _, x -> EMLX.add(x, c) end)
    end

    {id, title, binary?} =
      case mode do
        :build -> {"dispatch_build", "lazy-op dispatch: build #{@ops} adds, no eval", false}
        :eval -> {"dispatch_eval", "lazy-op dispatch: build #{@ops} adds + one eval", true}
      end

    emlx =
      emlx(fn ->
        c = EMLX.full(1.0e-3, {4}, :float32, d) |> ready()
        x0 = wave(4, 0.001, :float32, d)

        if mode == :build,
          do: fn -> chain.(x0, c) end,
          else: fn -> chain.(x0, c) |> EMLX.eval() end
      end)

    # Tiny results are computed as they are built (EMLX.lazy/1): the same
    # chain kept lazy shows what building the graph alone costs.
    lazy =
      Measure.local(:emlx_lazy, "EMLX, kept lazy (EMLX.lazy/1)", :subject, fn ->
        c = EMLX.full(1.0e-3, {4}, :float32, d) |> ready()
        x0 = wave(4, 0.001, :float32, d)

        if mode == :build,
          do: fn -> EMLX.lazy(fn -> chain.(x0, c) end) end,
          else: fn -> EMLX.lazy(fn -> chain.(x0, c) end) |> EMLX.eval() end
      end)

    %{
      id: id,
      group: "dispatch",
      title: title,
      size: "#{@ops} x add of 4 elements",
      dtype: "f32",
      per: @ops,
      unit: "op",
      # Issue 12: lazy dispatch through EMLX.Backend at most raw MLX + 1.5 µs an op.
      goals: %{mlx: {:max_diff, 1500.0}},
      runners: [emlx, lazy, mlx(ctx, id, %{ops: @ops})] ++ nx(ctx, String.to_atom(id), %{ops: @ops}, binary: binary?),
      notes: []
    }
  end

  defp round_trip(ctx) do
    d = ctx.device

    emlx =
      emlx(fn ->
        a = wave(4, 0.001, :float32, d)
        b = EMLX.cos(a) |> ready()
        fn -> EMLX.add(a, b) |> EMLX.to_blob() end
      end)

    %{
      id: "round_trip",
      group: "round_trip",
      title: "eval round trip: add + to_binary",
      size: "4 elements",
      dtype: "f32",
      goals: %{mlx: {:max_ratio, 1.2}},
      runners: [emlx, mlx(ctx, "round_trip", %{}), numpy(ctx, "round_trip", %{})] ++ nx(ctx, :round_trip, %{}),
      notes: []
    }
  end

  defp matmul(ctx, n, type) do
    d = ctx.device
    {mm, how} = matmul_fun()

    emlx =
      emlx(fn ->
        a = wave(n * n, 0.001, type, d) |> EMLX.reshape({n, n}) |> ready()
        b = EMLX.cos(a) |> ready()
        fn -> mm.(a, b) |> EMLX.eval() end
      end)

    params = %{n: n, dtype: Atom.to_string(type)}
    short = if type == :float32, do: "f32", else: "bf16"

    %{
      id: "matmul_#{short}_#{n}",
      measure: @blas_settle,
      group: "matmul",
      title: "matmul",
      size: "#{n}x#{n} @ #{n}x#{n}",
      dtype: short,
      flops: 2 * n * n * n,
      goals: if(n == 1024 and type == :float32, do: %{numpy: {:min_speed, 0.8}}, else: %{}),
      runners: [emlx, mlx(ctx, "matmul", params), numpy(ctx, "matmul", params)] ++ nx(ctx, :matmul, params),
      notes: ["EMLX side: #{how}"]
    }
  end

  defp elementwise(ctx) do
    d = ctx.device

    emlx =
      emlx(fn ->
        x = wave(@big, 0.001, :float32, d)
        y = EMLX.cos(x) |> ready()
        z = EMLX.sin(y) |> ready()
        fn -> EMLX.exp(x) |> EMLX.multiply(y) |> EMLX.add(z) |> EMLX.eval() end
      end)

    # The same, with the intermediate tensors' handles dropped before the
    # eval: then MLX may reuse their buffers in place, as it does for raw
    # MLX, whose Python temporaries are gone by the time mx.eval runs.
    dealloc =
      Measure.local(:emlx_dealloc, "EMLX, intermediates deallocated before eval", :subject, fn ->
        x = wave(@big, 0.001, :float32, d)
        y = EMLX.cos(x) |> ready()
        z = EMLX.sin(y) |> ready()

        fn ->
          e = EMLX.exp(x)
          m = EMLX.multiply(e, y)
          r = EMLX.add(m, z)
          EMLX.deallocate(e)
          EMLX.deallocate(m)
          EMLX.eval(r)
        end
      end)

    %{
      id: "elementwise",
      group: "elementwise",
      title: "element-wise exp(x) * y + z",
      size: "16M",
      dtype: "f32",
      bytes: 4 * @big * 4,
      goals: %{mlx: {:min_speed, 0.95}},
      runners:
        [emlx, dealloc, mlx(ctx, "elementwise", %{n: @big}), numpy(ctx, "elementwise", %{n: @big})] ++
          nx(ctx, :elementwise, %{n: @big}),
      notes: [
        "EMLX keeps every intermediate alive until the BEAM collects it, so MLX cannot reuse their buffers " <>
          "in place; the second EMLX row drops them first (EMLX.deallocate/1) to show what that costs"
      ]
    }
  end

  defp sum(ctx, id, shape, axes) do
    d = ctx.device
    count = Enum.product(shape)

    emlx =
      emlx(fn ->
        x = wave(count, 0.001, :float32, d) |> EMLX.reshape(List.to_tuple(shape)) |> ready()
        fn -> EMLX.sum(x, axes, false) |> EMLX.eval() end
      end)

    # EMLX's max over the same data: one MLX reduction kernel with EMLX's
    # own call and evaluation overhead, so EMLX sum / EMLX max is what the
    # accurate (staged) sum costs over a single plain MLX kernel.
    emlx_max =
      Measure.local(:emlx_max, "EMLX max (one MLX kernel)", :reference, fn ->
        x = wave(count, 0.001, :float32, d) |> EMLX.reshape(List.to_tuple(shape)) |> ready()
        fn -> EMLX.max(x, axes, false) |> EMLX.eval() end
      end)

    params = %{shape: shape, axes: axes}

    %{
      id: id,
      group: "sum",
      title: "sum over axes #{inspect(axes)}",
      size: Enum.map_join(shape, "x", &size_label/1),
      dtype: "f32",
      bytes: 4 * count,
      goals: %{mlx: {:min_speed, 0.95}},
      runners: [emlx, emlx_max, mlx(ctx, "sum", params), numpy(ctx, "sum", params)] ++ nx(ctx, :sum, params),
      notes: []
    }
  end

  defp size_label(@big), do: "16M"
  defp size_label(n), do: Integer.to_string(n)

  defp softmax(ctx) do
    d = ctx.device
    n = 1024

    emlx =
      emlx(fn ->
        x = wave(n * n, 0.01, :float32, d) |> EMLX.reshape({n, n}) |> ready()

        fn ->
          e = EMLX.subtract(x, EMLX.max(x, [-1], true)) |> EMLX.exp()
          EMLX.divide(e, EMLX.sum(e, [-1], true)) |> EMLX.eval()
        end
      end)

    %{
      id: "softmax",
      group: "softmax",
      title: "softmax over the last axis",
      size: "#{n}x#{n}",
      dtype: "f32",
      goals: %{},
      runners:
        [
          emlx,
          mlx(ctx, "softmax", %{n: n, form: "composed"}, :mlx, "raw MLX, same ops"),
          mlx(ctx, "softmax", %{n: n, form: "fused"}, :mlx_fused, "raw MLX mx.softmax"),
          numpy(ctx, "softmax", %{n: n})
        ] ++ nx(ctx, :softmax, %{n: n}),
      notes: ["EMLX has no softmax function: both EMLX and the first raw MLX reference compose exp(x - max) / sum"]
    }
  end

  defp mlp(ctx) do
    params = %{batch: 64, inputs: 784, hidden: 512, classes: 10}
    flops = 3 * 2 * 64 * (784 * 512 + 512 * 10)

    %{
      id: "mlp_step",
      measure: @blas_settle,
      group: "mlp",
      title: "MLP step: forward + backward (Nx.Defn.grad)",
      size: "batch 64, 784-512-10",
      dtype: "f32",
      flops: flops,
      goals: %{},
      runners: nx(ctx, :mlp, params) ++ [mlx(ctx, "mlp", params), numpy(ctx, "mlp", params)],
      notes: ["cross-entropy loss, ReLU; raw MLX uses mx.grad, numpy a hand-written backward pass"]
    }
  end

  defp sdpa(ctx) do
    d = ctx.device
    {b, h, l, dim} = {1, 8, 512, 64}

    emlx =
      if function_exported?(EMLX, :fast_sdpa, 4) do
        emlx(fn ->
          [q, k, v] = for s <- [0.001, 0.002, 0.003], do: wave(b * h * l * dim, s, :float32, d)
          [q, k, v] = for t <- [q, k, v], do: EMLX.reshape(t, {b, h, l, dim}) |> ready()
          scale = 1.0 / :math.sqrt(dim)
          fn -> apply(EMLX, :fast_sdpa, [q, k, v, scale]) |> EMLX.eval() end
        end)
      else
        skip(:emlx, "EMLX", :subject, "EMLX.fast_sdpa/4 is not in this build yet (branch api-fused)")
      end

    params = %{b: b, h: h, l: l, d: dim}

    %{
      id: "sdpa",
      measure: @blas_settle,
      group: "sdpa",
      title: "scaled dot-product attention",
      size: "B=#{b} H=#{h} L=#{l} D=#{dim}",
      dtype: "f32",
      flops: 4 * b * h * l * l * dim,
      goals: %{},
      runners: [emlx, mlx(ctx, "sdpa", params), numpy(ctx, "sdpa", params, :numpy, "numpy (composed)")],
      notes: ["raw MLX: mx.fast.scaled_dot_product_attention; numpy: softmax(q k^T * scale) v"]
    }
  end

  defp to_binary(ctx) do
    d = ctx.device
    bytes = 64 * @mib

    emlx =
      emlx(fn ->
        x = wave(div(bytes, 4), 0.001, :float32, d)
        fn -> EMLX.to_blob(x) end
      end)

    memcpy = memcpy_reference(bytes)

    %{
      id: "to_binary",
      group: "binary",
      title: "to_binary (of an evaluated tensor)",
      size: "64 MiB",
      dtype: "f32",
      bytes: bytes,
      goals: %{memcpy: {:min_speed, 0.8}, numpy_copy: {:min_speed, 0.8}},
      runners:
        [
          emlx,
          memcpy,
          numpy(ctx, "memcpy", %{bytes: bytes}, :numpy_copy, "memcpy (numpy copyto)"),
          mlx(ctx, "to_binary", %{bytes: bytes, copy: false}, :mlx, "raw MLX memoryview (zero-copy)"),
          mlx(ctx, "to_binary", %{bytes: bytes, copy: true}, :mlx_copy, "raw MLX bytes(memoryview) (a copy)")
        ] ++ nx(ctx, :to_binary, %{bytes: bytes}, binary: false),
      notes: [
        "EMLX.to_blob hands out MLX's buffer as a resource binary (zero-copy, like a Python memoryview): no bytes move"
      ]
    }
  end

  # The BEAM's own copy of `bytes` bytes: the memcpy reference.
  def memcpy_reference(bytes) do
    Measure.local(:memcpy, "memcpy (:binary.copy)", :reference, fn ->
      bin = :binary.copy(<<0::size(bytes)-unit(8)>>)
      fn -> :binary.copy(bin) end
    end)
  end

  # `from_binary` of a large binary (a copy, or the binary's own bytes),
  # and of a tiny one (the fixed cost of a small tensor: Nx.tensor/2 and
  # the constants Nx.Defn.Evaluator hands a backend go through it).
  defp from_binary(ctx, id, bytes, size) do
    d = ctx.device
    n = div(bytes, 4)

    emlx =
      emlx(fn ->
        bin = wave(n, 0.001, :float32, d) |> EMLX.to_blob() |> :binary.copy()
        fn -> EMLX.from_blob(bin, {n}, :float32, d) |> EMLX.eval() end
      end)

    copies =
      if bytes >= @mib,
        do: [memcpy_reference(bytes), numpy(ctx, "memcpy", %{bytes: bytes}, :numpy_copy, "memcpy (numpy copyto)")],
        else: []

    %{
      id: id,
      group: "binary",
      title: "from_binary",
      size: size,
      dtype: "f32",
      bytes: bytes,
      goals: %{},
      runners:
        [emlx | copies] ++
          [mlx(ctx, "from_binary", %{bytes: bytes}, :mlx, "raw MLX mx.array(frombuffer)")] ++
          nx(ctx, :from_binary, %{bytes: bytes}, binary: bytes < @mib),
      notes: []
    }
  end

  defp blas(ctx) do
    d = ctx.device
    n = 1024
    {mm, _} = matmul_fun()

    linked =
      if ctx.blas.config != "",
        do: "EMLX, #{ctx.blas.kind} (core #{ctx.blas.core})",
        else: "EMLX (built without OpenBLAS)"

    emlx =
      Measure.local(:emlx, linked, :subject, fn ->
        a = wave(n * n, 0.001, :float32, d) |> EMLX.reshape({n, n}) |> ready()
        b = EMLX.cos(a) |> ready()
        fn -> mm.(a, b) |> EMLX.eval() end
      end)

    # The second VM is built and started only when this workload runs.
    noblas = %{
      id: :noblas,
      label: "EMLX built with EMLX_NO_OPENBLAS=1",
      role: :reference,
      prepare: fn ->
        with :cpu <- d,
             {:ok, driver} <- Bench.Blas.start() do
          Bench.Driver.runner(driver, :noblas, "", :reference, %{n: n}, nil).prepare.()
        else
          {:skip, reason} -> {:skip, reason}
          :gpu -> {:skip, "OpenBLAS is a CPU matter"}
        end
      end
    }

    %{
      id: "blas",
      measure: @blas_settle,
      group: "blas",
      title: "matmul through the NIF, OpenBLAS on vs off",
      size: "#{n}x#{n} @ #{n}x#{n}",
      dtype: "f32",
      flops: 2 * n * n * n,
      goals: %{noblas: {:min_speed, 10.0}},
      runners: [emlx, noblas],
      notes: ["the reference is a second BEAM running a NIF built with EMLX_NO_OPENBLAS=1 (bench/harness/blas.exs)"]
    }
  end
end
