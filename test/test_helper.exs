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

# Tests tagged :long (the 1,000,000-cycle memory soak, minutes) run only on
# demand: `mix test --only long`. Tests tagged :large_memory make buffers of
# 2^31 bytes and more (to and from binaries past 2^31 bytes): `mix test
# --only large_memory` on a machine with a few GiB to spare.
ExUnit.start(exclude: exclude ++ [:long, :large_memory])
