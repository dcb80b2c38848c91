defmodule Bench.Driver do
  @moduledoc """
  A long-lived subprocess that runs reference workloads on command, one
  request line in, one reply line out (bench/ref.py for raw MLX and numpy,
  bench/harness/blas_child.exs for the EMLX build without OpenBLAS).

  Replies: `ready <info>` once at start, then `ok [ns]`, `skip <reason>` or
  `error <message>`. Lines that match none of these (a library's chatter)
  are echoed to stderr and ignored.
  """

  defstruct [:port, :name, :info, :encode, next: 0]

  @doc """
  Starts `exe args`; waits for its `ready` line (up to `timeout_ms`).
  `encode` turns a request map into a line. Returns `{:ok, driver}` or
  `{:error, reason}`.
  """
  def start(name, exe, args, env, encode, timeout_ms \\ 120_000) do
    port =
      Port.open({:spawn_executable, exe}, [
        :binary,
        :exit_status,
        :use_stdio,
        {:line, 1_048_576},
        args: args,
        env: Enum.map(env, fn {k, v} -> {String.to_charlist(k), v && String.to_charlist(v)} end)
      ])

    driver = %__MODULE__{port: port, name: name, encode: encode}

    case reply(driver, timeout_ms) do
      {:ready, info} -> {:ok, %{driver | info: info}}
      {:error, reason} -> {:error, reason}
      other -> {:error, "unexpected first reply #{inspect(other)}"}
    end
  end

  @doc "Sends one request and waits for its reply."
  def request(%__MODULE__{port: port, encode: encode} = d, req, timeout_ms \\ 600_000) do
    Port.command(port, [encode.(req), ?\n])
    reply(d, timeout_ms)
  end

  def stop(%__MODULE__{port: port} = d) do
    if Port.info(port) do
      Port.command(port, [d.encode.(%{cmd: "quit"}), ?\n])

      receive do
        {^port, {:exit_status, _}} -> :ok
      after
        5_000 -> Port.close(port)
      end
    end

    :ok
  end

  @doc """
  A runner (see Bench.Measure) whose work `setup` (a request map without
  `cmd`/`key`) runs in this driver.
  """
  def runner(nil, id, label, role, _setup, why_not),
    do: %{id: id, label: label, role: role, prepare: fn -> {:skip, why_not} end}

  def runner(%__MODULE__{} = d, id, label, role, setup, _why_not) do
    key = "#{id}-#{System.unique_integer([:positive])}"

    %{
      id: id,
      label: label,
      role: role,
      prepare: fn ->
        case request(d, Map.merge(setup, %{cmd: "setup", key: key})) do
          :ok -> {:ok, &run(d, key, &1)}
          {:skip, reason} -> {:skip, reason}
          {:error, reason} -> {:skip, "#{d.name} failed: #{reason}"}
        end
      end
    }
  end

  defp run(d, key, inner) do
    case request(d, %{cmd: "run", key: key, inner: inner}) do
      {:ok, ns} -> ns
      other -> raise "#{d.name} run failed: #{inspect(other)}"
    end
  end

  defp reply(%__MODULE__{port: port, name: name} = d, timeout_ms) do
    receive do
      {^port, {:data, {:eol, line}}} ->
        case parse(line) do
          :noise ->
            IO.puts(:stderr, "[#{name}] #{line}")
            reply(d, timeout_ms)

          parsed ->
            parsed
        end

      {^port, {:data, {:noeol, _}}} ->
        reply(d, timeout_ms)

      {^port, {:exit_status, status}} ->
        {:error, "#{name} exited with status #{status}"}
    after
      timeout_ms -> {:error, "#{name} did not answer within #{div(timeout_ms, 1000)} s"}
    end
  end

  defp parse("ready" <> info), do: {:ready, String.trim(info)}
  defp parse("ok"), do: :ok
  defp parse("ok " <> ns), do: {:ok, String.to_integer(String.trim(ns))}
  defp parse("skip " <> reason), do: {:skip, reason}
  defp parse("error " <> reason), do: {:error, reason}
  defp parse(_), do: :noise
end
