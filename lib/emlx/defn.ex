if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Defn do
    @moduledoc """
    `EMLX` as a defn compiler: `compiler: EMLX`.

        Nx.Defn.default_options(compiler: EMLX)              # every defn / jit
        config :nx, :default_defn_options, compiler: EMLX    # the same, in config
        Nx.Defn.jit(&MyModel.predict/2, compiler: EMLX, device: :gpu)
        Nx.Serving.jit(&MyModel.predict/2, compiler: EMLX, max_concurrency: 2)

    A defn function is lowered once per function, input templates, device
    and options into a native program: the very ops `EMLX.Backend` runs for
    each node (recorded while the expression is evaluated on stand-ins that
    hold no data), kept as a flat list of steps over numbered slots. A call
    then sends one job to a command queue, whose thread builds the whole MLX
    graph, drives `while` loops and `cond` branches itself (no BEAM round
    trip per iteration), evaluates the outputs at once — so intermediates
    exist only inside MLX, which reuses their buffers — and replies. A
    straight-line program (no `while`, `cond`, check or callback; unfused)
    whose graph is small runs in the calling NIF instead when its CPU queue
    is idle, as small eager evaluations do. A second call with the same
    templates does no lowering.

        iex> add_one = Nx.Defn.jit(&Nx.add(&1, 1), compiler: EMLX, device: :cpu)
        iex> add_one.(Nx.tensor([1, 2], backend: {EMLX.Backend, device: :cpu})) |> Nx.to_flat_list()
        [2, 3]

    The results are evaluated `EMLX.Backend` tensors on the compiler's
    device. Inputs of another backend are copied in; `EMLX.Backend` inputs of
    the other device or of another command queue are read in place (an
    unevaluated one is evaluated on its own queue first).

    ## Options

      * `:device` — `:cpu` or `:gpu` (default `EMLX.default_device/0`).
      * `:command_queue` — an `EMLX.CommandQueue` to run on (default: the
        queue bound with `EMLX.CommandQueue.with_queue/2`, else the device's
        default queue).
      * `:max_concurrency` — how many partitions `Nx.Serving` starts with
        `partitions: true`; each gets a command queue (an OS thread and an MLX
        stream) of its own, owned by the serving.
      * `:hooks` — a map of hook names to functions, overriding (or giving)
        the callbacks of named `hook`s, as `Nx.Defn.Evaluator` takes it.
      * `:fuse` — hand each run of the program's ops between control-flow
        steps to MLX's `mx::compile`, which fuses element-wise chains into one
        kernel (default `true` on the GPU, `false` on the CPU, where MLX
        compiles fused kernels with the system C++ compiler, `g++`, the first
        time each is met: seconds, once per kernel and machine — MLX keeps
        them on disk). Where MLX cannot trace a part, that part runs unfused.

    Any other option raises `ArgumentError` naming it (`:compiler` and
    `:batch_keys`, which Nx itself passes along, are accepted).

    ## What runs where

      * Every `Nx.Defn.Expr` node lowers to the `EMLX.Backend` callback of the
        same name, so compiled and eager code compute alike: the same integer
        corner cases, `float64` precise paths on the CPU, `f8`/2-bit/4-bit
        narrowing, quantized weights in `Nx.dot`, `EMLX.Fast` fused kernels
        and `Nx.block/4` natives (`Nx.LinAlg`, FFTs, `Nx.top_k`, cumulative
        ops); a block `EMLX.Backend` has no native form for runs its default
        expression, lowered the same way.
      * `while` and `cond` run on the queue thread: the predicate is
        evaluated there and the loop body's graph built again per iteration
        (compiled once by MLX when fusing). A counted loop — its condition
        compares a counter with a known start and a known positive step to
        a known bound, as in `while x, i <- 0..9` or `while {i = 0, x},
        i < 10` — never evaluates its predicate: the body runs that many
        times and the state is evaluated every 1024 or so ops, or with
        whatever reads it.
      * Hooks (`hook/3`, tokens, `print_value/2`) receive their values in the
        calling process after the run, in program order, once per iteration
        inside a loop.
      * `Nx.runtime_call/4`, and the few `EMLX.Backend` paths that compute in
        `Nx.BinaryBackend` (`Nx.LinAlg.triangular_solve/3` of complex
        matrices), are callbacks: the queue thread hands the evaluated inputs
        to the calling process, which runs the function (with a command queue
        of its own bound, so what it builds never waits behind the program's
        queue) and answers; the program then goes on. A callback that raises
        makes the call raise it.
      * `Nx.reduce/4` and `Nx.window_reduce/5` with a reducer: the reducer's
        expression is applied element-wise to whole tensors. `reduce` folds
        pairwise (log2(n) steps) when the reducer is one order-free op of its
        two arguments (`max`, `min`, logical and bitwise ops, integer `+` and
        `*`), else it is Nx's left fold, in Nx's order (unrolled for short
        axes, a loop otherwise); `window_reduce` folds each window's
        positions in row-major order (at most 4096 positions). A reducer
        that is not element-wise raises `ArgumentError` naming the op.
      * Checks that the eager backend makes by reading a value back (a
        singular triangular system raises) are made where they stand when the
        program runs, and raise the same `ArgumentError`.

    ## Caching

    Programs are kept per function, input signature (shape, type, names,
    vectorized axes; a quantized input's layout), device, `:fuse` and hook
    names, for the life of the VM, at most 4096 of them (past that the cache
    starts over). A function from `Nx.Defn.compile/3` also skips Nx's own
    tracing of the arguments on every call.
    """

    # The Nx.Defn.Compiler callbacks live in `EMLX`, which delegates here.
    # EMLX.Defn.Lower records what EMLX.Backend builds (EMLX.Defn.Trace);
    # program.rs / program.cc hold and run the program.

    alias Nx.Defn.Composite
    alias Nx.Tensor, as: T
    alias EMLX.Backend.Convert
    alias EMLX.Defn.{Lower, Trace}

    @options [:device, :max_concurrency, :command_queue, :hooks, :fuse]
    # Options Nx itself passes along to compilers (Nx.Serving, Nx.Defn).
    @nx_options [:compiler, :batch_keys]
    @table EMLX.Defn.Cache

    @doc false
    def table, do: @table

    ## Nx.Defn.Compiler

    @doc false
    def __partitions_options__(opts) do
      config = config!(opts)
      count = Keyword.get(opts, :max_concurrency, 1)

      unless is_integer(count) and count > 0 do
        raise ArgumentError, ":max_concurrency must be a positive integer, got: #{inspect(count)}"
      end

      # One command queue (one thread, one MLX stream) per partition, owned
      # by the calling process (Nx.Serving's), so they end with it.
      for _ <- 1..count//1 do
        opts
        |> Keyword.delete(:max_concurrency)
        |> Keyword.merge(device: config.device, command_queue: EMLX.CommandQueue.new!(config.device))
      end
    end

    @doc false
    def __to_backend__(opts), do: {EMLX.Backend, device: config!(opts).device}

    @doc false
    def __jit__(key, vars, fun, args_list, opts) do
      config = config!(opts)
      Enum.map(args_list, &call(key, vars, fun, config, &1))
    end

    @doc false
    def __compile__(key, vars, fun, opts) do
      config = config!(opts)
      fn args_list -> Enum.map(args_list, &call(key, vars, fun, config, &1)) end
    end

    ## Options

    defp config!(opts) do
      for {name, _} <- opts, name not in @options and name not in @nx_options do
        raise ArgumentError,
              "unknown option #{inspect(name)} for compiler: EMLX; the options are " <>
                Enum.map_join(@options, ", ", &inspect/1)
      end

      queue =
        case Keyword.get(opts, :command_queue) do
          nil -> nil
          %EMLX.CommandQueue{} = queue -> queue
          other -> raise ArgumentError, ":command_queue must be an EMLX.CommandQueue, got: #{inspect(other)}"
        end

      device =
        case {Keyword.get(opts, :device), queue} do
          {nil, nil} ->
            EMLX.default_device()

          {nil, %{device: device}} ->
            device

          {device, nil} when device in [:cpu, :gpu] ->
            device

          {device, %{device: device}} ->
            device

          {device, nil} ->
            raise ArgumentError, "unknown device #{inspect(device)}: expected :cpu or :gpu"

          {device, queue} ->
            raise ArgumentError,
                  "device: #{inspect(device)} differs from the device of the :command_queue (#{inspect(queue.device)})"
        end

      hooks =
        case Keyword.get(opts, :hooks, %{}) do
          hooks when is_map(hooks) -> hooks
          other -> raise ArgumentError, ":hooks must be a map of hook names to functions, got: #{inspect(other)}"
        end

      fuse =
        case Keyword.get(opts, :fuse, default_fuse(device)) do
          fuse when is_boolean(fuse) -> fuse
          other -> raise ArgumentError, ":fuse must be a boolean, got: #{inspect(other)}"
        end

      %{device: device, queue: queue, hooks: hooks, fuse: fuse}
    end

    # Fusion (mx::compile) pays on the GPU; on the CPU MLX's fused kernels are
    # compiled by a C++ compiler at run time and measured no faster (bench/).
    defp default_fuse(:gpu), do: true
    defp default_fuse(:cpu), do: false

    ## Calls

    defp call(key, vars, fun, config, args) do
      tensors = Enum.map(args, & &1.())

      if Process.get(Trace.key()) do
        inline(vars, fun, config, tensors)
      else
        signature = Enum.map(tensors, &signature/1)
        cache_key = {key, signature, config.device, config.fuse, Map.keys(config.hooks)}

        compiled =
          case :ets.lookup(@table, cache_key) do
            [{_, compiled}] ->
              compiled

            [] ->
              compiled = build(vars, fun, config, tensors)
              remember(cache_key, compiled)
              compiled
          end

        run(compiled, tensors, config)
      end
    end

    # At most this many compiled programs are kept (a function built anew
    # for every call, as a closure over changing values, would otherwise fill
    # the cache): past it the cache starts over.
    @cache_size 4096

    defp remember(key, compiled) do
      if :ets.info(@table, :size) >= @cache_size, do: :ets.delete_all_objects(@table)
      :ets.insert(@table, {key, compiled})
    end

    # What a compiled program depends on in an input: its template, and for a
    # quantized tensor the layout of its codes and scales.
    defp signature(%T{data: %EMLX.Backend{quantization_config: cfg}} = t) when cfg != nil,
      do: {Nx.to_template(t), quantization_signature(cfg)}

    defp signature(t), do: Nx.to_template(t)

    defp quantization_signature(cfg) do
      cfg
      |> Map.from_struct()
      |> Enum.map(fn
        {field, %T{} = t} -> {field, Nx.to_template(t)}
        other -> other
      end)
    end

    # A call made while another function is being compiled (a defn function
    # that EMLX.Backend's code calls): lowered in place, into the same trace.
    defp inline(vars, fun, config, tensors) do
      {expr, templates} = outputs(fun.(vars))
      params = Enum.map(tensors, &Nx.devectorize/1)
      {result, hook_specs} = Lower.lower(expr, params, config.device, config.hooks)

      if hook_specs != [] do
        raise ArgumentError,
              "compiler: EMLX cannot run hooks of a defn function called while another function is compiled"
      end

      attach(Composite.flatten_list([result]), templates)
    end

    ## Building

    defp build(vars, fun, config, tensors) do
      {expr, templates} = outputs(fun.(vars))
      device = config.device

      {{result, inputs, hook_specs}, steps, callbacks} =
        with_defaults(device, fn ->
          Trace.run(fn ->
            params = Enum.map(tensors, &stand_in(&1, device))
            {result, hook_specs} = Lower.lower(expr, params, device, config.hooks)
            {result, Enum.flat_map(params, &Lower.arrays/1), hook_specs}
          end)
        end)

      leaves =
        Enum.map(Composite.flatten_list([result]), fn
          %T{data: %EMLX.Backend{}} = leaf -> leaf
          leaf -> Nx.backend_copy(leaf, {EMLX.Backend, device: device})
        end)

      outputs = Enum.flat_map(leaves, &Lower.arrays/1)
      # MLX 0.32.4's CUDA backend cannot build fused kernels that convert
      # complex values ("Failed to compile kernel": no cast from complex64_t),
      # so a GPU program with complex values runs unfused.
      fuse = config.fuse and not (device == :gpu and complex?(expr))
      program = EMLX.NIF.program_new({inputs, steps, outputs, fuse})

      hooks = Map.new(hook_specs, fn {id, spec, value} -> {id, {spec, value}} end)
      %{program: program, outputs: leaves, templates: templates, hooks: hooks, callbacks: callbacks}
    end

    # Whether any node of the expression graph, inner scopes (while bodies,
    # cond clauses, default implementations) included, has a complex type.
    defp complex?(expr) do
      every_argument = fn node ->
        {_, args} = Nx.Defn.Tree.apply_args(node, :all, [], &{&1, [&1 | &2]})
        {:ok, args}
      end

      expr |> EMLX.Defn.Tree.post_order(every_argument) |> Enum.any?(&match?(%T{type: {:c, _}}, &1))
    end

    # The devectorized output expression, and the container of its
    # (vectorized) templates, as Nx.Defn.Evaluator keeps them.
    defp outputs(expr) do
      {Composite.traverse(expr, &Nx.devectorize/1), Composite.traverse(expr, &Nx.to_template/1)}
    end

    # Compilation runs nested defn functions through this compiler (inlined,
    # see call/5) and creates tensors on EMLX.
    defp with_defaults(device, fun) do
      previous_opts = Nx.Defn.default_options()
      previous_backend = Nx.default_backend()
      Nx.Defn.default_options(Keyword.put(previous_opts, :compiler, EMLX))
      Nx.default_backend({EMLX.Backend, device: device})

      try do
        fun.()
      after
        Nx.Defn.default_options(previous_opts)
        Nx.default_backend(previous_backend)
      end
    end

    # A traced stand-in for an input tensor (devectorized, as the
    # expression sees it).
    defp stand_in(t, device), do: t |> Nx.devectorize() |> Lower.stand_in(device)

    ## Running

    defp run(compiled, tensors, config) do
      queue = if config.queue, do: config.queue.ref, else: EMLX.CommandQueue.current(config.device)
      inputs = Enum.flat_map(tensors, &input_arrays(&1, config.device))

      {outputs, hooks} =
        EMLX.Native.run_program(queue, compiled.program, inputs, compiled.callbacks, config.device)

      {leaves, []} = Enum.map_reduce(compiled.outputs, outputs, &wrap/2)

      for {id, values} <- hooks do
        {spec, value} = Map.fetch!(compiled.hooks, id)
        fun = Lower.resolve_hook(spec, config.hooks)
        {value, []} = Composite.traverse(value, values, &wrap/2)
        fun.(value)
      end

      attach(leaves, compiled.templates)
    end

    defp input_arrays(%T{data: %EMLX.Backend{}} = t, _device), do: Lower.arrays(t)
    defp input_arrays(t, device), do: [t |> Nx.devectorize() |> Convert.from_nx(device)]

    # A traced leaf with its array(s) replaced by ones from `arrays`.
    defp wrap(%T{data: %EMLX.Backend{quantization_config: nil} = data} = leaf, [ref | rest]),
      do: {%{leaf | data: %{data | ref: ref}}, rest}

    defp wrap(%T{data: %EMLX.Backend{quantization_config: cfg} = data} = leaf, [ref | rest]) do
      {cfg, rest} =
        cfg
        |> Map.from_struct()
        |> Enum.sort()
        |> Enum.map_reduce(rest, fn
          {field, %T{} = t}, rest ->
            {t, rest} = wrap(t, rest)
            {{field, t}, rest}

          other, rest ->
            {other, rest}
        end)

      {%{leaf | data: %{data | ref: ref, quantization_config: struct(data.quantization_config.__struct__, cfg)}}, rest}
    end

    # Output leaves (flat, devectorized) onto the container of templates.
    defp attach(leaves, templates) do
      {result, []} =
        Composite.traverse(templates, leaves, fn template, [leaf | rest] ->
          {%{template | data: leaf.data}, rest}
        end)

      result
    end
  end
end
