if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Fuzz.Compare do
    @moduledoc false
    # Dtype-aware comparison of a result with the reference.
    #
    # Types and shapes must be equal. Integers and booleans must be equal.
    # For floats, NaN must meet NaN and an infinity the same infinity
    # (-0.0 equals 0.0); finite values must agree within the step's
    # tolerance class, in units of the output type's epsilon:
    #   :exact           bit for bit (value-wise)
    #   :rounded         2 ulps: correctly rounded ops, and float narrowing,
    #                    where Nx.BinaryBackend truncates to bf16 and MLX rounds
    #   :approx          transcendental functions: 2 ulps for 16-bit floats
    #                    (computed wider, then rounded), 64 ulps otherwise
    #   {:sum, n}        n-term sums (reductions, dot, conv): the ordering of
    #                    the additions may differ; the bound is n^2 ulps of the
    #                    largest term
    #   {:product, n}    n-term products: 4n ulps relative
    #   {:contraction, n} n-term sums of products (dot, conv): as {:sum, n}; on
    #                    the GPU, where MLX computes float32 ones in TF32
    #                    (EMLX.TestDevice.tf32/2), plus n TF32 roundings
    #                    (2^-10 each) of the largest term

    @eps %{{:f, 64} => 2.220446049250313e-16, {:f, 32} => 1.1920929e-7, {:f, 16} => 9.765625e-4, {:bf, 16} => 7.8125e-3}
    @tiny %{
      {:f, 64} => 2.2250738585072014e-308,
      {:f, 32} => 1.1754944e-38,
      {:f, 16} => 6.1035156e-5,
      {:bf, 16} => 1.1754944e-38
    }

    @doc "`:ok` or `{:mismatch, reason}`; `scale` is the largest finite input magnitude."
    def compare(ref, got, tol, scale) do
      cond do
        ref.type != got.type ->
          {:mismatch, "type #{inspect(got.type)}, expected #{inspect(ref.type)}"}

        ref.shape != got.shape ->
          {:mismatch, "shape #{inspect(got.shape)}, expected #{inspect(ref.shape)}"}

        # Nx 0.13.1 broadcasts a scalar against a {0} operand to {1}, and
        # Nx.BinaryBackend then holds no bytes for that element: a reference
        # with nothing to compare (EMLX.Backend follows the same template).
        short_reference?(ref) ->
          :ok

        true ->
          refs = Nx.to_flat_list(ref)
          gots = got |> Nx.backend_copy(Nx.BinaryBackend) |> Nx.to_flat_list()

          bad = bad_elements(refs, gots, ref.type, tol, scale)

          case bad do
            [] ->
              :ok

            [{{r, g}, i} | _] ->
              {:mismatch,
               "#{length(bad)} of #{length(refs)} elements differ; first at flat index #{i}: " <>
                 "got #{inspect(g)}, expected #{inspect(r)} (tolerance #{inspect(tol)})"}
          end
      end
    end

    defp short_reference?(%Nx.Tensor{data: %Nx.BinaryBackend{state: bytes}} = ref),
      do: byte_size(bytes) < Nx.byte_size(ref)

    defp short_reference?(_ref), do: false

    @doc "The flat indices where `got` differs from `ref` beyond the tolerance."
    def differing(ref, got, tol, scale) do
      gots = got |> Nx.backend_copy(Nx.BinaryBackend) |> Nx.to_flat_list()
      for {_, i} <- bad_elements(Nx.to_flat_list(ref), gots, ref.type, tol, scale), do: i
    end

    defp bad_elements(refs, gots, type, tol, scale) do
      Enum.zip(refs, gots)
      |> Enum.with_index()
      |> Enum.reject(fn {{r, g}, _} -> close?(r, g, type, tol, scale) end)
    end

    defp close?(r, g, _type, _tol, _scale) when is_integer(r) or is_integer(g), do: r == g
    defp close?(r, g, _type, _tol, _scale) when is_atom(r) or is_atom(g), do: r == g
    defp close?(r, g, _type, :exact, _scale), do: r == g

    defp close?(r, g, type, tol, scale) do
      abs(r - g) <= bound(r, type, tol, scale)
    rescue
      # Erlang floats overflow with an exception: the difference is huge.
      ArithmeticError -> false
    end

    defp bound(r, type, tol, scale) do
      eps = @eps[type]
      tiny = @tiny[type]

      case tol do
        _ when abs(r) > 1.0e300 -> 1.0e308
        :rounded -> 2 * eps * abs(r) + tiny
        :approx when type in [{:f, 16}, {:bf, 16}] -> 2 * eps * (abs(r) + 1.0)
        :approx -> 64 * eps * max(abs(r), 1.0)
        {:sum, n} -> 2 * eps * abs(r) + n * n * eps * max(scale, tiny) * 2
        {:product, n} -> 4 * n * eps * abs(r) + tiny
        {:contraction, n} -> bound(r, type, {:sum, n}, scale) + tf32_bound(type, n, scale)
      end
    end

    @tf32_eps 9.765625e-4

    defp tf32_bound({:f, 32}, n, scale) do
      if EMLX.TestDevice.tf32() == [], do: 0.0, else: 2 * n * @tf32_eps * scale
    end

    defp tf32_bound(_type, _n, _scale), do: 0.0

    @doc "The largest finite magnitude among `tensors` (1.0 when none)."
    def scale(tensors) do
      tensors
      |> Enum.flat_map(fn t -> Nx.to_flat_list(t) end)
      |> Enum.filter(&is_number/1)
      |> Enum.map(&abs/1)
      |> Enum.max(fn -> 1.0 end)
      |> max(1.0)
    end

    @doc "The magnitude scale of a step's terms (products for dot, outer and conv)."
    def step_scale(op, inputs) when op in [:dot, :outer, :conv], do: product_scale(inputs)
    def step_scale(_op, inputs), do: scale(inputs)

    # Dot products, outer products and convolutions: terms are products.
    @doc false
    def product_scale(tensors) do
      tensors |> Enum.map(&scale([&1])) |> Enum.reduce(1.0, &min(&1 * &2, 1.0e308))
    rescue
      ArithmeticError -> 1.0e308
    end
  end
end
