defmodule Bench.GpuWorkloads do
  @moduledoc """
  Workloads sized for a data-centre GPU (`--device gpu`), each measured
  against raw MLX (Python, the same libmlx) and PyTorch (when the Python
  reference has `torch` with CUDA): an 8192² bf16 matmul, the add of two
  256 MiB f32 tensors, a tiny add + eval (the per-eval round trip), causal
  bf16 attention and a transformer block.

  The transformer block's Nx rows run `Bench.NxBlock` (bench/harness/
  nx_block.exs): eagerly on EMLX.Backend, and through `Nx.Defn.jit/2` with
  `compiler: EMLX` once this build has EMLX's defn compiler (`EMLX.__jit__/5`);
  until then that row is skipped and says why.
  """

  alias Bench.{Driver, Measure, Workloads}

  @mib 1024 * 1024

  @doc "The GPU workloads (none for the CPU)."
  def all(%{device: :gpu} = ctx), do: [matmul(ctx), add(ctx), tiny_add(ctx), sdpa(ctx), block(ctx)]
  def all(_ctx), do: []

  defp torch(ctx, workload, params), do: ref(ctx, :torch, "PyTorch", "torch", workload, params)
  defp mlx(ctx, workload, params, id \\ :mlx, label \\ "raw MLX"), do: ref(ctx, id, label, "mlx", workload, params)

  defp ref(ctx, id, label, impl, workload, params),
    do: Driver.runner(ctx.py, id, label, :reference, %{impl: impl, workload: workload, params: params}, ctx.py_why)

  defp emlx(setup), do: Measure.local(:emlx, "EMLX", :subject, setup)

  defp ready(t) do
    EMLX.eval(t)
    t
  end

  defp matmul(ctx) do
    n = 8192

    emlx =
      emlx(fn ->
        a = Workloads.wave(n * n, 0.001, :bfloat16, :gpu) |> EMLX.reshape({n, n}) |> ready()
        b = EMLX.cos(a) |> ready()
        fn -> EMLX.matmul(a, b) |> EMLX.eval() end
      end)

    params = %{n: n, dtype: "bfloat16"}

    %{
      id: "gpu_matmul_bf16_8192",
      group: "gpu",
      title: "matmul",
      size: "#{n}x#{n} @ #{n}x#{n}",
      dtype: "bf16",
      flops: 2 * n * n * n,
      measure: [warm_up: true],
      goals: %{mlx: {:min_speed, 0.95}},
      runners: [emlx, mlx(ctx, "matmul", params), torch(ctx, "matmul", params)],
      notes: []
    }
  end

  defp add(ctx) do
    n = div(256 * @mib, 4)

    emlx =
      emlx(fn ->
        a = Workloads.wave(n, 0.001, :float32, :gpu)
        b = EMLX.cos(a) |> ready()
        fn -> EMLX.add(a, b) |> EMLX.eval() end
      end)

    # The BEAM frees a result when it collects the process that dropped it,
    # so a loop's results pile up between collections (the measurement
    # collects before each sample, not between its calls); these two rows
    # show what that costs: EMLX freeing each result at once, and raw MLX
    # keeping its last results alive.
    dealloc =
      Measure.local(:emlx_dealloc, "EMLX, each result deallocated after its eval", :subject, fn ->
        a = Workloads.wave(n, 0.001, :float32, :gpu)
        b = EMLX.cos(a) |> ready()

        fn ->
          r = EMLX.add(a, b)
          EMLX.eval(r)
          EMLX.deallocate(r)
        end
      end)

    %{
      id: "gpu_add_f32_256mib",
      group: "gpu",
      title: "add of two tensors",
      size: "2 x 256 MiB",
      dtype: "f32",
      bytes: 3 * 256 * @mib,
      measure: [warm_up: true],
      goals: %{mlx: {:min_speed, 0.95}},
      runners: [
        emlx,
        dealloc,
        mlx(ctx, "add", %{n: n}),
        mlx(ctx, "add", %{n: n, keep: 16}, :mlx_keep, "raw MLX, its last 16 results kept alive"),
        torch(ctx, "add", %{n: n})
      ],
      notes: ["bytes moved: both inputs read, the result written"]
    }
  end

  defp tiny_add(ctx) do
    emlx =
      emlx(fn ->
        a = Workloads.wave(4, 0.001, :float32, :gpu)
        b = EMLX.cos(a) |> ready()
        fn -> EMLX.add(a, b) |> EMLX.eval() end
      end)

    %{
      id: "gpu_tiny_add_eval",
      group: "gpu",
      title: "tiny add + eval (one GPU round trip)",
      size: "4 elements",
      dtype: "f32",
      measure: [warm_up: true],
      goals: %{mlx: {:max_diff, 5_000.0}},
      runners: [emlx, mlx(ctx, "add", %{n: 4}), torch(ctx, "add", %{n: 4})],
      notes: ["PyTorch: a + b, then torch.cuda.synchronize()"]
    }
  end

  defp sdpa(ctx) do
    {b, h, l, d} = {1, 32, 2048, 128}

    emlx =
      emlx(fn ->
        [q, k, v] = for s <- [0.001, 0.002, 0.003], do: Workloads.wave(b * h * l * d, s, :bfloat16, :gpu)
        [q, k, v] = for t <- [q, k, v], do: EMLX.reshape(t, {b, h, l, d}) |> ready()
        scale = 1.0 / :math.sqrt(d)
        fn -> EMLX.fast_sdpa_causal(q, k, v, scale) |> EMLX.eval() end
      end)

    params = %{b: b, h: h, l: l, d: d, dtype: "bfloat16", causal: true}

    %{
      id: "gpu_sdpa_causal_bf16",
      group: "gpu",
      title: "causal scaled dot-product attention",
      size: "B=#{b} H=#{h} L=#{l} D=#{d}",
      dtype: "bf16",
      # the causal half of 4·B·H·L²·D
      flops: div(4 * b * h * l * l * d, 2),
      measure: [warm_up: true],
      goals: %{mlx: {:min_speed, 0.95}},
      runners: [emlx, mlx(ctx, "sdpa", params), torch(ctx, "sdpa", params)],
      notes: [
        "EMLX.fast_sdpa_causal/4; mx.fast.scaled_dot_product_attention(mask=\"causal\"); F.scaled_dot_product_attention(is_causal=True)"
      ]
    }
  end

  defp block(ctx) do
    params = %{batch: 1, seq: 2048, dim: 4096, heads: 32, hidden: 11008, dtype: "bfloat16"}

    nx_rows =
      cond do
        not ctx.backend? ->
          [Workloads.skip(:nx_emlx, "Nx + EMLX.Backend", :subject, "Nx is not available")]

        true ->
          jit =
            if function_exported?(EMLX, :__jit__, 5) do
              Measure.local(:nx_emlx_jit, "Nx + EMLX.Backend, compiler: EMLX", :subject, fn ->
                apply(Bench.NxBlock, :build, [params, ctx.backend, [compiler: EMLX]])
              end)
            else
              Workloads.skip(
                :nx_emlx_jit,
                "Nx + EMLX.Backend, compiler: EMLX",
                :subject,
                "this build has no EMLX defn compiler (EMLX.__jit__/5)"
              )
            end

          [
            Measure.local(:nx_emlx, "Nx + EMLX.Backend (eager)", :subject, fn ->
              apply(Bench.NxBlock, :build, [params, ctx.backend, []])
            end),
            jit
          ]
      end

    %{
      id: "gpu_transformer_block",
      group: "gpu",
      title: "transformer block forward (RMSNorm, causal attention, SwiGLU MLP)",
      size: "B=1 T=2048 d=4096 H=32 MLP 11008",
      dtype: "bf16",
      flops: block_flops(params),
      measure: [warm_up: true],
      goals: %{mlx_compiled: {:min_speed, 0.95}},
      runners:
        nx_rows ++
          [
            mlx(ctx, "block", Map.put(params, :compiled, false), :mlx, "raw MLX"),
            mlx(ctx, "block", Map.put(params, :compiled, true), :mlx_compiled, "raw MLX, mx.compile"),
            torch(ctx, "block", params)
          ],
      notes: ["the same block in each: bench/harness/nx_block.exs, bench/ref.py (block)"]
    }
  end

  # Matrix products (QKV, output, gate/up/down projections) and the causal
  # half of attention's two products.
  defp block_flops(%{batch: b, seq: t, dim: d, hidden: h}),
    do: 2 * b * t * (4 * d * d + 3 * d * h) + div(4 * b * t * t * d, 2)
end
