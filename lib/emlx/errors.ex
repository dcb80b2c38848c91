defmodule EMLX.NIFError do
  @moduledoc """
  Raised when MLX itself fails: allocation, evaluation, a closed command
  queue. The message is MLX's own. Bad arguments raise `ArgumentError`.
  """
  defexception [:message]
end

defmodule EMLX.CrossQueueError do
  @moduledoc """
  Raised by the op NIF when argument `argument` (1-based) is an unevaluated
  tensor of another command queue: only that queue can evaluate it.

  `EMLX` functions never let it out: the internal EMLX.Native.op/3 rescues it by type,
  evaluates such tensors on their own queues and builds the op again (the
  cross-queue rule of `EMLX.CommandQueue`). It reaches user code only from a
  direct call of the undocumented EMLX.NIF.op/3.
  """
  defexception [:message, :argument]
end
