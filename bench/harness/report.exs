defmodule Bench.Report do
  @moduledoc """
  Turns measured workloads into rows, a markdown table and JSON.

  A row pairs one EMLX measurement (a subject) with one reference measured
  in the same rounds. `ratio` is EMLX's median time over the reference's
  (below 1: EMLX is faster). Spread is the interquartile range over the
  median. A goal is judged on the medians:
  `{:max_ratio, r}` (time ratio at most r), `{:min_speed, s}` (reference
  time / EMLX time at least s), `{:max_diff, ns}` (EMLX at most ns slower
  per unit).
  """

  @doc "Rows of one measured workload (`results` from Bench.Measure.run/2)."
  def rows(w, results) do
    all_subjects = for r <- w.runners, r.role == :subject, do: results[r.id]
    measured = Enum.filter(all_subjects, &(&1.status == :ok))
    # Skipped subjects are listed under the table; one is kept only when no
    # subject ran, so the references measured still show.
    subjects = if measured == [], do: Enum.take(all_subjects, 1), else: measured
    refs = for r <- w.runners, r.role == :reference, do: {r.id, results[r.id]}
    per = w[:per] || 1

    for s <- subjects, {ref_id, ref} <- if(refs == [], do: [{nil, nil}], else: refs) do
      goal = w.goals[ref_id]
      both? = s.status == :ok and ref != nil and ref.status == :ok
      ratio = if both?, do: s.median / ref.median
      diff = if both?, do: (s.median - ref.median) / per

      %{
        workload: w.id,
        title: w.title,
        size: w.size,
        dtype: w.dtype,
        subject: s.label,
        subject_stats: stats(s, w),
        reference: ref && ref.label,
        reference_id: ref_id,
        reference_stats: ref && stats(ref, w),
        ratio: ratio,
        diff_ns_per_unit: diff,
        goal: goal && describe_goal(goal),
        goal_met: if(goal && both?, do: met?(goal, ratio, diff))
      }
    end
  end

  defp stats(%{status: :skipped, reason: reason}, _w), do: %{status: "skipped", reason: reason}

  defp stats(%{status: :ok} = r, w) do
    per = w[:per] || 1

    base = %{
      status: "ok",
      median_ns: r.median / per,
      p25_ns: r.p25 / per,
      p75_ns: r.p75 / per,
      spread: if(r.median > 0, do: (r.p75 - r.p25) / r.median, else: 0.0),
      reps: r.reps,
      calls_per_rep: r.inner,
      unit: w[:unit]
    }

    cond do
      w[:flops] -> Map.put(base, :gflops, w.flops / r.median)
      w[:bytes] -> Map.put(base, :gb_per_s, w.bytes / r.median)
      true -> base
    end
  end

  defp met?({:max_ratio, r}, ratio, _), do: ratio <= r
  defp met?({:min_speed, s}, ratio, _), do: 1 / ratio >= s
  defp met?({:max_diff, ns}, _, diff), do: diff <= ns

  defp describe_goal({:max_ratio, r}), do: "time <= #{fmt_x(r)}"
  defp describe_goal({:min_speed, s}), do: "speed >= #{fmt_x(s)}"
  defp describe_goal({:max_diff, ns}), do: "within #{fmt_time(ns)}/op"

  ## Markdown

  @header "| workload | size | dtype | EMLX via | EMLX median | spread | reference | ref. median | spread | EMLX/ref time | goal |"
  @rule "|---|---|---|---|---:|---:|---|---:|---:|---:|---|"

  def markdown(meta, workloads) do
    rows = Enum.flat_map(workloads, & &1.rows)
    skips = skipped(workloads)

    [
      "# EMLX benchmark (`#{meta.command}`)\n",
      "",
      machine(meta),
      "",
      "Medians of interleaved repetitions (EMLX and its references alternate within each round, in the same run).",
      "Spread: ± half the interquartile range, relative to the median. EMLX/ref time < 1: EMLX is faster;",
      "speed = ref time / EMLX time. Rates are computed from the medians.",
      "",
      @header,
      @rule,
      rows |> Enum.chunk_by(& &1.workload) |> Enum.flat_map(&group_lines/1),
      "",
      notes(workloads),
      if(skips == [], do: [], else: ["", "Skipped:", "" | skips])
    ]
    |> List.flatten()
    |> Enum.join("\n")
    |> Kernel.<>("\n")
  end

  defp machine(meta) do
    [
      "- machine: #{meta.cpu}, #{meta.cores} cores, #{meta.memory}; load average #{meta.load_start} at start, #{meta.load_end} at end",
      "- device: #{meta.device}; date: #{meta.date}; EMLX #{meta.commit}",
      "- BEAM: Erlang/OTP #{meta.otp}, Elixir #{meta.elixir}; Nx: #{meta.nx}; EMLX.Backend: #{meta.backend}",
      "- BLAS: #{blas_line(meta.blas)}#{meta.coretype}",
      "- Python reference: #{meta.python}"
    ]
  end

  defp blas_line(%{kind: kind, config: config, core: core, threads: threads, library: lib}) when config != "",
    do: "#{kind}, `#{config}`, core **#{core}**, #{threads} threads (#{lib})"

  defp blas_line(%{kind: kind}), do: kind

  # The workload's and the subject's cells are written once per group of rows.
  defp group_lines(rows) do
    rows
    |> Enum.with_index()
    |> Enum.map(fn {r, i} ->
      prev = if i > 0, do: Enum.at(rows, i - 1)
      row_line(r, i == 0, prev == nil or prev.subject != r.subject)
    end)
  end

  defp row_line(r, first?, new_subject?) do
    s = r.subject_stats
    ref = r.reference_stats
    w_cells = if first?, do: ["#{r.title} (`#{r.workload}`)", r.size, r.dtype], else: ["", "", ""]
    s_cells = if new_subject?, do: [r.subject, median_cell(s), spread_cell(s)], else: ["", "", ""]

    cells =
      w_cells ++
        s_cells ++
        [
          r.reference || "—",
          if(ref, do: median_cell(ref), else: "—"),
          if(ref, do: spread_cell(ref), else: ""),
          if(r.ratio, do: fmt_x(r.ratio), else: "—"),
          goal_cell(r)
        ]

    "| " <> Enum.join(cells, " | ") <> " |"
  end

  defp median_cell(%{status: "skipped"}), do: "skipped"

  defp median_cell(%{median_ns: m} = s) do
    rate =
      cond do
        s[:gflops] -> " (#{fmt_num(s.gflops)} GFLOP/s)"
        s[:gb_per_s] -> " (#{fmt_num(s.gb_per_s)} GB/s)"
        true -> ""
      end

    unit = if s[:unit], do: "/#{s.unit}", else: ""
    fmt_time(m) <> unit <> rate
  end

  defp spread_cell(%{status: "ok", spread: sp}), do: "±#{fmt_num(sp * 50)}%"
  defp spread_cell(_), do: ""

  defp goal_cell(%{goal: nil}), do: ""
  defp goal_cell(%{goal: g, goal_met: nil}), do: "#{g}: not measured"

  defp goal_cell(%{goal: g, goal_met: met} = r) do
    got =
      cond do
        g =~ "speed" -> "#{fmt_x(1 / r.ratio)}"
        g =~ "within" -> "#{if r.diff_ns_per_unit >= 0, do: "+", else: "-"}#{fmt_time(abs(r.diff_ns_per_unit))}"
        true -> fmt_x(r.ratio)
      end

    "#{g}: #{got} #{if met, do: "✓", else: "✗"}"
  end

  defp notes(workloads) do
    for w <- workloads, note <- w.notes, do: "- `#{w.id}`: #{note}"
  end

  # One line per runner and reason, naming the workloads it applies to.
  defp skipped(workloads) do
    for(w <- workloads, {_id, %{status: :skipped} = r} <- Enum.sort(w.results), do: {{r.label, r.reason}, w.id})
    |> Enum.group_by(&elem(&1, 0), &elem(&1, 1))
    |> Enum.sort_by(fn {_, ids} -> -length(ids) end)
    |> Enum.map(fn {{label, reason}, ids} ->
      "- #{label}: #{reason} (#{Enum.map_join(ids, ", ", &"`#{&1}`")})"
    end)
  end

  ## Formatting

  def fmt_time(ns) when ns < 1_000, do: "#{fmt_num(ns)} ns"
  def fmt_time(ns) when ns < 1_000_000, do: "#{fmt_num(ns / 1_000)} µs"
  def fmt_time(ns) when ns < 1_000_000_000, do: "#{fmt_num(ns / 1_000_000)} ms"
  def fmt_time(ns), do: "#{fmt_num(ns / 1_000_000_000)} s"

  def fmt_x(x), do: "#{fmt_num(x)}x"

  # Three significant digits.
  def fmt_num(x) when x == 0, do: "0"

  def fmt_num(x) do
    digits = max(0, 2 - floor(:math.log10(abs(x))))
    :erlang.float_to_binary(x / 1, decimals: min(digits, 4))
  end
end
