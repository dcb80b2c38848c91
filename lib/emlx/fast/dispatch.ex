if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Fast.Dispatch do
    @moduledoc false
    # How an EMLX.Fast call runs: eagerly on EMLX.Backend tensors, the MLX op
    # (EMLX.Fast.Native); otherwise an Nx.block whose default is the plain-Nx
    # formula, which EMLX.Backend.block/4 hands back to native_block/3 and
    # any other backend or compiler runs (and Nx.Defn.grad differentiates).

    alias EMLX.Fast.{Block, Native}

    @doc false
    # Eagerly on EMLX tensors: the fused op (or its formula where MLX has
    # none). Otherwise an Nx.block whose default is the plain formula.
    def run(block, args, out, default) do
      cond do
        Enum.all?(args, &EMLX.NxInterop.emlx?/1) ->
          case native_block(block, out, args) do
            :default -> apply(default, [block | args])
            result -> result
          end

        Enum.any?(args, &expr?/1) ->
          Nx.block(block, Enum.map(args, &Nx.Defn.Expr.tensor/1), out, default)

        true ->
          Nx.block(block, args, out, default)
      end
    end

    # While tracing (defn, grad), a concrete tensor next to traced ones
    # (a captured constant) becomes a constant of the trace.
    defp expr?(%Nx.Tensor{data: %Nx.Defn.Expr{}}), do: true
    defp expr?(_), do: false

    @doc false
    # Nx.block/4 calls its default with the block and each argument: a fun
    # of arity n + 1 that hands `fun` the arguments as a list.
    for n <- 1..32 do
      vars = Macro.generate_arguments(n, __MODULE__)

      def default_fun(unquote(n), fun) do
        fn block, unquote_splicing(vars) -> fun.(block, unquote(vars)) end
      end
    end

    def default_fun(n, _fun), do: raise(ArgumentError, "EMLX.Fast takes at most 32 tensors per call, got #{n}")

    @doc false
    # See EMLX.Fast.native_block/3.
    def native_block(%Block{} = block, out, args) do
      with true <- Enum.all?(args, &EMLX.NxInterop.emlx?/1),
           result when result != :default <- Native.run(block, Enum.map(args, &EMLX.NxInterop.ref/1)) do
        wrap(result, out, block.op)
      else
        _ -> :default
      end
    end

    defp wrap(results, outs, op) when is_tuple(outs) do
      results |> Tuple.to_list() |> Enum.zip_with(Tuple.to_list(outs), &wrap(&1, &2, op)) |> List.to_tuple()
    end

    # (:detect_non_finites checks every fused result, see EMLX.Debug.)
    defp wrap(ref, out, op), do: ref |> EMLX.Debug.check_finite!(op) |> EMLX.NxInterop.wrap(out)
  end
end
