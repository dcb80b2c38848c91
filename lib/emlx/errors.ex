defmodule EMLX.NIFError do
  @moduledoc """
  Raised when MLX itself fails: allocation, evaluation, a closed command
  queue. The message is MLX's own. Bad arguments raise `ArgumentError`.
  """
  defexception [:message]
end
