if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Defn.Lower do
    @moduledoc false
    # Lowers an `Nx.Defn.Expr` graph into program steps (see EMLX.Defn.Trace),
    # by evaluating it the way `Nx.Defn.Evaluator` does — every node through
    # the `EMLX.Backend` callback of the same name, with stand-in tensors —
    # while the trace records what the backend builds. The syntax nodes get
    # their own treatment:
    #
    #   * `parameter`, `tensor`, `constant`, `elem`, `metadata`: values;
    #   * `while`, `cond`: blocks of their own (program steps driven on the
    #     queue thread, no BEAM round trip per iteration);
    #   * `hook` (and tokens): a hook step; the values go back with the reply
    #     and the caller runs the callbacks in order;
    #   * `block`: `EMLX.Backend`'s native implementation when it has one,
    #     else the block's traced default expression;
    #   * `reduce` / `window_reduce` with a reducer function: the function's
    #     expression applied element-wise (EMLX.Defn.Reduce);
    #   * `transpose` of a dot product that nothing else reads: the dot with
    #     its operands swapped (EMLX.Defn.DotLayout).
    #
    # Each node is lowered once per scope (memoised by id). A branch of a
    # `cond` sees what its parent computed before it; what it computes itself
    # stays inside it. A `while` body sees only its own parameters.

    alias Nx.Defn.{Composite, Expr, Tree}
    alias Nx.Tensor, as: T
    alias EMLX.Backend.Convert
    alias EMLX.Defn.{DotLayout, Trace}

    @creation_ops [:eye, :iota, :from_binary]

    defstruct [:device, :params, cache: %{}, uses: %{}, hooks: %{}, hook_specs: [], next_hook: 0]

    @doc false
    # Lowers the (devectorized) output container `expr` given the traced
    # parameter tensors. Runs inside EMLX.Defn.Trace.run/1. Returns
    # `{result container, hook specs}`; hook specs are `{id, spec, value}`
    # with `value` the traced container handed to the hook.
    def lower(expr, params, device, hooks) do
      state = %__MODULE__{device: device, params: params, hooks: hooks, uses: DotLayout.uses(expr)}
      {result, state} = composite(expr, state)
      {result, Enum.reverse(state.hook_specs)}
    end

    @doc false
    # Lowers `expr` with `params` in a scope of its own (a block's default
    # expression, a reducer): nothing of the caller's scope is visible.
    def lower_scoped(expr, params, %__MODULE__{} = state) do
      {result, inner} = composite(expr, %{state | params: params, cache: %{}})
      {result, with_hooks_of(state, inner)}
    end

    defp composite(container, state), do: Composite.traverse(container, state, &eval/2)

    ## Nodes

    defp eval(%T{data: %Expr{op: :tensor, args: [t]}}, state), do: {capture(t, state.device), state}

    defp eval(%T{data: %Expr{id: id, op: op, args: args}} = ans, %{cache: cache} = state) do
      case cache do
        %{^id => value} ->
          {value, state}

        %{} ->
          {value, state} = node(op, args, ans, state)
          {value, %{state | cache: Map.put(state.cache, id, value)}}
      end
    end

    defp eval(other, state), do: {other, state}

    defp node(:constant, [number], ans, state) do
      {EMLX.Backend.constant(ans, number, device: state.device), state}
    end

    defp node(:parameter, [i], _ans, state), do: {Enum.fetch!(state.params, i), state}

    defp node(:elem, [tuple, i], _ans, state) do
      {tuple, state} = composite(tuple, state)
      {elem(tuple, i), state}
    end

    defp node(:metadata, [expr, _meta], _ans, state), do: composite(expr, state)

    defp node(:while, [initial, arg, condition, body], _ans, state) do
      count = EMLX.Defn.TripCount.count(initial, arg, condition, body)
      {initial, state} = composite(initial, state)
      scope = fn params, state -> %{state | params: params, cache: %{}} end

      {results, _, inner} =
        loop(
          Composite.flatten_list([initial]),
          state.device,
          fn params -> eval(condition, scope.(params, state)) end,
          fn params, cond_state ->
            {body, body_state} = composite(body, scope.(params, cond_state))
            {Composite.flatten_list([body]), body_state}
          end,
          count
        )

      {rebuild(initial, results), with_hooks_of(state, inner)}
    end

    defp node(:cond, [clauses, last], _ans, state) do
      {clauses, state} =
        Enum.map_reduce(clauses, state, fn {pred, body}, state ->
          {{pred, state}, pred_steps} = Trace.block(fn -> branch(pred, state) end)
          {{body, state}, body_steps} = Trace.block(fn -> branch(body, state) end)
          {{pred_steps, ref(pred), body_steps, body}, state}
        end)

      {{last, state}, last_steps} = Trace.block(fn -> branch(last, state) end)
      leaves = Composite.flatten_list([last])
      results = Enum.map(leaves, &stand_in(&1, state.device))

      clauses =
        for {pred_steps, pred, body_steps, body} <- clauses do
          {pred_steps, pred, body_steps, refs(Composite.flatten_list([body]))}
        end

      Trace.step({:cond, clauses, last_steps, refs(leaves), refs(results)})
      {rebuild(last, results), state}
    end

    defp node(:hook, [expr, spec, template, _ref], _ans, state) do
      {value, state} = composite(expr, state)

      state =
        case spec do
          {:token_hook, hooked, inner} ->
            {hooked, state} = composite(hooked, state)
            hook(hooked, inner, state)

          spec ->
            hook(value, spec, state)
        end

      case template do
        %T{} -> {value, state}
        _ -> {value |> List.wrap() |> Composite.flatten_list() |> List.to_tuple(), state}
      end
    end

    defp node(:block, [struct, in_args, default, _callback], ans, state) do
      {args, state} =
        Enum.map_reduce(in_args, state, fn
          %T{} = t, state -> eval(t, state)
          other, state -> {other, state}
        end)

      out = if match?(%{type: {:tuple, _}}, ans), do: default, else: ans

      case EMLX.Backend.Block.native_block(struct, out, args) do
        :default ->
          {tensors, _opts} = Enum.split_while(args, &(not is_list(&1)))
          lower_scoped(default, tensors, state)

        result ->
          {result, state}
      end
    end

    defp node(:runtime_call, [expr, fun, out_template, opts], _ans, state) do
      {value, state} = composite(expr, state)
      inputs = Composite.flatten_list([value])
      outs = Composite.flatten_list([out_template])

      results =
        host(inputs, outs, state.device, fn tensors ->
          {value, []} = Composite.traverse(value, tensors, fn _, [t | rest] -> {t, rest} end)
          result = fun.(value, opts)

          unless Nx.compatible?(out_template, result) do
            raise ArgumentError, "expected the runtime_call function to match the given output template"
          end

          Composite.flatten_list([result])
        end)

      case out_template do
        %T{} -> {hd(results), state}
        _ -> {List.to_tuple(results), state}
      end
    end

    defp node(op, [tensor, acc, opts, fun], ans, state) when op == :reduce do
      {[tensor, acc], state} = eval_list([tensor, acc], state)
      {EMLX.Defn.Reduce.reduce(ans, tensor, acc, opts, fun, state), state}
    end

    defp node(op, [tensor, acc, window, opts, fun], ans, state) when op == :window_reduce do
      {[tensor, acc], state} = eval_list([tensor, acc], state)
      {EMLX.Defn.Reduce.window_reduce(ans, tensor, acc, window, opts, fun, state), state}
    end

    # Nx 0.13's expression builder merges broadcast(broadcast(x)) keeping the
    # inner axes even where the outer broadcast adds leading axes (x {4, 1}
    # to {4, 2} to {3, 4, 2} comes out as axes [0, 1]), which no shape fits.
    # Such a merge is always right-aligned: put x's axes last.
    defp node(:broadcast, [tensor, shape, axes], ans, state) do
      fits? = fn axes ->
        Enum.zip(axes, Tuple.to_list(tensor.shape)) |> Enum.all?(fn {a, d} -> d in [1, elem(shape, a)] end)
      end

      last = Enum.to_list((tuple_size(shape) - tuple_size(tensor.shape))..(tuple_size(shape) - 1)//1)
      axes = if not fits?.(axes) and fits?.(last), do: last, else: axes
      {tensor, state} = eval(tensor, state)
      {EMLX.Backend.broadcast(ans, tensor, shape, axes), state}
    end

    # A transposed dot product read once is lowered as the dot with its
    # operands swapped (EMLX.Defn.DotLayout).
    defp node(:transpose, [tensor, axes] = args, ans, state) do
      case DotLayout.swapped(tensor, axes, state.uses) do
        {b, cb, a, ca} ->
          {[b, a], state} = eval_list([b, a], state)
          {EMLX.Backend.dot(ans, b, cb, [], a, ca, []), state}

        nil ->
          backend_op(:transpose, args, ans, state)
      end
    end

    defp node(op, args, ans, state), do: backend_op(op, args, ans, state)

    defp backend_op(op, args, ans, state) do
      ans = put_in(ans.data.args, args)
      {args, state} = Tree.apply_args(ans, state, &eval/2)

      args =
        cond do
          op in @creation_ops -> [ans | args] ++ [[device: state.device]]
          match?({:tuple, _}, ans.type) -> args
          true -> [ans | args]
        end

      {apply(EMLX.Backend, op, args), state}
    end

    defp eval_list(list, state), do: Enum.map_reduce(list, state, &eval/2)

    @doc false
    # A `while` step over the state `init` (tensors): `cond_fun.(params)`
    # gives `{predicate, extra}` and `body_fun.(params, extra)` gives
    # `{next state, extra2}`, both built in blocks of their own on stand-ins
    # for the state. `count`, when known (EMLX.Defn.TripCount), is how many
    # times the loop runs: the program then never evaluates the predicate,
    # provided its block is nothing but ops. Returns `{results, extra,
    # extra2}`.
    def loop(init, device, cond_fun, body_fun, count \\ nil) do
      params = Enum.map(init, &stand_in(&1, device))
      {{pred, extra}, cond_steps} = Trace.block(fn -> cond_fun.(params) end)
      {{body, extra2}, body_steps} = Trace.block(fn -> body_fun.(params, extra) end)
      results = Enum.map(init, &stand_in(&1, device))
      count = if Enum.all?(cond_steps, &(elem(&1, 0) == :op)), do: count

      Trace.step(
        {:while, refs(init), refs(params), cond_steps, ref(pred), body_steps, refs(body), refs(results), count}
      )

      {results, extra, extra2}
    end

    # A branch's own nodes are forgotten after it: the parent (or another
    # branch) computes them again where it needs them.
    defp branch(expr, state) do
      {value, inner} = composite(expr, state)
      {value, with_hooks_of(state, inner)}
    end

    @doc false
    # A callback step: when the program runs, `fun` gets the (evaluated)
    # values of `inputs` as tensors in the calling process and returns
    # tensors like `outs` (templates), which the program goes on with.
    # Returns the stand-ins for them.
    def host(inputs, outs, device, fun) do
      inputs = Enum.map(inputs, fn t -> if match?(%T{data: %EMLX.Backend{}}, t), do: t, else: capture(t, device) end)
      stand_ins = Enum.map(outs, &stand_in(&1, device))

      callback = fn arrays ->
        {tensors, []} = Enum.map_reduce(inputs, arrays, fn t, [a | rest] -> {put_ref(t, a), rest} end)

        fun.(tensors)
        |> Enum.zip_with(stand_ins, fn result, like ->
          result
          |> Nx.as_type(like.type)
          |> Nx.backend_transfer({EMLX.Backend, device: device})
          |> Nx.devectorize()
          |> ref()
        end)
      end

      Trace.callback(callback, Enum.map(inputs, &plain_ref/1), refs(stand_ins))
      stand_ins
    end

    defp put_ref(%T{data: %EMLX.Backend{} = data} = t, ref), do: %{t | data: %{data | ref: ref}}

    defp plain_ref(%T{data: %EMLX.Backend{quantization_config: nil, ref: ref}}), do: ref

    defp plain_ref(%T{}) do
      raise ArgumentError, "compiler: EMLX cannot pass a quantized tensor to a callback (Nx.runtime_call/4)"
    end

    ## Hooks

    # `state` after an inner scope: its own values, the hooks found inside.
    defp with_hooks_of(state, inner), do: %{state | hook_specs: inner.hook_specs, next_hook: inner.next_hook}

    defp hook(value, spec, state) do
      if resolve_hook(spec, state.hooks) do
        id = state.next_hook
        Trace.step({:hook, id, refs(Composite.flatten_list([value]))})
        %{state | hook_specs: [{id, spec, value} | state.hook_specs], next_hook: id + 1}
      else
        state
      end
    end

    @doc false
    def resolve_hook({:fn, fun}, _hooks), do: fun
    def resolve_hook({:named, name, callback}, hooks), do: hooks[name] || callback

    ## Tensors

    @doc false
    # A tensor the function closes over (an `Nx.Defn.Expr` `tensor` node):
    # kept by the program as a constant, so it must be computed and live on
    # the program's device's memory (MLX reads it in place).
    def capture(%T{data: %EMLX.Backend{}} = t, _device) do
      t = Nx.devectorize(t)
      for array <- arrays(t), not Trace.traced?(array), do: EMLX.Native.eval([array])
      t
    end

    def capture(%T{} = t, device), do: t |> Nx.devectorize() |> Nx.backend_copy({EMLX.Backend, device: device})

    @doc false
    # A traced stand-in for a tensor like `t` (same shape, Nx type and
    # storage) on `device`.
    # A quantized tensor gets stand-ins for its codes (of their own shape
    # and type) and for each tensor of its configuration.
    def stand_in(%T{data: %EMLX.Backend{quantization_config: cfg} = data} = t, device) when cfg != nil do
      codes = Trace.placeholder(device, EMLX.shape(data.ref), EMLX.scalar_type(data.ref))

      fields =
        Map.new(Map.from_struct(cfg), fn
          {field, %T{} = value} -> {field, stand_in(value, device)}
          other -> other
        end)

      %{t | data: %{data | ref: codes, quantization_config: struct(cfg.__struct__, fields)}}
    end

    def stand_in(%T{type: type, shape: shape} = t, device) do
      ref = Trace.placeholder(device, shape, Convert.mlx_type(type))
      %{t | data: %EMLX.Backend{ref: ref, shape: shape, type: type}}
    end

    @doc false
    # The MLX arrays an EMLX tensor is made of: its array, and for a
    # quantized one then each tensor of its configuration, in field order.
    def arrays(%T{data: %EMLX.Backend{ref: ref, quantization_config: nil}}), do: [ref]

    def arrays(%T{data: %EMLX.Backend{ref: ref, quantization_config: cfg}}) do
      tensors = for {_field, %T{} = t} <- cfg |> Map.from_struct() |> Enum.sort(), do: t
      [ref | Enum.flat_map(tensors, &arrays/1)]
    end

    def arrays(%T{} = t), do: [ref(t)]

    defp ref(%T{data: %EMLX.Backend{ref: ref}}), do: ref

    defp ref(%T{} = t) do
      raise ArgumentError,
            "compiler: EMLX: internal error, a value of the compiled function is not an EMLX " <>
              "tensor: #{inspect(t)}; please report this with the defn code"
    end

    # The arrays of `tensors`, in order (a quantized tensor gives several).
    defp refs(tensors), do: Enum.flat_map(tensors, &arrays/1)

    # The container `like` with its leaves replaced, in order, by `tensors`.
    defp rebuild(like, tensors) do
      {result, []} = Composite.traverse(like, tensors, fn _, [t | rest] -> {t, rest} end)
      result
    end
  end
end
