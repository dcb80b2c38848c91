defmodule EMLX.Build.Download do
  @moduledoc false
  # Fetches a URL into a file with what OTP ships: file:// is a copy, http(s)://
  # goes through :httpc (inets) with TLS peer verification against the
  # operating system's CA store (:public_key.cacerts_get/0, OTP 25+) or the
  # file named by EMLX_CACERTS_PATH. HTTPS_PROXY / HTTP_PROXY are honoured.

  @profile :emlx_build

  @doc "Copies or downloads `url` into `dest`. Returns `:ok` or `{:error, message}`."
  def fetch(url, dest, env \\ System.get_env()) do
    File.mkdir_p!(Path.dirname(dest))

    case URI.parse(url) do
      %URI{scheme: "file", path: path} when is_binary(path) ->
        case File.cp(URI.decode(path), dest) do
          :ok -> :ok
          {:error, reason} -> {:error, "cannot read #{URI.decode(path)}: #{:file.format_error(reason)}"}
        end

      %URI{scheme: scheme} when scheme in ["http", "https"] ->
        http_get(url, dest, env)

      _ ->
        {:error, "#{inspect(url)} is not a file://, http:// or https:// URL"}
    end
  end

  defp http_get(url, dest, env) do
    with :ok <- start_http(env),
         {:ok, ssl} <- ssl_options(env) do
      http_opts = [ssl: ssl, connect_timeout: 30_000, timeout: 600_000, autoredirect: true]
      tmp = dest <> ".download"
      File.rm(tmp)
      opts = [stream: String.to_charlist(tmp), body_format: :binary]
      request = {String.to_charlist(url), [{~c"user-agent", ~c"emlx-mix-compile"}]}

      case :httpc.request(:get, request, http_opts, opts, @profile) do
        {:ok, :saved_to_file} ->
          File.rename!(tmp, dest)
          :ok

        {:ok, {{_, status, _}, _headers, _body}} ->
          File.rm(tmp)
          {:error, "#{url} answered HTTP #{status}"}

        {:error, reason} ->
          File.rm(tmp)
          {:error, "cannot download #{url}: #{inspect(reason)}"}
      end
    end
  end

  defp start_http(env) do
    # Mix keeps only the project's applications on the code path.
    Enum.each([:crypto, :asn1, :public_key, :ssl, :inets], &Mix.ensure_application!/1)

    with {:ok, _} <- Application.ensure_all_started(:inets),
         {:ok, _} <- Application.ensure_all_started(:ssl) do
      case :inets.start(:httpc, profile: @profile) do
        {:ok, _} -> :ok
        {:error, {:already_started, _}} -> :ok
      end

      set_proxy(:https_proxy, env["HTTPS_PROXY"] || env["https_proxy"])
      set_proxy(:proxy, env["HTTP_PROXY"] || env["http_proxy"])
      :ok
    else
      {:error, reason} -> {:error, "cannot start Erlang's inets/ssl applications: #{inspect(reason)}"}
    end
  end

  defp set_proxy(_key, url) when url in [nil, ""], do: :ok

  defp set_proxy(key, url) do
    case URI.parse(url) do
      %URI{host: host, port: port} when is_binary(host) and host != "" ->
        :httpc.set_options([{key, {{String.to_charlist(host), port}, []}}], @profile)

      _ ->
        Mix.shell().error("emlx: ignoring the proxy #{inspect(url)}: expected a URL such as http://proxy:3128")
    end
  end

  defp ssl_options(env) do
    cacerts =
      case env["EMLX_CACERTS_PATH"] do
        path when path in [nil, ""] -> os_cacerts()
        path -> {:ok, [cacertfile: String.to_charlist(path)]}
      end

    with {:ok, certs} <- cacerts do
      {:ok,
       certs ++
         [
           verify: :verify_peer,
           depth: 4,
           customize_hostname_check: [match_fun: :public_key.pkix_verify_hostname_match_fun(:https)]
         ]}
    end
  end

  defp os_cacerts do
    case :public_key.cacerts_get() do
      [_ | _] = certs -> {:ok, [cacerts: certs]}
      [] -> {:error, no_cacerts()}
    end
  rescue
    _ -> {:error, no_cacerts()}
  end

  defp no_cacerts,
    do:
      "no CA certificates found to verify the download (install your system's ca-certificates " <>
        "package, or set EMLX_CACERTS_PATH to a PEM file)"
end
