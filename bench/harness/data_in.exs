defmodule Bench.DataIn do
  @moduledoc """
  Data into EMLX beyond `from_binary` of one binary: model-weight loading
  (one large binary sliced into many tensors, as a safetensors file is) and
  `Nx.from_pointer` of memory EMLX does not own.
  """

  alias Bench.Workloads, as: W

  @mib 1024 * 1024

  def all(ctx), do: [slices(ctx), from_pointer(ctx)]

  @pieces 64

  defp slices(ctx) do
    d = ctx.device
    bytes = 64 * @mib
    piece = div(bytes, @pieces)

    emlx =
      W.emlx(fn ->
        bin = Bench.Workloads.wave(div(bytes, 4), 0.001, :float32, :cpu) |> EMLX.to_blob() |> :binary.copy()

        fn ->
          for i <- 0..(@pieces - 1) do
            EMLX.from_blob(binary_part(bin, i * piece, piece), {div(piece, 4)}, :float32, d)
          end
          |> Enum.each(&EMLX.eval/1)
        end
      end)

    %{
      id: "from_binary_slices",
      group: "binary",
      title: "weights loading: one binary sliced into #{@pieces} tensors",
      size: "64 MiB",
      dtype: "f32",
      bytes: bytes,
      goals: %{memcpy: {:min_speed, 0.8}},
      runners:
        [
          emlx,
          W.memcpy_reference(bytes),
          W.numpy(ctx, "memcpy", %{bytes: bytes}, :numpy_copy, "memcpy (numpy copyto)"),
          W.mlx(
            ctx,
            "from_binary_slices",
            %{bytes: bytes, pieces: @pieces},
            :mlx,
            "raw MLX mx.array(frombuffer slices)"
          )
        ] ++ W.nx(ctx, :from_binary_slices, %{bytes: bytes, pieces: @pieces}, binary: false),
      notes: ["each slice is binary_part/3 of one binary (a sub-binary: no bytes move on the BEAM side)"]
    }
  end

  defp from_pointer(ctx) do
    bytes = 64 * @mib

    %{
      id: "from_pointer",
      group: "binary",
      title: "Nx.from_pointer of a :local pointer (a copy)",
      size: "64 MiB",
      dtype: "f32",
      bytes: bytes,
      goals: %{numpy_copy: {:min_speed, 0.8}},
      runners:
        [W.memcpy_reference(bytes), W.numpy(ctx, "memcpy", %{bytes: bytes}, :numpy_copy, "memcpy (numpy copyto)")] ++
          W.nx(ctx, :from_pointer, %{bytes: bytes}, binary: false),
      notes: [
        "the pointer is another EMLX tensor's buffer (Nx.to_pointer); from_pointer copies it into a new MLX buffer"
      ]
    }
  end
end
