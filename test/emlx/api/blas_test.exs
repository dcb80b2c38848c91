defmodule EMLX.API.BlasTest do
  # The BLAS MLX's CPU matrix products run on (whichever library and kernel
  # set this build and CPU picked, see EMLX.blas_info/0), checked against
  # products computed here in Elixir floats (float64) from the very same
  # input values: plain, odd and long-contraction shapes, transposed
  # operands (MLX hands BLAS the transpose flags), batches, float64 and
  # complex64 GEMM, and half precision (computed through float32 GEMM).
  use ExUnit.Case, async: true
  import EMLX.APIHelpers

  @eps %{float32: :math.pow(2, -24), float64: :math.pow(2, -53), bfloat16: :math.pow(2, -8), float16: :math.pow(2, -11)}

  test "MLX's cblas_sgemm resolves to the BLAS the build chose" do
    info = EMLX.blas_info()

    case info.kind do
      "openblas (scipy-openblas32 wheel)" ->
        assert info.sgemm_from =~ "libemlx_blas.so"
        assert info.config =~ "OpenBLAS"
        assert info.core != ""

      "openblas (system)" ->
        assert info.sgemm_from =~ "openblas"

      "reference BLAS bundled with MLX" ->
        assert info.sgemm_from == "" or info.sgemm_from =~ "blas"
    end
  end

  describe "float32 GEMM against a float64 reference" do
    for {m, k, n} <- [{64, 64, 64}, {37, 129, 65}, {128, 96, 80}, {3, 1000, 5}, {1, 300, 1}] do
      test "#{m}x#{k} @ #{k}x#{n}" do
        {a, av} = random({unquote(m), unquote(k)}, :float32, 1)
        {b, bv} = random({unquote(k), unquote(n)}, :float32, 2)
        check(EMLX.matmul(a, b), reference(av, bv), av, bv, :float32)
      end
    end

    test "transposed operands: aᵀ @ b, a @ bᵀ, aᵀ @ bᵀ" do
      {at, atv} = random({96, 70}, :float32, 3)
      av = transpose(atv)
      {b, bv} = random({96, 50}, :float32, 4)
      check(EMLX.matmul(EMLX.transpose(at, [1, 0]), b), reference(av, bv), av, bv, :float32)

      {a, av2} = random({60, 70}, :float32, 5)
      {bt, btv} = random({50, 70}, :float32, 6)
      check(EMLX.matmul(a, EMLX.transpose(bt, [1, 0])), reference(av2, transpose(btv)), av2, transpose(btv), :float32)

      {ct, ctv} = random({40, 96}, :float32, 7)
      t = EMLX.matmul(EMLX.transpose(at, [1, 0]), EMLX.transpose(ct, [1, 0]))
      check(t, reference(av, transpose(ctv)), av, transpose(ctv), :float32)
    end

    test "batched, and a broadcast batch" do
      {a, av} = random({4, 33, 17}, :float32, 7)
      {b, bv} = random({4, 17, 41}, :float32, 8)
      product = EMLX.matmul(a, b)
      assert EMLX.shape(product) == {4, 33, 41}
      rows = to_list(product)

      for i <- 0..3 do
        check_list(
          Enum.at(rows, i),
          reference(Enum.at(av, i), Enum.at(bv, i)),
          Enum.at(av, i),
          Enum.at(bv, i),
          :float32
        )
      end

      {w, wv} = random({17, 9}, :float32, 9)
      broadcast = EMLX.matmul(a, w) |> to_list()
      for i <- 0..3, do: check_list(Enum.at(broadcast, i), reference(Enum.at(av, i), wv), Enum.at(av, i), wv, :float32)
    end

    test "tensordot contracting the first axes" do
      {a, av} = random({80, 30}, :float32, 10)
      {b, bv} = random({80, 20}, :float32, 11)
      check(EMLX.tensordot(a, b, [0], [0]), reference(transpose(av), bv), transpose(av), bv, :float32)
    end
  end

  test "float64 GEMM (dgemm) against the same product in Elixir" do
    {a, av} = random({70, 45}, :float64, 12)
    {b, bv} = random({45, 66}, :float64, 13)
    check(EMLX.matmul(a, b), reference(av, bv), av, bv, :float64)
  end

  test "complex64 GEMM (cgemm): real and imaginary parts" do
    {ar, arv} = random({40, 50}, :float32, 14)
    {ai, aiv} = random({40, 50}, :float32, 15)
    {br, brv} = random({50, 30}, :float32, 16)
    {bi, biv} = random({50, 30}, :float32, 17)
    # The imaginary unit (EMLX.scalar_tensor takes a Complex; built as its
    # struct so that this runs without the complex package, as in CI).
    i = EMLX.scalar_tensor(%{__struct__: Complex, re: 0.0, im: 1.0}, :complex64, :cpu)
    a = EMLX.add(EMLX.astype(ar, :complex64), EMLX.multiply(EMLX.astype(ai, :complex64), i))
    b = EMLX.add(EMLX.astype(br, :complex64), EMLX.multiply(EMLX.astype(bi, :complex64), i))
    product = EMLX.matmul(a, b)
    re = combine(reference(arv, brv), reference(aiv, biv), &-/2)
    im = combine(reference(arv, biv), reference(aiv, brv), &+/2)
    abs_a = combine(arv, aiv, &(abs(&1) + abs(&2)))
    abs_b = combine(brv, biv, &(abs(&1) + abs(&2)))
    check(EMLX.real(product), re, abs_a, abs_b, :float32)
    check(EMLX.imag(product), im, abs_a, abs_b, :float32)
  end

  describe "half precision through float32 GEMM" do
    for type <- [:bfloat16, :float16] do
      test "#{type}: 96x80 @ 80x72, plain and batched, within one #{type} rounding" do
        {a, av} = random({96, 80}, unquote(type), 18)
        {b, bv} = random({80, 72}, unquote(type), 19)
        product = EMLX.matmul(a, b)
        assert EMLX.scalar_type(product) == unquote(type)
        check(product, reference(av, bv), av, bv, unquote(type))

        {x, xv} = random({3, 70, 64}, unquote(type), 20)
        {y, yv} = random({3, 64, 70}, unquote(type), 21)
        rows = EMLX.matmul(x, y) |> to_list()

        for i <- 0..2,
            do:
              check_list(
                Enum.at(rows, i),
                reference(Enum.at(xv, i), Enum.at(yv, i)),
                Enum.at(xv, i),
                Enum.at(yv, i),
                unquote(type)
              )
      end
    end

    test "bfloat16 tensordot and einsum take the same path" do
      {a, av} = random({90, 60}, :bfloat16, 22)
      {b, bv} = random({60, 70}, :bfloat16, 23)
      check(EMLX.tensordot(a, b, [1], [0]), reference(av, bv), av, bv, :bfloat16)
      check(EMLX.einsum(a, b, "ij,jk->ik"), reference(av, bv), av, bv, :bfloat16)
    end
  end

  ## helpers

  # A tensor of `shape` with values in [-1, 1) from a fixed sequence, and
  # its values as nested lists of the numbers the tensor really holds.
  defp random(shape, type, seed) do
    count = shape |> Tuple.to_list() |> Enum.product()

    values =
      Stream.unfold(seed * 7919 + 1, fn s ->
        s = rem(s * 1_103_515_245 + 12_345, 2_147_483_648)
        {s / 1_073_741_824 - 1.0, s}
      end)
      |> Enum.take(count)

    t =
      values
      |> Enum.chunk_every(elem(shape, tuple_size(shape) - 1))
      |> nest(shape)
      |> tensor(:float64)
      |> EMLX.astype(type)

    # Read back through float64: exactly the values `t` holds.
    {t, to_list(EMLX.astype(t, :float64))}
  end

  defp nest(rows, shape) when tuple_size(shape) <= 2, do: rows

  defp nest(rows, shape),
    do: Enum.chunk_every(rows, elem(shape, tuple_size(shape) - 2)) |> nest(Tuple.delete_at(shape, 0))

  defp transpose(rows), do: rows |> Enum.zip() |> Enum.map(&Tuple.to_list/1)

  defp reference(a, b) do
    bt = transpose(b)
    for row <- a, do: for(col <- bt, do: dot(row, col))
  end

  defp dot(xs, ys), do: Enum.zip_reduce(xs, ys, 0.0, fn x, y, acc -> acc + x * y end)

  defp combine(a, b, f), do: Enum.zip_with(a, b, fn ra, rb -> Enum.zip_with(ra, rb, f) end)

  defp check(t, expected, a, b, type), do: check_list(to_list(EMLX.astype(t, :float64)), expected, a, b, type)

  # Each entry within the forward error bound of a k-term dot product,
  # 2·k·u·Σ|a||b| (for half types, plus one rounding of the result).
  defp check_list(actual, expected, a, b, type) do
    k = length(hd(a))
    abs_ab = reference(Enum.map(a, fn r -> Enum.map(r, &abs/1) end), Enum.map(b, fn r -> Enum.map(r, &abs/1) end))
    u = if type in [:bfloat16, :float16], do: @eps.float32, else: @eps[type]
    rounding = if type in [:bfloat16, :float16], do: @eps[type], else: 0.0

    for {{ra, re}, {rb, i}} <- Enum.zip(Enum.zip(actual, expected), Enum.with_index(abs_ab)),
        {{x, y}, {bound, j}} <- Enum.zip(Enum.zip(ra, re), Enum.with_index(rb)) do
      tol = 2 * k * u * bound + rounding * abs(y) + 1.0e-300
      assert abs(x - y) <= tol, "entry [#{i}][#{j}] (#{type}): got #{x}, expected #{y} (tolerance #{tol})"
    end
  end
end
