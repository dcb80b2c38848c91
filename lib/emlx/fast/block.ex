if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Fast.Block do
    @moduledoc """
    The `Nx.block/4` struct of every `EMLX.Fast` function.

    `op` names the fused op (`:rms_norm`, `:layer_norm`,
    `:layer_norm_no_bias`, `:rope`, `:rope_positions`, `:rope_freqs`,
    `:sdpa`, `:sdpa_masked`, `:sdpa_causal`, `:sdpa_causal_key_masked`,
    `:kv_cache_sdpa_update`, `:swiglu`, `:einsum`) and `attrs` holds its
    static arguments (`eps`, `dims`, `scale`, `subscripts`, …; `sinks: true`
    when an attention block's last argument is its sinks). The block's
    tensor arguments are its inputs in the order of the `EMLX.Fast` function.

    A backend that recognises the struct runs the fused op; any other runs
    the block's default, the plain `Nx` formula. `EMLX.Backend.block/4`
    passes it to `EMLX.Fast.native_block/3`.
    """

    defstruct [:op, attrs: []]

    @type t :: %__MODULE__{op: atom(), attrs: keyword()}
  end
end
