# Suites that need Nx are tagged :nx. Without Nx (no Hex and no
# EMLX_DEPS_DIR, as in CI on a fresh machine) they are skipped, and said so.
exclude =
  if Code.ensure_loaded?(Nx) do
    []
  else
    IO.puts("Skipping tests tagged :nx: Nx is not available (Hex unreachable and EMLX_DEPS_DIR unset)")
    [:nx]
  end

ExUnit.start(exclude: exclude)
