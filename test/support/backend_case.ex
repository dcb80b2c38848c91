if Code.ensure_loaded?(Nx) do
  defmodule EMLX.BackendCase do
    @moduledoc false
    # Tests of EMLX.Backend against Nx.BinaryBackend as the oracle: the same
    # function runs on BinaryBackend tensors and on their EMLX copies, and
    # the results must agree in type, shape, names and values (exactly, or
    # within a tolerance for floating-point math that MLX rounds its own way).

    use ExUnit.CaseTemplate
    import ExUnit.Assertions

    using do
      quote do
        import EMLX.BackendCase
        @moduletag :nx
      end
    end

    @doc """
    An EMLX copy of a tensor (or of every tensor in a list or tuple) on the
    suite's device (EMLX.TestDevice.device_for/1: float64 stays on the CPU).
    """
    def emlx(%Nx.Tensor{} = t), do: Nx.backend_copy(t, {EMLX.Backend, device: EMLX.TestDevice.device_for(t.type)})
    def emlx(list) when is_list(list), do: Enum.map(list, &emlx/1)
    def emlx(tuple) when is_tuple(tuple), do: tuple |> Tuple.to_list() |> emlx() |> List.to_tuple()
    def emlx(other), do: other

    @doc "Whether `type` is a floating-point (or complex) type."
    def float?({kind, _}), do: kind in [:f, :bf, :c, :f8_e4m3fn]

    @doc "A Nx.BinaryBackend tensor."
    def bin(data, opts \\ []), do: Nx.tensor(data, Keyword.put(opts, :backend, Nx.BinaryBackend))

    @doc """
    Runs `fun` on `args` (tensors given on Nx.BinaryBackend) and on their
    EMLX copies, eagerly and compiled with `compiler: EMLX`, and asserts
    that both results agree with Nx.BinaryBackend's. Options: `:atol`/`:rtol`
    (compare within tolerance instead of exactly); `jit: false` skips the
    compiled run (only for functions defn cannot express: say why at the
    call).
    """
    def check(fun, args, opts \\ []) when is_function(fun) and is_list(args) do
      expected = Nx.with_default_backend(Nx.BinaryBackend, fn -> apply(fun, args) end)
      # A computation that involves float64 runs where float64 lives (the CPU).
      device = if f64?(args) or f64?(expected), do: :cpu, else: EMLX.TestDevice.device()
      backend = {EMLX.Backend, device: device}

      inputs = Enum.map(args, &if(is_struct(&1, Nx.Tensor), do: Nx.backend_copy(&1, backend), else: emlx(&1)))
      actual = Nx.with_default_backend(backend, fn -> apply(fun, inputs) end)
      assert_same(actual, expected, opts)

      if Keyword.get(opts, :jit, true) do
        assert_same(compiled(fun, inputs, device: device), expected, opts)
      end

      actual
    end

    @doc """
    `fun` applied to `args` through `Nx.Defn.jit` with `compiler: EMLX`: the
    tensors among `args` are the compiled function's parameters, the other
    arguments (numbers, options) are closed over, as they would be in defn.
    """
    def compiled(fun, args, opts \\ []) do
      # A list of tensors (concatenate, stack) goes in as a tuple parameter.
      tensors = for arg <- args, tensor_arg?(arg), do: if(is_list(arg), do: List.to_tuple(arg), else: arg)

      wrapper =
        Nx.Defn.Compiler.fun(length(tensors), fn params ->
          {call_args, []} =
            Enum.map_reduce(args, params, fn
              arg, [param | params] when is_list(arg) and arg != [] ->
                if tensor_arg?(arg), do: {Tuple.to_list(param), params}, else: {arg, [param | params]}

              arg, params ->
                if tensor_arg?(arg), do: {hd(params), tl(params)}, else: {arg, params}
            end)

          apply(fun, call_args)
        end)

      device = Keyword.get_lazy(opts, :device, &EMLX.TestDevice.device/0)

      Nx.with_default_backend({EMLX.Backend, device: device}, fn ->
        Nx.Defn.jit_apply(wrapper, tensors, Keyword.merge([compiler: EMLX, device: device], opts))
      end)
    end

    defp tensor_arg?(%Nx.Tensor{}), do: true

    defp tensor_arg?(tuple) when is_tuple(tuple) and tuple_size(tuple) > 0,
      do: tuple |> Tuple.to_list() |> Enum.all?(&tensor_arg?/1)

    defp tensor_arg?([_ | _] = list), do: Enum.all?(list, &match?(%Nx.Tensor{}, &1))
    defp tensor_arg?(_), do: false

    defp f64?(%Nx.Tensor{type: type}), do: type == {:f, 64}
    defp f64?(list) when is_list(list), do: Enum.any?(list, &f64?/1)
    defp f64?(tuple) when is_tuple(tuple), do: tuple |> Tuple.to_list() |> f64?()
    defp f64?(_), do: false

    @doc "Asserts an EMLX result equals an expected result (see check/3)."
    def assert_same(actual, expected, opts \\ [])

    def assert_same(actual, expected, opts) when is_tuple(actual) and is_tuple(expected) do
      assert tuple_size(actual) == tuple_size(expected)

      Enum.zip(Tuple.to_list(actual), Tuple.to_list(expected))
      |> Enum.each(fn {a, e} -> assert_same(a, e, opts) end)
    end

    def assert_same(actual, expected, opts)
        when is_map(actual) and is_map(expected) and
               not is_struct(actual) and not is_struct(expected) do
      assert Map.keys(actual) == Map.keys(expected)
      Enum.each(expected, fn {key, e} -> assert_same(Map.fetch!(actual, key), e, opts) end)
    end

    def assert_same(%Nx.Tensor{} = actual, %Nx.Tensor{} = expected, opts) do
      assert %EMLX.Backend{} = actual.data, "the result is not an EMLX.Backend tensor: #{inspect(actual)}"
      assert actual.type == expected.type, "type #{inspect(actual.type)}, expected #{inspect(expected.type)}"
      assert actual.shape == expected.shape, "shape #{inspect(actual.shape)}, expected #{inspect(expected.shape)}"
      assert actual.names == expected.names
      assert actual.vectorized_axes == expected.vectorized_axes

      actual_bin = Nx.backend_copy(actual, Nx.BinaryBackend)

      if opts[:atol] || opts[:rtol] do
        close? =
          Nx.all_close(actual_bin, expected,
            atol: opts[:atol] || 1.0e-6,
            rtol: opts[:rtol] || 1.0e-5,
            equal_nan: true
          )

        assert Nx.to_number(close?) == 1,
               "not within tolerance:\nactual:   #{inspect(actual_bin)}\nexpected: #{inspect(expected)}"
      else
        assert values(actual_bin) == values(expected),
               "values differ (#{inspect(expected.type)}):\nactual:   #{inspect(Nx.to_flat_list(actual_bin))}\n" <>
                 "expected: #{inspect(Nx.to_flat_list(expected))}"
      end
    end

    def assert_same(actual, expected, _opts), do: assert(actual == expected)

    # Values with NaNs compared as NaN (any payload); -0.0 equals 0.0
    # (Nx.BinaryBackend's signs of zero follow Erlang's arithmetic, not IEEE's).
    defp values(t) do
      t
      |> Nx.devectorize()
      |> Nx.to_flat_list()
      |> Enum.map(fn
        %Complex{re: re, im: im} -> {:c, float_key(re), float_key(im)}
        x -> float_key(x)
      end)
    end

    defp float_key(x) when is_float(x), do: x + 0.0
    defp float_key(x), do: x

    @doc "A deterministic random tensor of `type` and `shape` on Nx.BinaryBackend."
    def random(shape, type, seed \\ 0) do
      state = :rand.seed_s(:exsss, {seed + 1, 7, 11})
      n = Tuple.product(shape)
      {values, _} = Enum.map_reduce(1..max(n, 1)//1, state, fn _, st -> number(type, st) end)
      values = Enum.take(values, n)
      Nx.tensor(values, type: type, backend: Nx.BinaryBackend) |> Nx.reshape(shape)
    end

    defp number({kind, _}, st) when kind in [:f, :bf, :f8_e4m3fn] do
      {x, st} = :rand.uniform_s(st)
      {Float.round(x * 8 - 4, 3), st}
    end

    defp number({:c, _}, st) do
      {re, st} = number({:f, 32}, st)
      {im, st} = number({:f, 32}, st)
      {Complex.new(re, im), st}
    end

    defp number({:u, bits}, st) do
      {x, st} = :rand.uniform_s(min(2 ** bits, 200), st)
      {x - 1, st}
    end

    defp number({:s, bits}, st) do
      half = min(2 ** (bits - 1), 100)
      {x, st} = :rand.uniform_s(2 * half, st)
      {x - 1 - half, st}
    end
  end
end
