defmodule EMLX.Reliability.BadInputCatalogueTest do
  # Every NIF of EMLX.NIF called directly with bad input. Each case must raise
  # ArgumentError (bad input) or EMLX.NIFError (an MLX failure) with a message
  # that says what was wrong; never a bare "argument error", never a Rustler
  # panic (ErlangError :nif_panicked), never a VM crash. After every case a
  # real computation is run and checked, so a case that corrupted the VM or a
  # queue fails there.
  #
  # The cases are data: the tables below are expanded into one test each.
  # Arguments are literals or {:fx, name} placeholders for run-time fixtures
  # (tensors, queues, pids, huge terms). `expect` is a substring the message
  # must contain, a list of alternatives, or {:prefix, text}.
  use ExUnit.Case, async: true

  alias EMLX.NIF

  ## Fixtures

  setup_all do
    q2 = NIF.queue_new(:cpu, nil, nil)
    closed = NIF.queue_new(:cpu, nil, nil)
    :ok = NIF.queue_close(closed)
    %{q2: q2, closed: closed}
  end

  # Large terms are built only by the cases that use them.
  @lazy_fixtures %{
    deep_list: {__MODULE__, :deep, [[]]},
    deep_tuple: {__MODULE__, :deep, [{}]},
    big_list: {Enum, :to_list, [1..1_000_000]},
    big_bin: {:binary, :copy, [<<0>>, 1_000_000]},
    big_map: {Map, :new, [Enum.map(1..1000, &{&1, &1})]}
  }

  @doc false
  def deep(leaf), do: Enum.reduce(1..100_000, leaf, fn _, acc -> if is_list(leaf), do: [acc], else: {acc} end)

  setup ctx do
    q = EMLX.CommandQueue.default(:cpu)
    t = f32(q, [1.0, 2.0])
    dead = f32(q, [1.0, 2.0])
    :ok = NIF.deallocate(dead)
    # An unevaluated node of another queue: only that queue may evaluate it.
    other_lazy = NIF.lazy_op(ctx.q2, :add, [t, t])

    fx =
      Map.merge(ctx, %{
        q: q,
        t: t,
        m: NIF.op(q, :reshape, [f32(q, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), [2, 3]]),
        u8: NIF.from_blob(q, <<1, 2, 3>>, [3], :uint8),
        dead: dead,
        lazy: NIF.lazy_op(q, :multiply, [t, t]),
        other_lazy: other_lazy,
        qstruct: %EMLX.CommandQueue{ref: q, device: :cpu, id: 1},
        bare_ref: elem(t, 1),
        ref: make_ref(),
        pid: self(),
        fun: fn -> :ok end,
        improper_t: [t | t],
        bitstring: <<1::3>>,
        prog: NIF.program_new({[t], [], [t], false})
      })

    %{fx: fx}
  end

  ## Table 1: every NIF argument position x wrong terms of every kind.

  # NIF -> the kind of each argument. Kinds: :queue, :tensor, :tensor_list,
  # :dtype, :device, :blob, :shape, :limit, :size, :op_name, :tag (any term).
  @nif_args %{
    op: [:queue, :op_name, :op_args],
    lazy_op: [:queue, :op_name, :op_args],
    from_blob: [:queue, :blob, :shape, :dtype],
    from_blob_dirty: [:queue, :blob, :shape, :dtype],
    shape: [:tensor],
    meta: [:tensor],
    strides: [:tensor],
    scalar_type: [:tensor],
    nbytes: [:tensor],
    itemsize: [:dtype],
    needs_eval_for: [:queue, :tensor],
    tensor_ready: [:tensor],
    deallocate: [:tensor],
    queue_new: [:device, :owner, :capacity],
    device_info: [:device],
    queue_make_default: [:queue],
    queue_close: [:queue],
    queue_info: [:queue_or_tensor],
    queue_synchronize: [:queue, :tag],
    tensor_queue_id: [:tensor],
    eval: [:tensor_list, :tag],
    eval_now: [:tensor_list, :tag],
    item: [:tensor, :tag],
    item_now: [:tensor, :tag],
    to_blob: [:tensor, :limit, :tag],
    to_blob_now: [:tensor, :limit, :tag],
    set_cache_limit: [:size],
    set_memory_limit: [:size],
    tensor_data_ptr: [:tensor, :tag],
    tensor_to_shm: [:tensor, :permissions, :tag],
    shm_unlink: [:shm_name],
    queue_fault: [:queue, :fault, :tag],
    program_new: [:program_spec],
    program_run: [:queue, :program, :program_inputs, :tag, :collected],
    program_callback_reply: [:callback_reply, :callback_answer]
  }

  # A valid argument of each kind (the other positions of a case).
  @valid %{
    queue: {:fx, :q},
    tensor: {:fx, :t},
    tensor_list: [{:fx, :t}],
    dtype: :float32,
    device: :cpu,
    blob: <<0, 0, 128, 63>>,
    shape: [1],
    limit: nil,
    size: nil,
    owner: nil,
    capacity: nil,
    permissions: 0o600,
    fault: :panic_in_job,
    op_name: :add,
    op_args: [{:fx, :t}, {:fx, :t}],
    tag: {:fx, :ref},
    # The identity function of one float32 vector.
    program_spec: {:tuple, [[{:fx, :t}], [], [{:fx, :t}], false]},
    program: {:fx, :prog},
    program_inputs: [{:fx, :t}],
    collected: false,
    # No valid reply exists outside a running program's callback.
    callback_reply: {:fx, :ref},
    callback_answer: []
  }

  @tensor_like "expected an EMLX tensor"
  @cross_queue "the tensor is an unevaluated result of another command queue"
  @not_queue "must be an EMLX command queue"
  @not_in_list "expected a list of integers, of numbers or of tensors"

  # Wrong terms for each kind, with what the message must say.
  @bad %{
    queue: [
      {"a plain make_ref()", {:fx, :ref}, @not_queue},
      {"a tensor", {:fx, :t}, @not_queue},
      {"a tensor's bare ref (wrong resource type)", {:fx, :bare_ref}, @not_queue},
      {"the %EMLX.CommandQueue{} struct instead of its ref", {:fx, :qstruct}, @not_queue},
      {"the atom :cpu", :cpu, @not_queue},
      {"an integer", 1, @not_queue},
      {"a pid", {:fx, :pid}, @not_queue},
      {"a deep tuple", {:fx, :deep_tuple}, @not_queue}
    ],
    queue_or_tensor: [
      {"a plain make_ref()", {:fx, :ref}, "command queue reference or a tensor"},
      {"the %EMLX.CommandQueue{} struct instead of its ref", {:fx, :qstruct}, "command queue reference"},
      {"the atom :cpu", :cpu, "command queue reference or a tensor"},
      {"a pid", {:fx, :pid}, "command queue reference or a tensor"}
    ],
    fault: [
      {"an unknown fault", :explode, "unknown fault explode"},
      {"a foreign eval without a tensor", {:eval_foreign, :x}, "expected an EMLX tensor"},
      {"a string", "crash_thread", "must be an atom"}
    ],
    owner: [
      {"a make_ref()", {:fx, :ref}, "a local pid or nil"},
      {"a pid as a string", "#PID<0.1.0>", "a local pid or nil"},
      {"an integer", 1, "a local pid or nil"}
    ],
    capacity: [
      {"zero", 0, "a positive integer or nil"},
      {"a negative capacity", -5, "a positive integer or nil"},
      {"a float", 10.0, "a positive integer or nil"},
      {"an atom", :infinity, "a positive integer or nil"},
      {"a capacity beyond 64 bits", 36_893_488_147_419_103_232, "a positive integer or nil"}
    ],
    permissions: [
      {"mode bits above 0o777", 0o1000, "Unix mode bits"},
      {"negative mode bits", -1, "Unix mode bits"},
      {"a mode string", "rw-------", "Unix mode bits"},
      {"nil", nil, "Unix mode bits"}
    ],
    shm_name: [
      {"an atom", :segment, "must be a binary"},
      {"a charlist", ~c"/segment", "must be a binary"},
      {"a name that is not UTF-8", <<?/, 255, 254>>, "UTF-8"},
      {"a name without the leading slash", "segment", "invalid shared-memory name"},
      {"a name with a NUL byte", <<"/seg", 0, "ment">>, "invalid shared-memory name"},
      {"a name with two slashes", "/a/b", "invalid shared-memory name"},
      {"an empty name", "", "invalid shared-memory name"}
    ],
    tensor: [
      {"a plain make_ref()", {:fx, :ref}, @tensor_like},
      {"a command queue ref (wrong resource type)", {:fx, :q}, @tensor_like},
      {"{:cpu, queue ref}", {:tuple, [:cpu, {:fx, :q}]}, @tensor_like},
      {"{:cpu, make_ref()}", {:tuple, [:cpu, {:fx, :ref}]}, @tensor_like},
      {"a 3-tuple around a tensor ref", {:tuple, [:cpu, {:fx, :bare_ref}, 1]}, @tensor_like},
      {"an atom", :tensor, @tensor_like},
      {"a float", 1.5, @tensor_like},
      {"a string", "tensor", @tensor_like},
      {"a list holding a tensor", [{:fx, :t}], @tensor_like},
      {"a fun", {:fx, :fun}, @tensor_like},
      {"a map", %{}, @tensor_like},
      {"a deep tuple", {:fx, :deep_tuple}, @tensor_like},
      {"a deallocated tensor", {:fx, :dead}, "deallocated"}
    ],
    tensor_list: [
      {"a tensor instead of a list", {:fx, :t}, "must be a list"},
      {"an improper list", {:fx, :improper_t}, "proper list"},
      {"a list with a make_ref()", [{:fx, :t}, {:fx, :ref}], @tensor_like},
      {"a list with a queue ref", [{:fx, :q}], @tensor_like},
      {"a list with a deallocated tensor", [{:fx, :t}, {:fx, :dead}], "deallocated"},
      {"unevaluated tensors of two queues", [{:fx, :lazy}, {:fx, :other_lazy}], "one command queue"},
      {"a deep list", {:fx, :deep_list}, @tensor_like},
      {"a binary", "tensors", "must be a list"}
    ],
    dtype: [
      {"an unknown dtype atom", :float33, "unknown MLX dtype"},
      {"an Nx type tuple (the NIF takes MLX names)", {:tuple, [:f, 32]}, "must be an atom"},
      {"a dtype string", "float32", "must be an atom"},
      {"an integer", 32, "must be an atom"},
      {"nil", nil, "unknown MLX dtype"},
      {"complex128 (MLX has no such type)", :complex128, "unknown MLX dtype"}
    ],
    device: [
      {"an unknown device", :tpu, "unknown device"},
      {"a device string", "cpu", "must be an atom"},
      {"a {device, index} tuple", {:tuple, [:cpu, 0]}, "must be an atom"},
      {"nil", nil, "unknown device"},
      {"an integer", 0, "must be an atom"}
    ],
    blob: [
      {"a list of bytes", [0, 0, 128, 63], "must be a binary"},
      {"an integer", 1_065_353_216, "must be a binary"},
      {"a bitstring", {:fx, :bitstring}, "must be a binary"},
      {"nil", nil, "must be a binary"},
      {"3 bytes for one float32", <<0, 0, 128>>, "needs 4"},
      {"5 bytes for one float32", <<0, 0, 128, 63, 0>>, "needs 4"},
      {"an empty binary for one float32", <<>>, "needs 4"},
      {"a 1 MB binary for one float32", {:fx, :big_bin}, "needs 4"}
    ],
    shape: [
      {"a tuple (the NIF takes a list)", {:tuple, [1]}, "must be a list"},
      {"a negative dimension", [-1], "between 0 and 2^31-1"},
      {"a dimension of 2^31", [2_147_483_648], "between 0 and 2^31-1"},
      {"a dimension beyond 64 bits", [18_446_744_073_709_551_616], "64-bit integers"},
      {"a float dimension", [1.0], "64-bit integers"},
      {"an atom dimension", [:one], "64-bit integers"},
      {"an improper list", {:improper, [1], 1}, "proper list"},
      {"a deep list", {:fx, :deep_list}, "64-bit integers"},
      {"a shape whose element count overflows", [2_147_483_647, 2_147_483_647, 2_147_483_647, 2], "too many elements"}
    ],
    limit: [
      {"a negative limit", -1, "non-negative integer"},
      {"a float limit", 1.5, "non-negative integer"},
      {"an atom limit", :all, "non-negative integer"},
      {"a limit beyond 64 bits", 18_446_744_073_709_551_616, "non-negative integer"}
    ],
    size: [
      {"a negative size", -1, "non-negative integer"},
      {"a float size", 1.0e9, "non-negative integer"},
      {"nil", nil, "non-negative integer"},
      {":infinity", :infinity, "non-negative integer"},
      {"a size beyond 64 bits", 18_446_744_073_709_551_616, "non-negative integer"}
    ],
    op_name: [
      {"an unknown op", :no_such_op, "unknown EMLX op :no_such_op"},
      {"a capitalised op name", :Add, "unknown EMLX op"},
      {"an op name string", "add", "must be an atom"},
      {"nil", nil, "unknown EMLX op :nil"},
      {"an integer", 1, "must be an atom"},
      {"a make_ref()", {:fx, :ref}, "must be an atom"}
    ],
    op_args: [
      {"a tensor instead of a list", {:fx, :t}, "must be a list"},
      {"an improper list", {:fx, :improper_t}, "proper list"},
      {"a pid argument", [{:fx, :pid}, {:fx, :t}], "unsupported argument"},
      {"a fun argument", [{:fx, :fun}, {:fx, :t}], "unsupported argument"},
      {"a map argument", [{:fx, :big_map}, {:fx, :t}], "a map of 1000 keys"},
      {"a bitstring argument", [{:fx, :bitstring}, {:fx, :t}], "not whole bytes"},
      {"an integer beyond 64 bits", [{:fx, :t}, 36_893_488_147_419_103_232], "does not fit in 64 bits"},
      {"a list of a million integers", [{:fx, :big_list}, {:fx, :t}], "must be a tensor"},
      {"a deep list argument", [{:fx, :deep_list}, {:fx, :t}], @not_in_list},
      {"a deep tuple argument", [{:fx, :deep_tuple}, {:fx, :t}], [@tensor_like, @not_in_list]},
      {"a deep list as the argument list", {:fx, :deep_list}, @not_in_list},
      {"a tensor list mixing tensors and refs", [[{:fx, :t}, {:fx, :ref}], {:fx, :t}], @not_in_list},
      {"a lazy tensor of another queue", [{:fx, :other_lazy}, {:fx, :t}], @cross_queue},
      {"a deallocated tensor", [{:fx, :t}, {:fx, :dead}], "deallocated"},
      {"a queue ref as a tensor", [{:fx, :q}, {:fx, :t}], @tensor_like},
      {"missing arguments", [{:fx, :t}], "argument 2 must be a tensor (only 1 given)"},
      {"no arguments", [], "must be a tensor (only 0 given)"},
      {"shapes that do not broadcast", [{:fx, :t}, {:fx, :m}], "broadcast"}
    ],
    program_spec: [
      {"a list", [], "must be a 4-tuple"},
      {"a 3-tuple", {:tuple, [[], [], []]}, "must be a 4-tuple"},
      {"a deep tuple", {:fx, :deep_tuple}, "must be a 4-tuple"},
      {"inputs that are not a list", {:tuple, [:x, [], [], false]}, "must be a list"},
      {"an input that is not a tensor", {:tuple, [[{:fx, :ref}], [], [], false]}, @tensor_like},
      {"an input given twice", {:tuple, [[{:fx, :t}, {:fx, :t}], [], [], false]}, "written twice"},
      {"a step of an unknown kind", {:tuple, [[], [{:tuple, [:jump, 1]}], [], false]}, "unknown step"},
      {"a step that is not a tuple", {:tuple, [[], [:op], [], false]}, "must be a tuple"},
      {"an op of an unknown name", {:tuple, [[], [{:tuple, [:op, :no_such_op, [], []]}], [], false]},
       "unknown EMLX op"},
      {"an op with an unsupported argument", {:tuple, [[], [{:tuple, [:op, :add, [{:fx, :pid}], []]}], [], false]},
       "unsupported argument"},
      {"an output that nothing computes and that is lazy", {:tuple, [[], [], [{:fx, :lazy}], false]},
       "not computed yet"},
      {"fusion that is not a boolean", {:tuple, [[], [], [], :yes]}, "must be a boolean"}
    ],
    program: [
      {"a make_ref()", {:fx, :ref}, "a compiled program"},
      {"a tensor", {:fx, :t}, "a compiled program"}
    ],
    program_inputs: [
      {"a tensor instead of a list", {:fx, :t}, "must be a list"},
      {"too few inputs", [], "takes 1 tensors, got 0"},
      {"an input of another shape", [{:fx, :m}], "must have shape"},
      {"a lazy tensor of another queue", [{:fx, :other_lazy}], @cross_queue},
      {"a deallocated tensor", [{:fx, :dead}], "deallocated"},
      {"a make_ref()", [{:fx, :ref}], @tensor_like}
    ],
    collected: [{"an integer", 1, "collected must be a boolean"}],
    callback_reply: [
      {"a make_ref()", {:fx, :ref}, "a callback reply"},
      {"a tensor", {:fx, :t}, "a callback reply"}
    ]
  }

  @kind_cases (for {nif, kinds} <- @nif_args,
                   {kind, pos} <- Enum.with_index(kinds),
                   {what, bad, expect} <- Map.get(@bad, kind, []),
                   # Using a deallocated tensor's metadata is harmless: these two
                   # answer without the array (deallocate says :error).
                   not (nif in [:deallocate, :tensor_queue_id] and bad == {:fx, :dead}) do
                 args =
                   kinds
                   |> Enum.with_index()
                   |> Enum.map(fn {k, i} -> if i == pos, do: bad, else: @valid[k] end)

                 {"#{nif}/#{length(kinds)} argument #{pos + 1} (#{kind}): #{what}", nif, args, expect}
               end)

  ## Table 2: every op of the native table, each parameter given a wrong value.

  # A valid value per parameter kind, and wrong values that every op must refuse.
  @param_valid %{
    tensor: {:fx, :t},
    tensors: [{:fx, :t}, {:fx, :t}],
    type: :float32,
    scalar: 1,
    shape: [2],
    axes: [0],
    axis: 0,
    int: 1,
    ints: [0],
    float: 1.0,
    bool: false,
    string: "x"
  }

  @param_bad %{
    tensor: [
      {"a deallocated tensor", {:fx, :dead}, "deallocated"},
      {"a queue ref", {:fx, :q}, @tensor_like},
      {"a lazy tensor of another queue", {:fx, :other_lazy}, @cross_queue}
    ],
    tensors: [
      {"a list with a deallocated tensor", [{:fx, :t}, {:fx, :dead}], "deallocated"},
      {"a list with a make_ref()", [{:fx, :t}, {:fx, :ref}], @not_in_list}
    ],
    type: [{"an unknown dtype", :float33, "unknown MLX dtype 'float33'"}],
    scalar: [{"a string", "one", "must be a number"}],
    shape: [
      {"a negative dimension", [-1], "non-negative dimensions"},
      {"float dimensions", [2.0], "must be a list of integers"}
    ],
    axes: [
      {"an axis beyond the rank", [99], {:prefix, nil}},
      {"an axis below -rank", [-99], {:prefix, nil}},
      {"float axes", [0.0], "must be a list of integers"}
    ],
    axis: [{"an axis beyond the rank", 99, {:prefix, nil}}],
    int: [{"a float", 1.5, "must be an integer"}],
    ints: [{"floats", [1.5], "must be a list of integers"}],
    float: [{"a string", "x", "must be a number"}],
    bool: [{"an integer", 1, "must be a boolean"}],
    string: [{"an integer", 1, "must be an atom or string"}]
  }

  @op_cases (for {name, params, _doc, _opts} <- EMLX.Ops.table(),
                 params = Enum.reject(params, fn {_, kind} -> kind == :device end),
                 {{param, kind}, pos} <- Enum.with_index(params),
                 {what, bad, expect} <- Map.get(@param_bad, kind, []) do
               args =
                 params
                 |> Enum.with_index()
                 |> Enum.map(fn {{_, k}, i} -> if i == pos, do: bad, else: @param_valid[k] end)

               # The op may refuse another of the (generic) arguments first:
               # any message that names the op is a useful one then.
               expect = [if(expect == {:prefix, nil}, do: {:prefix, "#{name}:"}, else: expect), {:prefix, "#{name}:"}]
               {"op :#{name}/#{length(params)} #{param} (#{kind}): #{what}", :op, [{:fx, :q}, name, args], expect}
             end)

  # Every op with a pid for each argument, and with no arguments at all.
  @op_arity_cases (for {name, params, _doc, _opts} <- EMLX.Ops.table(),
                       params = Enum.reject(params, fn {_, kind} -> kind == :device end),
                       case <- [:none | Enum.to_list(0..(length(params) - 1)//1)] do
                     case case do
                       :none ->
                         {"op :#{name}/#{length(params)} with no arguments", :op, [{:fx, :q}, name, []],
                          "(only 0 given)"}

                       pos ->
                         args = List.duplicate({:fx, :t}, length(params)) |> List.replace_at(pos, {:fx, :pid})

                         {"op :#{name}/#{length(params)} with a pid as argument #{pos + 1}", :op,
                          [{:fx, :q}, name, args], "#{name}: argument #{pos + 1}: unsupported argument"}
                     end
                   end)

  ## Table 3: well-typed calls that are still wrong (semantics, sizes, memory).

  @semantic_cases [
    {"from_blob: 8 bytes for a {3} float32", :from_blob, [{:fx, :q}, <<0::64>>, [3], :float32], "needs 12"},
    {"from_blob: 2 bytes for a {} float64", :from_blob, [{:fx, :q}, <<0::16>>, [], :float64], "needs 8"},
    {"from_blob: 1 byte for a {0} int8 tensor", :from_blob, [{:fx, :q}, <<0>>, [0], :int8], "needs 0"},
    {"from_blob: 7 bytes for {2, 2} bfloat16", :from_blob, [{:fx, :q}, <<0::56>>, [2, 2], :bfloat16], "needs 8"},
    {"from_blob: 16 bytes for {3} complex64", :from_blob, [{:fx, :q}, <<0::128>>, [3], :complex64], "needs 24"},
    {"from_blob_dirty: 3 bytes for {1} uint32", :from_blob_dirty, [{:fx, :q}, <<0::24>>, [1], :uint32], "needs 4"},
    {"from_blob: a shape of 2^31-1 x 2^31-1 with an empty binary", :from_blob,
     [{:fx, :q}, <<>>, [2_147_483_647, 2_147_483_647], :float32], "binary has 0 bytes"},
    {"op reshape: 2 elements into {3}", :op, [{:fx, :q}, :reshape, [{:fx, :t}, [3]]], "reshape: [reshape]"},
    {"op reshape: a shape whose element count overflows", :op,
     [{:fx, :q}, :reshape, [{:fx, :t}, [2_147_483_647, 2_147_483_647, 4]]], "reshape:"},
    {"op broadcast_to: {2} into {3}", :op, [{:fx, :q}, :broadcast_to, [{:fx, :t}, [3]]], "broadcast_to:"},
    {"op transpose: a repeated axis", :op, [{:fx, :q}, :transpose, [{:fx, :m}, [0, 0]]], "transpose:"},
    {"op transpose: too many axes", :op, [{:fx, :q}, :transpose, [{:fx, :t}, [0, 1]]], "transpose:"},
    {"op squeeze: an axis of size 2", :op, [{:fx, :q}, :squeeze, [{:fx, :t}, [0]]], "squeeze:"},
    {"op view: 3 bytes as float32", :op, [{:fx, :q}, :view, [{:fx, :u8}, :float32]], "view:"},
    {"op sum: axis 2 of a rank-2 tensor", :op, [{:fx, :q}, :sum, [{:fx, :m}, [2], false]], "sum: "},
    {"op sum: a repeated axis", :op, [{:fx, :q}, :sum, [{:fx, :m}, [1, 1], false]], "sum: "},
    {"op cumulative_sum: axis -3 of a rank-2 tensor", :op, [{:fx, :q}, :cumulative_sum, [{:fx, :m}, -3, false, true]],
     "cumulative_sum:"},
    {"op tensordot: contraction sizes differ", :op, [{:fx, :q}, :tensordot, [{:fx, :m}, {:fx, :m}, [1], [1 - 1]]],
     "tensordot:"},
    {"op tensordot: an axis beyond the rank", :op, [{:fx, :q}, :tensordot, [{:fx, :t}, {:fx, :t}, [3], [0]]],
     "axis 3 is out of range"},
    {"op tensordot: axis lists of different lengths", :op, [{:fx, :q}, :tensordot, [{:fx, :m}, {:fx, :m}, [0, 1], [0]]],
     "tensordot:"},
    {"op eye: a negative size", :op, [{:fx, :q}, :eye, [-1, 2, :float32]], "eye:"},
    {"op arange: a zero step", :op, [{:fx, :q}, :arange, [0, 10, 0, false]], "step must be nonzero"},
    {"op arange: a NaN bound", :op, [{:fx, :q}, :arange, [0, :nan, 1, false]], "arange:"},
    {"op arange: 10^300 elements", :op, [{:fx, :q}, :arange, [0, 1.0e300, 1, false]], "arange:"},
    {"op astype: a dtype string that is not UTF-8", :op, [{:fx, :q}, :astype, [{:fx, :t}, <<255, 254>>]], "UTF-8"},
    {"op bitwise_and on float32", :op, [{:fx, :q}, :bitwise_and, [{:fx, :t}, {:fx, :t}]], "bitwise_and:"},
    {"op scalar_tensor: a 3-element list as a complex", :op, [{:fx, :q}, :scalar_tensor, [[1.0, 2.0, 3.0], :complex64]],
     "must be a number"},
    {"item of a 2-element tensor", :item, [{:fx, :t}, {:fx, :ref}], "exactly one element"},
    {"item of a 2x3 tensor", :item, [{:fx, :m}, {:fx, :ref}], "exactly one element"},
    {"queue_synchronize on a closed queue", :queue_synchronize, [{:fx, :closed}, {:fx, :ref}], "is closed"},
    {"queue_new :gpu on a build without a GPU", :queue_new, [:gpu, nil, nil], {:gpu_only, "no GPU"}},
    {"tensor_data_ptr of a lazy tensor of a closed queue", :tensor_data_ptr, [{:closed_lazy}, {:fx, :ref}], "closed"},
    {"tensor_to_shm of a deallocated tensor", :tensor_to_shm, [{:fx, :dead}, 0o600, {:fx, :ref}], "deallocated"},
    {"eval of a {2_000_000_000, 2_000_000_000} float32 (16 EB)", :eval,
     [[{:op, :full, [0, [2_000_000_000, 2_000_000_000], :float32]}], {:fx, :ref}],
     ["more than this machine's memory", "more than MLX's memory limit"]},
    {"eval of a {10^6, 10^6} float32 (4 TB)", :eval, [[{:op, :ones, [[1_000_000, 1_000_000], :float32]}], {:fx, :ref}],
     ["more than this machine's memory", "more than MLX's memory limit"]},
    {"to_blob of ones whose byte count overflows 2^64", :to_blob,
     [{:op, :ones, [[2_147_483_647, 2_147_483_647, 8], :float32]}, nil, {:fx, :ref}], "more than 2^64 bytes"},
    {"item of an add of overflowing broadcasts", :item,
     [
       {:op, :add,
        [
          {:op, :ones, [[2_147_483_647, 1, 1], :int8]},
          {:op, :ones, [[1, 2_147_483_647, 2_147_483_647], :int8]}
        ]},
       {:fx, :ref}
     ], ["more than 2^64 bytes", "exactly one element", "more than this machine's memory"]},
    {"eval of a lazy tensor of a closed queue", :eval, [[{:closed_lazy}], {:fx, :ref}], "closed"}
  ]

  @cases @kind_cases ++ @op_cases ++ @op_arity_cases ++ @semantic_cases

  test "the catalogue has at least 150 cases, with unique names" do
    names = Enum.map(@cases, &elem(&1, 0))
    assert length(names) >= 150
    assert length(Enum.uniq(names)) == length(names)
  end

  test "every NIF that takes arguments is in the catalogue" do
    # Zero-arity NIFs take no input to get wrong; is_tensor_ref/1 is a
    # predicate (see the test below).
    exempt =
      [op_names: 0, queue_threads: 0, gpu_available: 0, mlx_version: 0, memory_info: 0, blas_info: 0] ++
        [reset_peak_memory: 0, clear_cache: 0, is_tensor_ref: 1]

    nifs =
      NIF.__info__(:functions) -- [__load__: 0, __not_loaded__: 0, load_error: 0, cache_dir: 0, explain_load_error: 1]

    covered = for {name, kinds} <- @nif_args, do: {name, length(kinds)}
    assert Enum.sort(nifs -- exempt) == Enum.sort(covered)
  end

  test "is_tensor_ref/1 answers false for wrong terms and never raises", %{fx: fx} do
    for term <- [fx.ref, fx.q, {:cpu, fx.ref}, {:cpu, fx.q}, :cpu, 1, "t", [], deep({})] do
      refute NIF.is_tensor_ref(term), "is_tensor_ref(#{inspect(term, limit: 3)})"
    end

    assert NIF.is_tensor_ref(fx.t)
    assert live?(fx)
  end

  for {name, nif, args, expect} <- @cases do
    test "#{name}", %{fx: fx} do
      run_case(fx, unquote(nif), unquote(Macro.escape(args)), unquote(Macro.escape(expect)))
      assert live?(fx), "a real computation failed after the case"
    end
  end

  ## Running a case

  @jobs [:eval, :item, :to_blob, :queue_synchronize, :tensor_data_ptr, :tensor_to_shm, :program_run]

  defp run_case(fx, nif, args, {:gpu_only, expect}) do
    if NIF.gpu_available(),
      do: assert(is_reference(call(nif, resolve(args, fx)))),
      else: run_case(fx, nif, args, expect)
  end

  defp run_case(fx, nif, args, expect) do
    error =
      try do
        # Inside the try: a lazy op in the arguments may itself refuse.
        call(nif, resolve(args, fx))
      rescue
        e -> e
      else
        value -> flunk("#{nif} returned #{inspect(value, limit: 5)} instead of raising")
      end

    # A lazy input of another queue is refused with its own exception type,
    # which EMLX.Native.op/3 rescues (see EMLX.CrossQueueError).
    cross_queue? = @cross_queue in List.wrap(expect)
    allowed = if cross_queue?, do: [EMLX.CrossQueueError], else: [ArgumentError, EMLX.NIFError]

    assert error.__struct__ in allowed,
           "#{nif} raised #{inspect(error.__struct__)}: #{Exception.message(error)}"

    message = Exception.message(error)
    refute message in ["argument error", ""], "#{nif} raised a bare #{inspect(message)}"
    refute message =~ "nif_panicked"
    assert matches?(message, expect), "#{nif}: message #{inspect(message)} does not say #{inspect(expect)}"
  end

  defp matches?(message, {:prefix, prefix}), do: String.starts_with?(message, prefix)
  defp matches?(message, alternatives) when is_list(alternatives), do: Enum.any?(alternatives, &matches?(message, &1))
  defp matches?(message, text), do: message =~ text

  # Jobs answer at once (`:done`, `{:done, value}`: nothing to evaluate) or
  # by message: `{tag, :ok | {:ok, value} | {:error, {module, msg}}, run_ns}`.
  defp call(nif, args) when nif in @jobs do
    tag = List.last(args)

    case apply(NIF, nif, args) do
      :done ->
        :ok

      {:done, value} ->
        value

      :ok ->
        receive do
          {^tag, :ok, _ns} -> :ok
          {^tag, {:ok, value}, _ns} -> value
          {^tag, {:error, {module, message}}, _ns} -> raise module, message
        after
          30_000 -> flunk("#{nif}: no reply within 30 s")
        end
    end
  end

  defp call(nif, args), do: apply(NIF, nif, args)

  defp resolve({:fx, name}, fx) do
    case @lazy_fixtures do
      %{^name => {m, f, a}} -> apply(m, f, a)
      _ -> Map.fetch!(fx, name)
    end
  end

  defp resolve({:tuple, items}, fx), do: List.to_tuple(resolve(items, fx))
  defp resolve({:improper, items, tail}, fx), do: Enum.reduce(Enum.reverse(resolve(items, fx)), tail, &[&1 | &2])
  defp resolve({:op, name, args}, fx), do: NIF.op(fx.q, name, resolve(args, fx))
  defp resolve({:closed_lazy}, fx), do: NIF.op(fx.closed, :add, [fx.t, fx.t])
  defp resolve(list, fx) when is_list(list), do: Enum.map(list, &resolve(&1, fx))
  defp resolve(other, _fx), do: other

  # A real computation on the default queue still gives the right bytes.
  defp live?(fx) do
    out = NIF.op(fx.q, :add, [fx.t, fx.t])
    call(:to_blob, [out, nil, make_ref()]) == <<2.0::float-32-native, 4.0::float-32-native>>
  end

  defp f32(q, values),
    do: NIF.from_blob(q, for(v <- values, into: <<>>, do: <<v::float-32-native>>), [length(values)], :float32)
end
