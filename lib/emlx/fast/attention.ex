if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Fast.Attention do
    @moduledoc false
    # The plain-Nx formulas of EMLX.Fast's attention blocks (their default
    # implementations, and what Nx.Defn.grad differentiates): scaled
    # dot-product attention with optional masks and attention sinks, and the
    # KV-cache decode step. Layout {B, N, T, D}; grouped-query heads are
    # repeated; everything is computed in at least float32.

    import EMLX.Fast.Formulas, only: [merged: 1, compute_type: 1]

    alias EMLX.Fast.Block

    @doc false
    # The result template: q's batch, heads and queries, v's features.
    def out(q, k, v) do
      {b, n, t, _} = Nx.shape(q)
      Nx.template({b, n, t, elem(Nx.shape(v), 3)}, merged([q, k, v]))
    end

    @doc false
    # The attention scale: a number known when the call is built (a static
    # argument of the fused op), not a tensor.
    def scale!(_function, scale) when is_number(scale), do: scale * 1.0

    def scale!(function, scale) do
      raise ArgumentError,
            "#{function}: the scale must be a number (such as 1 / :math.sqrt(head_dim)), got: #{inspect(scale)}"
    end

    @doc false
    # Checks the layout and the `:sinks` option; returns the sinks or nil.
    def sinks!(function, q, k, v, opts) do
      for {name, t} <- [q: q, k: k, v: v], Nx.rank(t) != 4 do
        raise ArgumentError, "#{function}: #{name} must have rank 4 ({B, N, T, D}), got shape #{inspect(Nx.shape(t))}"
      end

      case Keyword.validate!(opts, [:sinks])[:sinks] do
        nil ->
          nil

        %Nx.Tensor{} = sinks ->
          n_q = elem(Nx.shape(q), 1)

          if Nx.shape(sinks) != {n_q} do
            raise ArgumentError,
                  "#{function}: :sinks must hold one logit per query head, shape {#{n_q}}, got #{inspect(Nx.shape(sinks))}"
          end

          sinks

        other ->
          raise ArgumentError, "#{function}: :sinks must be a tensor of shape {N_q}, got: #{inspect(other)}"
      end
    end

    @doc false
    # The default of the :sdpa* blocks; `rest` is [mask] and/or [sinks]
    # (sinks last, present when attrs[:sinks]).
    def default(%Block{op: op, attrs: attrs}, [q, k, v | rest]) do
      {rest, sinks} = if attrs[:sinks], do: {Enum.drop(rest, -1), List.last(rest)}, else: {rest, nil}
      {t_q, t_kv} = {elem(Nx.shape(q), 2), elem(Nx.shape(k), 2)}

      case {op, rest} do
        {:sdpa, []} ->
          attention(attrs[:scale], q, k, v, nil, sinks)

        {:sdpa_causal, []} ->
          attention(attrs[:scale], q, k, v, causal_keep(t_q, t_kv, t_kv - t_q), sinks)

        {:sdpa_masked, [mask]} ->
          attention(attrs[:scale], q, k, v, mask, sinks)

        {:sdpa_causal_key_masked, [key_mask]} ->
          {b, ^t_kv} = Nx.shape(key_mask)
          keys = key_mask |> Nx.not_equal(0) |> Nx.reshape({b, 1, 1, t_kv})
          keep = Nx.logical_and(keys, causal_keep(t_q, t_kv, attrs[:kv_offset]))
          keep |> attention_unseen_zero(attrs[:scale], q, k, v, sinks)
      end
    end

    @doc false
    # The shapes kv_cache_sdpa_update/8 needs (the same checks as MLX's
    # op, so that every backend refuses the same calls).
    def kv_checks!(q, new_k, new_v, k_cache, v_cache, key_mask) do
      f = "kv_cache_sdpa_update"

      for {name, t} <- [q: q, new_k: new_k, new_v: new_v, k_cache: k_cache, v_cache: v_cache], Nx.rank(t) != 4 do
        raise ArgumentError, "#{f}: #{name} must have rank 4 ({B, T, N, D}), got shape #{inspect(Nx.shape(t))}"
      end

      {b, t_q, n_q, d} = Nx.shape(q)
      {kb, t_new, n_kv, kd} = Nx.shape(new_k)
      {cb, t_max, cn, cd} = Nx.shape(k_cache)

      cond do
        Nx.shape(new_v) != Nx.shape(new_k) ->
          raise ArgumentError,
                "#{f}: new_v must have the shape of new_k #{inspect(Nx.shape(new_k))}, got #{inspect(Nx.shape(new_v))}"

        Nx.shape(v_cache) != Nx.shape(k_cache) ->
          raise ArgumentError,
                "#{f}: v_cache must have the shape of k_cache #{inspect(Nx.shape(k_cache))}, got #{inspect(Nx.shape(v_cache))}"

        {kb, n_kv, kd} != {cb, cn, cd} or kb != b or kd != d ->
          raise ArgumentError,
                "#{f}: q #{inspect(Nx.shape(q))}, new_k #{inspect(Nx.shape(new_k))} and k_cache " <>
                  "#{inspect(Nx.shape(k_cache))} must agree on B, the number of KV heads and D"

        t_new != t_q or t_new > t_max ->
          raise ArgumentError,
                "#{f}: q and new_k need the same number of positions (at most the cache's #{t_max}), got #{t_q} and #{t_new}"

        n_kv == 0 or rem(n_q, n_kv) != 0 ->
          raise ArgumentError, "#{f}: the query heads (#{n_q}) must be a multiple of the KV heads (#{n_kv})"

        key_mask != nil and Nx.shape(key_mask) != {b, t_max} ->
          raise ArgumentError,
                "#{f}: key_mask must have shape {#{b}, #{t_max}} ({B, T_max}), got #{inspect(Nx.shape(key_mask))}"

        true ->
          :ok
      end
    end

    @doc false
    # The default of the :kv_cache_sdpa_update block: {B, T, N, D} inputs;
    # new keys and values written at the (clamped) offset; the queries, at
    # positions offset + i, attend causally to the cache where key_mask
    # allows; {attention in {B, N, T, D}, k_cache, v_cache}.
    def kv_cache_update(%Block{attrs: attrs}, q, new_k, new_v, k_cache, v_cache, offset, key_mask) do
      t_new = elem(Nx.shape(new_k), 1)
      {b, t_max, _, _} = Nx.shape(k_cache)
      off = offset |> Nx.reshape({}) |> Nx.as_type({:s, 32}) |> Nx.clip(0, t_max - t_new)
      k_upd = Nx.put_slice(k_cache, [0, off, 0, 0], Nx.as_type(new_k, Nx.type(k_cache)))
      v_upd = Nx.put_slice(v_cache, [0, off, 0, 0], Nx.as_type(new_v, Nx.type(v_cache)))
      [qt, kt, vt] = Enum.map([q, k_upd, v_upd], &Nx.transpose(&1, axes: [0, 2, 1, 3]))
      t_q = elem(Nx.shape(q), 1)
      keep = causal_keep(t_q, t_max, off)

      keep =
        if key_mask,
          do: key_mask |> Nx.not_equal(0) |> Nx.reshape({b, 1, 1, t_max}) |> Nx.logical_and(keep),
          else: keep

      {attention_unseen_zero(keep, attrs[:scale], qt, kt, vt, nil), k_upd, v_upd}
    end

    # {1, 1, T_q, T_kv}: key j visible from query i when j <= i + offset
    # (an integer or a scalar tensor).
    defp causal_keep(t_q, t_kv, offset) do
      rows = Nx.iota({1, 1, t_q, 1}) |> Nx.add(offset)
      Nx.less_equal(Nx.iota({1, 1, 1, t_kv}), rows)
    end

    # Attention under a boolean `keep`; a query that sees no key gets zeros.
    defp attention_unseen_zero(keep, scale, q, k, v, sinks) do
      out = attention(scale, q, k, v, keep, sinks)
      seen = Nx.any(keep, axes: [-1], keep_axes: true)
      Nx.select(Nx.broadcast(seen, Nx.shape(out)), out, Nx.tensor(0, type: Nx.type(out)))
    end

    # softmax(q kᵀ scale [masked] [with a sink column]) v. An integer mask
    # selects (non-zero keeps; like MLX, a dropped score becomes the lowest
    # finite value); a float mask adds. Sinks, one logit per query head,
    # join the softmax as an extra key whose value is zero.
    defp attention(scale, q, k, v, mask, sinks) do
      type = merged([q, k, v])
      ct = compute_type(type)
      n = elem(Nx.shape(q), 1)
      groups = div(n, elem(Nx.shape(k), 1))
      [q, k, v] = Enum.map([q, k, v], &Nx.as_type(&1, ct))
      {k, v} = {repeat_heads(k, groups), repeat_heads(v, groups)}
      scores = Nx.dot(q, [3], [0, 1], k, [3], [0, 1]) |> Nx.multiply(scale)

      scores =
        case mask do
          nil -> scores
          %Nx.Tensor{type: {kind, _}} when kind in [:f, :bf] -> Nx.add(scores, mask)
          mask -> Nx.select(Nx.broadcast(Nx.not_equal(mask, 0), Nx.shape(scores)), scores, Nx.Constants.min_finite(ct))
        end

      max = Nx.reduce_max(scores, axes: [-1], keep_axes: true)

      p =
        if sinks do
          # The sink joins the softmax's maximum and denominator (no column
          # is concatenated and sliced off: Nx's Evaluator runs the gradient
          # of a slice on the backend of a zero constant, not of the values).
          sink = sinks |> Nx.as_type(ct) |> Nx.reshape({1, n, 1, 1})
          max = Nx.max(max, sink)
          e = Nx.exp(Nx.subtract(scores, max))
          Nx.divide(e, Nx.add(Nx.sum(e, axes: [-1], keep_axes: true), Nx.exp(Nx.subtract(sink, max))))
        else
          e = Nx.exp(Nx.subtract(scores, max))
          Nx.divide(e, Nx.sum(e, axes: [-1], keep_axes: true))
        end

      Nx.dot(p, [3], [0, 1], v, [2], [0, 1]) |> Nx.as_type(type)
    end

    defp repeat_heads(x, 1), do: x

    defp repeat_heads(x, groups) do
      {b, n, t, d} = Nx.shape(x)
      x |> Nx.new_axis(2) |> Nx.broadcast({b, n, groups, t, d}) |> Nx.reshape({b, n * groups, t, d})
    end
  end
end
