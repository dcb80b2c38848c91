# Suites that need Nx are tagged :nx. Without Nx (no Hex and no
# EMLX_DEPS_DIR, as in CI on a fresh machine) they are skipped, and said so.
# Likewise tests of :telemetry events are tagged :telemetry, an optional
# dependency that comes with the same deps.
exclude =
  if Code.ensure_loaded?(Nx) do
    []
  else
    IO.puts("Skipping tests tagged :nx: Nx is not available (Hex unreachable and EMLX_DEPS_DIR unset)")
    [:nx]
  end

exclude =
  if Code.ensure_loaded?(:telemetry) do
    exclude
  else
    IO.puts(
      "Skipping tests tagged :telemetry: the optional telemetry package is not available " <>
        "(Hex unreachable and EMLX_DEPS_DIR unset)"
    )

    [:telemetry | exclude]
  end

# EMLX_TEST_DEVICE=gpu runs the suite on the GPU (EMLX.TestDevice): the
# helpers' tensors and EMLX.Backend's default device go there, float64 ones
# excepted (they live on the CPU by nature: EMLX.TestDevice.device_for/1). A
# test that cannot run in a GPU run at all would carry `@tag cpu_only: reason`
# and be excluded there (none does today). The first use of each of MLX's
# CUDA kernels compiles it (seconds; then it is in the PTX cache), so tests
# get more time there.
device = EMLX.TestDevice.device()
Application.put_env(:emlx, :default_device, device)

{exclude, timeout} =
  if device == :gpu do
    IO.puts(
      "EMLX_TEST_DEVICE=gpu: tensors on #{EMLX.device_info(:gpu).name}; float64 ones (MLX has no GPU " <>
        "kernels for them) and Nx.LinAlg's examples stay on the CPU; tests tagged :cpu_only are skipped"
    )

    {[:cpu_only | exclude], 300_000}
  else
    {exclude, 60_000}
  end

# Tests tagged :long (the 1,000,000-cycle memory soak, minutes) run only on
# demand: `mix test --only long`.
ExUnit.start(exclude: exclude ++ [:long], timeout: timeout)
