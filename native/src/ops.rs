//! Lazy ops: one generic NIF that runs any entry of the C++ op table.
//!
//! `op(queue, name, args)` decodes the Elixir arguments into the bridge's
//! `Call` (tensors, integers, floats, booleans, nil, atoms/strings, lists of
//! integers, floats or tensors), runs the named op on the queue's stream and
//! returns `{device, ref}` (or a list of them for ops with several outputs).
//! Building a node is cheap; nothing is evaluated here.

use std::collections::HashMap;
use std::sync::OnceLock;

use rustler::types::tuple::get_tuple;
use rustler::{Atom, Binary, Encoder, Env, NifResult, ResourceArc, Term, TermType};

use emlx_pure::arg_list::{self, read_list, Item, ListArg, ListError};

use crate::args;
use crate::error::{Error, Result};
use crate::ffi::{self, BinaryKeeper, Call};
use crate::tensor::{decode_tensor, QueueRes, ReadyFlag, TensorRes};

mod atoms {
    rustler::atoms! { nil, dirty }
}

/// Op index by atom (keyed by the atom's term, which never changes).
static OP_INDEX: OnceLock<HashMap<rustler::sys::ErlNifTerm, u32, AtomHash>> = OnceLock::new();

/// Hashing for atom terms: distinct small words, so a multiplicative hash
/// spreads them well (and costs a nanosecond, not SipHash's dozens, on a
/// path every op takes).
#[derive(Default, Clone, Copy)]
struct AtomHash;

impl std::hash::BuildHasher for AtomHash {
    type Hasher = AtomHasher;
    fn build_hasher(&self) -> AtomHasher {
        AtomHasher(0)
    }
}

struct AtomHasher(u64);

impl std::hash::Hasher for AtomHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ x)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }
}

/// Reads the C++ op table's names once, at NIF load.
pub fn init_table(env: Env) {
    OP_INDEX.get_or_init(|| {
        ffi::op_names()
            .into_iter()
            .enumerate()
            .filter_map(|(i, name)| Some((Atom::from_str(env, &name).ok()?.as_c_arg(), i as u32)))
            .collect::<HashMap<_, _, AtomHash>>()
    });
}

/// Names of every op in the native table (for tests and docs).
#[rustler::nif]
fn op_names() -> Vec<String> {
    ffi::op_names()
}

#[rustler::nif]
fn op<'a>(env: Env<'a>, queue: Term<'a>, name: Term<'a>, args: Term<'a>) -> NifResult<Term<'a>> {
    let queue = args::queue("op", queue)?;
    let name = args::atom("op", "the op name", name)?;
    Ok(run(env, &queue, name, args, true)?)
}

/// `op`, but the result always stays a lazy graph node (never evaluated
/// here, see `evaluate_tiny`): what `compiler: EMLX` traces with, and
/// what `EMLX.lazy/1` asks for.
#[rustler::nif]
fn lazy_op<'a>(
    env: Env<'a>,
    queue: Term<'a>,
    name: Term<'a>,
    args: Term<'a>,
) -> NifResult<Term<'a>> {
    let queue = args::queue("lazy_op", queue)?;
    let name = args::atom("lazy_op", "the op name", name)?;
    Ok(run(env, &queue, name, args, false)?)
}

/// A new op result whose whole unevaluated graph touches at most this many
/// bytes (its nodes' outputs and inputs) is computed right away.
const TINY_MAX_BYTES: usize = 65_536;
/// ... and has at most this many unevaluated nodes.
const TINY_MAX_NODES: usize = 32;

/// Computes the graph under `out` (one op's new nodes) right here when it is
/// tiny and `queue` evaluates inline and is idle (`Queue::when_idle`): for
/// arrays of a few elements MLX's graph evaluation later costs several
/// times the kernel, and a computed tensor is read, freed and passed to
/// other queues without a job. Returns whether it did.
fn evaluate_tiny(queue: &crate::queue::Queue, out: &ffi::ArrayList) -> Result<bool> {
    if !queue.inline {
        return Ok(false);
    }
    queue
        .when_idle(|| {
            ffi::bind_thread(&queue.stream);
            Ok(ffi::eval_small_graph(
                out,
                &queue.stream,
                TINY_MAX_NODES,
                TINY_MAX_BYTES,
            )?)
        })
        .unwrap_or(Ok(false))
}

/// The index of the op named by `name` in the C++ table.
pub fn op_index(env: Env, name: Atom) -> Result<u32> {
    OP_INDEX
        .get()
        .and_then(|t| t.get(&name.as_c_arg()))
        .copied()
        .ok_or_else(|| {
            Error::BadArg(format!(
                "unknown EMLX op :{}",
                name.to_term(env).atom_to_string().unwrap_or_default()
            ))
        })
}

fn run<'a>(
    env: Env<'a>,
    queue: &QueueRes,
    name: Atom,
    args: Term<'a>,
    eager: bool,
) -> Result<Term<'a>> {
    let name_str = || name.to_term(env).atom_to_string().unwrap_or_default();
    let index = op_index(env, name)?;
    let queue = &queue.0;
    if queue.is_closed() {
        return Err(queue.closed_error());
    }
    if args.get_type() != TermType::List || args.list_length().is_err() {
        // The message names the op: only built on this (error) path.
        args::list(&name_str(), "the argument list", args)?;
    }
    let mut call = ffi::new_call();
    let items = args
        .into_list_iterator()
        .map_err(|_| Error::BadArg(format!("{}: bad argument list", name_str())))?;
    let mut inputs = Inputs {
        queue_id: queue.id,
        ready: Vec::new(),
        fold: eager,
    };
    for (i, term) in items.enumerate() {
        push_one(call.pin_mut(), term, &mut inputs).map_err(|e| match e {
            Error::BadArg(msg) => {
                Error::BadArg(format!("{}: argument {}: {msg}", name_str(), i + 1))
            }
            Error::CrossQueue { .. } => Error::CrossQueue {
                op: name_str(),
                argument: i + 1,
            },
            other => other,
        })?;
    }
    let out = ffi::run_op(index, &call, &queue.stream)?;
    let n = ffi::list_len(&out);
    if eager && n == 1 && ffi::list_alias(&out, 0) < 0 && evaluate_tiny(queue, &out)? {
        return Ok(TensorRes::wrap(
            env,
            TensorRes::evaluated(ffi::list_get(&out, 0), queue.clone()),
        ));
    }
    // An output that is one of the inputs shares that input's readiness.
    let wrap = |i| {
        let inherited = usize::try_from(ffi::list_alias(&out, i))
            .ok()
            .and_then(|k| inputs.ready.get(k).cloned());
        TensorRes::wrap(
            env,
            TensorRes::new(ffi::list_get(&out, i), queue.clone(), inherited),
        )
    };
    if n == 1 {
        Ok(wrap(0))
    } else {
        let outputs: Vec<Term> = (0..n).map(wrap).collect();
        Ok(rustler::Encoder::encode(&outputs, env))
    }
}

/// The tensor arguments of one op call, in push order: the queue the op is
/// built on, and each tensor's readiness flag (for outputs that turn out to
/// be one of them).
struct Inputs {
    queue_id: u64,
    ready: Vec<ReadyFlag>,
    /// Whether the op builder may read the values of computed inputs (not
    /// while a program is recorded or built: its inputs change per run).
    fold: bool,
}

impl Inputs {
    /// Pushes a tensor's array with `push`, refusing arrays of another queue
    /// that are not computed yet: a lazy graph can only be evaluated on its
    /// own queue's thread, and one whose evaluation is running there must be
    /// waited for before another queue reads it.
    fn push(&mut self, res: &TensorRes, push: impl FnOnce(&ffi::Array, bool)) -> Result<()> {
        res.with(|a| {
            let ready = res.is_ready();
            if res.queue.id != self.queue_id && !ready {
                return Err(Error::CrossQueue {
                    op: String::new(),
                    argument: 0,
                });
            }
            push(a, ready && self.fold);
            Ok(())
        })??;
        self.ready.push(res.ready_flag());
        Ok(())
    }
}

/// Pushes one argument of an op (not a tensor: those are checked against
/// `queue_id`'s cross-queue rule) onto `call`; for callers outside this
/// module (the program builder).
pub fn push_arg(call: std::pin::Pin<&mut Call>, term: Term, queue_id: u64) -> Result<()> {
    let mut inputs = Inputs {
        queue_id,
        ready: Vec::new(),
        fold: false,
    };
    push_one(call, term, &mut inputs)
}

fn push_one(call: std::pin::Pin<&mut Call>, term: Term, inputs: &mut Inputs) -> Result<()> {
    match term.get_type() {
        TermType::Integer => match integer_item(term) {
            Item::Int(v) => ffi::push_int(call, v),
            Item::UInt(v) => ffi::push_uint(call, v),
            _ => {
                return Err(Error::BadArg(format!(
                    "integer {} does not fit in 64 bits",
                    args::show(term)
                )))
            }
        },
        TermType::Float => ffi::push_float(call, term.decode::<f64>().unwrap_or(f64::NAN)),
        TermType::Atom => {
            if let Ok(b) = term.decode::<bool>() {
                ffi::push_bool(call, b);
            } else if term.decode::<Atom>().is_ok_and(|a| a == atoms::nil()) {
                ffi::push_none(call);
            } else {
                ffi::push_str(call, &term.atom_to_string().unwrap_or_default());
            }
        }
        TermType::Binary => {
            let bin: Binary = term.decode().map_err(|_| {
                Error::BadArg(format!(
                    "expected a UTF-8 string, got a bitstring that is not whole bytes: {}",
                    args::show(term)
                ))
            })?;
            let s = std::str::from_utf8(bin.as_slice())
                .map_err(|_| Error::BadArg("expected a UTF-8 string".into()))?;
            ffi::push_str(call, s);
        }
        TermType::Tuple => {
            let items = get_tuple(term).unwrap_or_default();
            // {device, ref}: the ref is the tensor (the common case, decoded
            // once).
            let tensor = match items.as_slice() {
                [d, r] if d.is_atom() && r.get_type() == TermType::Ref => {
                    r.decode::<ResourceArc<TensorRes>>().ok()
                }
                _ => None,
            };
            match tensor {
                Some(res) => inputs.push(&res, |a, ready| push_array(call, a, ready))?,
                None if items.len() == 2 && items[1].get_type() == TermType::Ref => {
                    inputs.push(&*decode_tensor(term)?, |a, ready| {
                        push_array(call, a, ready)
                    })?;
                }
                None => push_list(call, items, inputs, term)?,
            }
        }
        TermType::List => {
            let items = args::list("op", "a list argument", term)?;
            push_list(call, items, inputs, term)?;
        }
        TermType::Ref => {
            inputs.push(&*decode_tensor(term)?, |a, ready| {
                push_array(call, a, ready)
            })?;
        }
        _ => {
            return Err(Error::BadArg(format!(
                "unsupported argument {}: expected a tensor, number, boolean, nil, atom, \
                 string, or a list of integers, numbers or tensors",
                args::show(term)
            )))
        }
    }
    Ok(())
}

/// Pushes a tensor argument, telling the op builder when its data is
/// computed (EMLX's readiness) and may be read (see `Inputs::fold`).
fn push_array(call: std::pin::Pin<&mut Call>, a: &ffi::Array, computed: bool) {
    if computed {
        ffi::push_computed_array(call, a);
    } else {
        ffi::push_array(call, a);
    }
}

fn integer_item(term: Term) -> Item {
    arg_list::integer_item(term.decode::<i64>().ok(), term.decode::<u64>().ok())
}

/// A list (or tuple) of integers, of numbers, or of tensors.
fn push_list(
    call: std::pin::Pin<&mut Call>,
    items: Vec<Term>,
    inputs: &mut Inputs,
    whole: Term,
) -> Result<()> {
    let kinds: Vec<Item> = items
        .iter()
        .map(|t| match t.get_type() {
            TermType::Integer => integer_item(*t),
            TermType::Float => Item::Float(t.decode::<f64>().unwrap_or(f64::NAN)),
            _ => Item::Other,
        })
        .collect();
    match read_list(&kinds) {
        Ok(ListArg::Ints(ints)) => ffi::push_ints(call, &ints),
        Ok(ListArg::Floats(floats)) => ffi::push_floats(call, &floats),
        Err(ListError::IntRange) => {
            return Err(Error::BadArg(format!(
                "integers in {} must fit in 64 bits",
                args::show(whole)
            )))
        }
        Err(ListError::NumberRange) => {
            return Err(Error::BadArg(format!(
                "unreadable numbers in {}",
                args::show(whole)
            )))
        }
        Ok(ListArg::Tensors) => {
            let mut list = ffi::new_list();
            for item in items {
                let tensor = decode_tensor(item).map_err(|_| {
                    Error::BadArg(format!(
                        "expected a list of integers, of numbers or of tensors; {} is none of \
                         these (in {})",
                        args::show(item),
                        args::show(whole)
                    ))
                })?;
                inputs.push(&tensor, |a, _| ffi::list_push(list.pin_mut(), a))?;
            }
            ffi::push_arrays(call, &list);
        }
    }
    Ok(())
}

/// Binaries from this size on become tensors over their own bytes (see
/// native/bridge/data_in.cc); smaller ones are copied (cheap, and heap
/// binaries of up to 64 bytes are not reference-counted).
const IN_PLACE_MIN: usize = 4096;

/// Copies above this size run on a dirty scheduler (`from_blob_dirty`).
const DIRTY_MIN: usize = 65_536;

/// A tensor of `blob`'s bytes: the binary itself when it is large and MLX
/// can use it in place, else a copy. A copy of more than `DIRTY_MIN` bytes
/// is not made here: the answer is then `:dirty`, and the caller asks
/// `from_blob_dirty`.
#[rustler::nif]
fn from_blob<'a>(
    env: Env<'a>,
    queue: Term<'a>,
    blob: Term<'a>,
    shape: Term<'a>,
    dtype: Term<'a>,
) -> NifResult<Term<'a>> {
    copy_blob(env, "from_blob", queue, blob, shape, dtype, false)
}

/// `from_blob` for large binaries that must be copied: the copy runs on a
/// dirty scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn from_blob_dirty<'a>(
    env: Env<'a>,
    queue: Term<'a>,
    blob: Term<'a>,
    shape: Term<'a>,
    dtype: Term<'a>,
) -> NifResult<Term<'a>> {
    copy_blob(env, "from_blob_dirty", queue, blob, shape, dtype, true)
}

fn copy_blob<'a>(
    env: Env<'a>,
    nif: &str,
    queue: Term<'a>,
    blob: Term<'a>,
    shape: Term<'a>,
    dtype: Term<'a>,
    dirty: bool,
) -> NifResult<Term<'a>> {
    let queue = args::queue(nif, queue)?;
    if queue.0.is_closed() {
        return Err(queue.0.closed_error().into());
    }
    let bytes = args::binary(nif, "the data", blob)?;
    let shape = args::int_list(nif, "the shape", shape)?;
    let dtype = args::atom_name(nif, "the dtype", dtype)?;
    // A binary of the wrong size is refused here, before a copy could be
    // sent to a dirty scheduler.
    ffi::check_blob_shape(bytes.len(), &shape, &dtype).map_err(Error::from)?;
    // Large binaries are used in place where MLX's allocator allows it and
    // the bytes are aligned for the element type.
    let aligned = ffi::itemsize_of(&dtype)
        .is_ok_and(|size| size > 0 && (bytes.as_slice().as_ptr() as usize).is_multiple_of(size));
    let kept = (bytes.len() >= IN_PLACE_MIN && aligned && ffi::zero_copy_available())
        .then(|| BinaryKeeper::new(blob))
        .flatten();
    if kept.is_none() && !dirty && bytes.len() > DIRTY_MIN {
        return Ok(atoms::dirty().encode(env));
    }
    let array = match kept {
        Some(keeper) => ffi::from_kept_bytes(Box::new(keeper), &shape, &dtype),
        None => ffi::from_bytes(bytes.as_slice(), &shape, &dtype),
    }
    .map_err(Error::from)?;
    Ok(TensorRes::wrap(
        env,
        TensorRes::new(array, queue.0.clone(), None),
    ))
}

#[rustler::nif]
fn shape<'a>(env: Env<'a>, tensor: Term<'a>) -> NifResult<Term<'a>> {
    let dims = decode_tensor(tensor)?.with(ffi::shape_of)?;
    let terms: Vec<Term> = dims
        .iter()
        .map(|d| rustler::Encoder::encode(d, env))
        .collect();
    Ok(rustler::types::tuple::make_tuple(env, &terms))
}

/// `{dtype, shape}` in one call (what EMLX.Backend checks after each op).
#[rustler::nif]
fn meta<'a>(env: Env<'a>, tensor: Term<'a>) -> NifResult<Term<'a>> {
    let (name, dims) = decode_tensor(tensor)?.with(|a| (ffi::dtype_of(a), ffi::shape_of(a)))?;
    let dims: Vec<Term> = dims
        .iter()
        .map(|d| rustler::Encoder::encode(d, env))
        .collect();
    let dtype = Atom::from_str(env, &name)?;
    Ok(rustler::Encoder::encode(
        &(dtype, rustler::types::tuple::make_tuple(env, &dims)),
        env,
    ))
}

#[rustler::nif]
fn strides(tensor: Term) -> NifResult<Vec<i64>> {
    let res = decode_tensor(tensor)?;
    let ready = res.is_ready();
    Ok(res.with(|a| ffi::strides_of(a, ready))?)
}

#[rustler::nif]
fn scalar_type<'a>(env: Env<'a>, tensor: Term<'a>) -> NifResult<Atom> {
    let name = decode_tensor(tensor)?.with(ffi::dtype_of)?;
    Atom::from_str(env, &name)
}

#[rustler::nif]
fn nbytes(tensor: Term) -> NifResult<usize> {
    Ok(decode_tensor(tensor)?.with(ffi::nbytes_of)?)
}

#[rustler::nif]
fn itemsize(dtype: Term) -> NifResult<usize> {
    let name = args::atom_name("itemsize", "the dtype", dtype)?;
    Ok(ffi::itemsize_of(&name).map_err(Error::from)?)
}

/// Whether `tensor` belongs to a queue other than `queue` and is not
/// computed yet (unevaluated, or its evaluation still running).
#[rustler::nif]
fn needs_eval_for(queue: Term, tensor: Term) -> NifResult<bool> {
    let queue = args::queue("needs_eval_for", queue)?;
    let res = decode_tensor(tensor)?;
    res.with(|_| ())?;
    Ok(res.queue.id != queue.0.id && !res.is_ready())
}

/// Whether the tensor's data is computed (EMLX's own readiness flag).
#[rustler::nif]
fn tensor_ready(tensor: Term) -> NifResult<bool> {
    let res = decode_tensor(tensor)?;
    res.with(|_| ())?;
    Ok(res.is_ready())
}

#[rustler::nif]
fn deallocate(tensor: Term) -> NifResult<rustler::Atom> {
    let res = decode_tensor(tensor)?;
    Ok(if res.deallocate() {
        rustler::types::atom::ok()
    } else {
        rustler::types::atom::error()
    })
}

#[rustler::nif]
fn is_tensor_ref(term: Term) -> bool {
    decode_tensor(term).is_ok()
}
