//! Compiled programs (`compiler: EMLX`): building them from the lowered
//! defn expression, and running them on a command queue.
//!
//! `EMLX.Defn` traces a defn function through `EMLX.Backend` once per input
//! templates: every op the backend runs is recorded as a step, with the
//! tensors it read and wrote. `program_new` turns that record into a C++
//! `Program` (native/bridge/program.h): each distinct tensor becomes a slot;
//! a tensor no step wrote and that is no input is a constant the program
//! keeps. The spec, as Elixir sends it:
//!
//! ```text
//! {inputs :: [tensor], block, outputs :: [tensor], fuse :: boolean}
//! block :: [step]
//! step  :: {:op, name, args, outs :: [tensor]}
//!        | {:while, init, params, cond_block, cond, body_block, body_out, results, count}
//!        | {:cond, [{pred_block, pred, body_block, results}], last_block, last_results, results}
//!        | {:hook, id, [tensor]}
//!        | {:check, flag :: tensor, message :: String.t()}
//!        | {:callback, id, ins :: [tensor], outs :: [tensor]}
//! ```
//!
//! `program_run` sends one job to the queue: the queue thread builds the
//! graph, drives loops and branches, evaluates the outputs and replies
//! `{outputs, hooks}` (hooks: `[{id, [tensor]}]`, in the order they ran).
//! At a callback step the queue thread sends the caller
//! `{:emlx_callback, tag, id, inputs, reply}` and waits until the caller
//! answers with `program_callback_reply(reply, results)` (or exits).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use cxx::UniquePtr;
use parking_lot::Mutex;
use rustler::env::SavedTerm;
use rustler::types::tuple::get_tuple;
use rustler::{
    Atom, Encoder, Env, LocalPid, NifResult, OwnedEnv, Resource, ResourceArc, Term, TermType,
};

use crate::args;
use crate::error::{Error, Result};
use crate::ffi::{self, ArrayList, Program};
use crate::now::{self, NOW_MAX_NODES};
use crate::ops;
use crate::queue::{Queue, Reply, ReplyTo};
use crate::tensor::{decode_tensor, TensorRes};

mod atoms {
    rustler::atoms! { ok, done, collect, op, hook, check, cond, callback, emlx_callback, while_ = "while" }
}

/// What a run talks to besides MLX: it collects the hooked values (in
/// order) and asks the caller to run callbacks.
pub struct ProgramHost {
    hooks: Vec<(u32, UniquePtr<ArrayList>)>,
    caller: Caller,
}

/// The process that ran the program, reached by message from the queue
/// thread: `{:emlx_callback, tag, id, inputs, reply}`.
struct Caller {
    pid: LocalPid,
    /// Holds `tag` for the whole run (each message copies it out).
    tag_env: OwnedEnv,
    tag: SavedTerm,
    queue: Arc<Queue>,
}

/// The answer to one callback, sent by `program_callback_reply`.
type Answer = Result<UniquePtr<ArrayList>>;

/// Where the caller's answer to a callback goes; dropping it unanswered
/// (the caller died, say) tells the waiting queue thread.
pub struct CallbackReply(Mutex<Option<Sender<Answer>>>);

#[rustler::resource_impl]
impl Resource for CallbackReply {}

/// How often a queue thread waiting for a callback's answer checks that
/// the caller is still alive.
const CALLBACK_POLL: Duration = Duration::from_millis(100);

/// Called by the C++ run, after the final evaluation, once per hook.
pub fn host_hook(host: &mut ProgramHost, id: u32, arrays: &ArrayList) {
    let mut list = ffi::new_list();
    for i in 0..ffi::list_len(arrays) {
        ffi::list_push(list.pin_mut(), &ffi::list_get(arrays, i));
    }
    host.hooks.push((id, list));
}

/// Called by the C++ run at a callback step, with its evaluated inputs:
/// asks the caller to run the callback and waits for the answer.
pub fn host_callback(host: &mut ProgramHost, id: u32, arrays: &ArrayList) -> Answer {
    let (tx, rx) = bounded::<Answer>(1);
    let reply = ResourceArc::new(CallbackReply(Mutex::new(Some(tx))));
    let caller = &host.caller;
    let inputs: Vec<UniquePtr<ffi::Array>> = (0..ffi::list_len(arrays))
        .map(|i| ffi::list_get(arrays, i))
        .collect();
    let sent = OwnedEnv::new().send_and_clear(&caller.pid, |env| {
        let tag = caller
            .tag_env
            .run(|tag_env| caller.tag.load(tag_env).in_env(env));
        let inputs: Vec<Term> = inputs
            .into_iter()
            .map(|a| TensorRes::wrap(env, TensorRes::evaluated(a, caller.queue.clone())))
            .collect();
        (atoms::emlx_callback(), tag, id, inputs, reply).encode(env)
    });
    if sent.is_err() {
        return Err(Error::Queue(
            "the caller of the compiled function has exited".into(),
        ));
    }
    loop {
        match rx.recv_timeout(CALLBACK_POLL) {
            Ok(answer) => return answer,
            Err(RecvTimeoutError::Timeout) => {
                let alive = caller.tag_env.run(|env| env.is_process_alive(caller.pid));
                if !alive {
                    return Err(Error::Queue(
                        "the caller of the compiled function exited before answering its callback"
                            .into(),
                    ));
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::Mlx(
                    "the callback of the compiled function was never answered".into(),
                ))
            }
        }
    }
}

/// The caller's answer to a callback: its result tensors, or
/// `{:error, message}` when the callback raised.
#[rustler::nif]
fn program_callback_reply<'a>(reply: Term<'a>, answer: Term<'a>) -> NifResult<Atom> {
    let reply: ResourceArc<CallbackReply> = reply.decode().map_err(|_| {
        args::bad(
            "program_callback_reply",
            "the reply",
            "a callback reply",
            reply,
        )
    })?;
    let answer = match answer.decode::<(Atom, String)>() {
        Ok((tag, message)) if tag == rustler::types::atom::error() => Err(Error::Mlx(message)),
        _ => {
            let mut list = ffi::new_list();
            for t in args::list("program_callback_reply", "the results", answer)? {
                let res = decode_tensor(t)?;
                if !res.is_ready() {
                    return Err(internal("a callback's result is not computed").into());
                }
                res.with(|a| ffi::list_push(list.pin_mut(), a))?;
            }
            Ok(list)
        }
    };
    if let Some(tx) = reply.0.lock().take() {
        let _ = tx.send(answer);
    }
    Ok(atoms::ok())
}

/// A built program, and what its inputs must look like.
pub struct ProgramRes {
    program: UniquePtr<Program>,
    inputs: Vec<(Vec<i64>, String)>,
    /// The bytes of the program's outputs (from their shapes and types).
    output_bytes: usize,
}

#[rustler::resource_impl]
impl Resource for ProgramRes {}

/// Turns the spec into a program; see the module doc.
#[rustler::nif]
fn program_new<'a>(env: Env<'a>, spec: Term<'a>) -> NifResult<Term<'a>> {
    let parts = tuple(spec, 4, "the program")?;
    let mut b = Builder {
        env,
        program: ffi::program_new(),
        slots: HashMap::new(),
        keep: Vec::new(),
    };
    let mut inputs = Vec::new();
    let mut input_slots = Vec::new();
    for t in args::list("program_new", "the inputs", parts[0])? {
        let res = decode_tensor(t)?;
        inputs.push((res.with(ffi::shape_of)?, res.with(ffi::dtype_of)?));
        input_slots.push(b.define(t)?);
    }
    b.block(0, parts[1])?;
    let outputs = b.slots_of(parts[2])?;
    let mut output_bytes = 0usize;
    for t in args::list("program_new", "the outputs", parts[2])? {
        output_bytes = output_bytes.saturating_add(decode_tensor(t)?.with(ffi::nbytes_of)?);
    }
    let fuse = parts[3]
        .decode::<bool>()
        .map_err(|_| args::bad("program_new", "fuse", "a boolean", parts[3]))?;
    let n_slots = b.slots.len() as u32;
    ffi::program_finish(b.program.pin_mut(), n_slots, &input_slots, &outputs, fuse)
        .map_err(Error::from)?;
    let res = ResourceArc::new(ProgramRes {
        program: b.program,
        inputs,
        output_bytes,
    });
    Ok(res.encode(env))
}

struct Builder<'a> {
    env: Env<'a>,
    program: UniquePtr<Program>,
    /// Slot of each tensor seen, by resource address.
    slots: HashMap<usize, i32>,
    /// The resources behind `slots`, alive while building so no address is
    /// reused for another tensor.
    keep: Vec<ResourceArc<TensorRes>>,
}

impl<'a> Builder<'a> {
    /// A new slot for a tensor a step writes (or an input).
    fn define(&mut self, term: Term<'a>) -> Result<i32> {
        let res = decode_tensor(term)?;
        let key = address(&res);
        if self.slots.contains_key(&key) {
            return Err(internal("a tensor is written twice"));
        }
        let slot = self.slots.len() as i32;
        self.slots.insert(key, slot);
        self.keep.push(res);
        Ok(slot)
    }

    /// The slot of a tensor a step reads: one written before, or else a
    /// constant, which must already be computed.
    fn slot_of(&mut self, term: Term<'a>) -> Result<i32> {
        let res = decode_tensor(term)?;
        if let Some(slot) = self.slots.get(&address(&res)) {
            return Ok(*slot);
        }
        if !res.is_ready() {
            return Err(internal(
                "the program reads a tensor that no step computes and that is not computed yet",
            ));
        }
        let slot = self.slots.len() as i32;
        res.with(|a| ffi::program_constant(self.program.pin_mut(), slot, a))?;
        self.slots.insert(address(&res), slot);
        self.keep.push(res);
        Ok(slot)
    }

    fn slots_of(&mut self, term: Term<'a>) -> Result<Vec<i32>> {
        args::list("program_new", "a tensor list", term)?
            .into_iter()
            .map(|t| self.slot_of(t))
            .collect()
    }

    fn define_all(&mut self, term: Term<'a>) -> Result<Vec<i32>> {
        args::list("program_new", "a tensor list", term)?
            .into_iter()
            .map(|t| self.define(t))
            .collect()
    }

    fn new_block(&mut self, steps: Term<'a>) -> Result<u32> {
        let index = ffi::program_block(self.program.pin_mut());
        self.block(index, steps)?;
        Ok(index)
    }

    fn block(&mut self, index: u32, steps: Term<'a>) -> Result<()> {
        for step in args::list("program_new", "a block", steps)? {
            self.step(index, step)?;
        }
        Ok(())
    }

    fn step(&mut self, block: u32, step: Term<'a>) -> Result<()> {
        let parts = get_tuple(step).map_err(|_| internal("a step must be a tuple"))?;
        let kind = parts
            .first()
            .and_then(|t| t.decode::<Atom>().ok())
            .ok_or_else(|| internal("a step must start with its kind"))?;
        match parts.len() {
            4 if kind == atoms::op() => self.op(block, &parts),
            9 if kind == atoms::while_() => {
                let init = self.slots_of(parts[1])?;
                let params = self.define_all(parts[2])?;
                let cond_block = self.new_block(parts[3])?;
                let cond = self.slot_of(parts[4])?;
                let body_block = self.new_block(parts[5])?;
                let body_out = self.slots_of(parts[6])?;
                let results = self.define_all(parts[7])?;
                let count: Option<u32> = parts[8].decode().map_err(|_| {
                    args::bad(
                        "program_new",
                        "a while count",
                        "nil or an integer",
                        parts[8],
                    )
                })?;
                Ok(ffi::program_while(
                    self.program.pin_mut(),
                    block,
                    cond_block,
                    cond,
                    body_block,
                    &init,
                    &params,
                    &body_out,
                    &results,
                    count.map_or(-1, i64::from),
                )?)
            }
            5 if kind == atoms::cond() => {
                let mut blocks = Vec::new();
                let mut preds = Vec::new();
                let mut clause_results = Vec::new();
                for clause in args::list("program_new", "cond clauses", parts[1])? {
                    let c = tuple(clause, 4, "a cond clause")?;
                    blocks.push(self.new_block(c[0])?);
                    preds.push(self.slot_of(c[1])?);
                    blocks.push(self.new_block(c[2])?);
                    clause_results.extend(self.slots_of(c[3])?);
                }
                let last_block = self.new_block(parts[2])?;
                let last_results = self.slots_of(parts[3])?;
                let results = self.define_all(parts[4])?;
                Ok(ffi::program_cond(
                    self.program.pin_mut(),
                    block,
                    &blocks,
                    &preds,
                    &clause_results,
                    last_block,
                    &last_results,
                    &results,
                )?)
            }
            3 if kind == atoms::hook() => {
                let id = parts[1]
                    .decode::<u32>()
                    .map_err(|_| internal("a hook id must be an integer"))?;
                let slots = self.slots_of(parts[2])?;
                Ok(ffi::program_hook(
                    self.program.pin_mut(),
                    block,
                    id,
                    &slots,
                )?)
            }
            3 if kind == atoms::check() => {
                let flag = self.slot_of(parts[1])?;
                let message = args::string("program_new", "a check's message", parts[2])?;
                Ok(ffi::program_check(
                    self.program.pin_mut(),
                    block,
                    flag,
                    &message,
                )?)
            }
            4 if kind == atoms::callback() => {
                let id = parts[1]
                    .decode::<u32>()
                    .map_err(|_| internal("a callback id must be an integer"))?;
                let ins = self.slots_of(parts[2])?;
                let outs = self.define_all(parts[3])?;
                Ok(ffi::program_callback(
                    self.program.pin_mut(),
                    block,
                    id,
                    &ins,
                    &outs,
                )?)
            }
            _ => Err(internal("unknown step")),
        }
    }

    /// `{:op, name, args, outs}`: the op's literal arguments go into its
    /// template call; tensors (and lists of tensors) are read from slots.
    fn op(&mut self, block: u32, parts: &[Term<'a>]) -> Result<()> {
        let name = parts[1]
            .decode::<Atom>()
            .map_err(|_| internal("an op name must be an atom"))?;
        let index = ops::op_index(self.env, name)?;
        let mut call = ffi::new_call();
        let mut arrays = Vec::new();
        let mut lists = Vec::new();
        for (pos, arg) in args::list("program_new", "op arguments", parts[2])?
            .into_iter()
            .enumerate()
        {
            if is_tensor(arg) {
                arrays.extend([pos as i32, self.slot_of(arg)?]);
                ffi::push_none(call.pin_mut());
            } else if let Some(items) = tensor_list(arg) {
                lists.extend([pos as i32, items.len() as i32]);
                for item in items {
                    lists.push(self.slot_of(item)?);
                }
                ffi::push_arrays(call.pin_mut(), &ffi::new_list());
            } else {
                ops::push_arg(call.pin_mut(), arg, 0)?;
            }
        }
        let outs = self.define_all(parts[3])?;
        Ok(ffi::program_op(
            self.program.pin_mut(),
            block,
            index,
            &call,
            &arrays,
            &lists,
            &outs,
        )?)
    }
}

fn address(res: &ResourceArc<TensorRes>) -> usize {
    &**res as *const TensorRes as usize
}

fn internal(what: &str) -> Error {
    Error::Mlx(format!(
        "internal error in EMLX's compiler: {what}; please report this with the defn code"
    ))
}

fn tuple<'a>(term: Term<'a>, n: usize, what: &str) -> Result<Vec<Term<'a>>> {
    match get_tuple(term) {
        Ok(items) if items.len() == n => Ok(items),
        _ => Err(internal(&format!("{what} must be a {n}-tuple"))),
    }
}

fn is_tensor(term: Term) -> bool {
    match term.get_type() {
        TermType::Ref => decode_tensor(term).is_ok(),
        TermType::Tuple => {
            matches!(get_tuple(term), Ok(t) if t.len() == 2 && t[1].get_type() == TermType::Ref)
        }
        _ => false,
    }
}

/// The elements of a list (or tuple) argument that holds tensors.
fn tensor_list(term: Term) -> Option<Vec<Term>> {
    let items: Vec<Term> = match term.get_type() {
        TermType::List => term.decode().ok()?,
        TermType::Tuple => get_tuple(term).ok()?,
        _ => return None,
    };
    items.iter().any(|t| is_tensor(*t)).then_some(items)
}

/// A straight-line run built in a NIF and completed on the queue thread;
/// the run refers to the program, so it is dropped first (fields drop in
/// order).
struct BuiltRun {
    run: UniquePtr<ffi::ProgramRun>,
    _program: ResourceArc<ProgramRes>,
}

/// The reply of a run completed on `owner`'s thread (see `run_result`).
fn run_reply(outputs: UniquePtr<ArrayList>, host: ProgramHost, owner: Arc<Queue>) -> Reply {
    Reply::Term(Box::new(move |env| {
        run_result(env, &outputs, &host, &owner)
    }))
}

/// `{outputs, hooks}` of a completed run: evaluated tensors of `owner`.
fn run_result<'a>(
    env: Env<'a>,
    outputs: &ArrayList,
    host: &ProgramHost,
    owner: &Arc<Queue>,
) -> Term<'a> {
    let wrap = |list: &ArrayList| -> Vec<Term> {
        (0..ffi::list_len(list))
            .map(|i| {
                TensorRes::wrap(
                    env,
                    TensorRes::evaluated(ffi::list_get(list, i), owner.clone()),
                )
            })
            .collect()
    };
    let hooks: Vec<Term> = host
        .hooks
        .iter()
        .map(|(id, list)| (*id, wrap(list)).encode(env))
        .collect();
    (wrap(outputs), hooks).encode(env)
}

/// The input arrays of a call of `program` on `queue`, checked against the
/// templates it was compiled for. A lazy input of another queue is refused
/// (`CrossQueue`: the caller evaluates it on its own queue and calls again).
fn program_inputs(
    queue: &Arc<Queue>,
    program: &ProgramRes,
    inputs: Term,
) -> Result<UniquePtr<ArrayList>> {
    let terms = args::list("program_run", "the inputs", inputs)?;
    if terms.len() != program.inputs.len() {
        return Err(Error::BadArg(format!(
            "the compiled function takes {} tensors, got {}",
            program.inputs.len(),
            terms.len()
        )));
    }
    let mut list = ffi::new_list();
    for (i, (term, (shape, dtype))) in terms.iter().zip(&program.inputs).enumerate() {
        let res = decode_tensor(*term)?;
        if res.queue.id != queue.id && !res.is_ready() {
            return Err(Error::CrossQueue {
                op: "program_run".into(),
                argument: i + 1,
            });
        }
        res.with(|a| {
            let (got_shape, got_dtype) = (ffi::shape_of(a), ffi::dtype_of(a));
            if got_shape.as_slice() != shape.as_slice() || &got_dtype != dtype {
                return Err(Error::BadArg(format!(
                    "input {} of the compiled function must have shape {shape:?} and type {dtype}, \
                     got shape {:?} and type {got_dtype}",
                    i + 1,
                    got_shape.as_slice()
                )));
            }
            ffi::list_push(list.pin_mut(), a);
            Ok(())
        })??;
    }
    Ok(list)
}

/// Runs `program` on `queue` with `inputs`; the reply is
/// `{tag, {:ok, {outputs, hooks}} | {:error, _}, run_ns}`. A straight-line
/// program (no loop, branch, check or callback; unfused) whose graph is
/// small, on an idle queue that evaluates inline, runs right here instead
/// (as `eval_now` does): the answer is then `{:done, {outputs, hooks}}` and
/// no reply comes. Unless `collected`, a program whose outputs are large
/// (`now::worth_collecting_bytes`) is not run: the answer is `:collect`, and
/// the caller collects garbage (the outputs of its previous call, often)
/// and calls again, as after `eval_now`'s `:collect`.
#[rustler::nif]
fn program_run<'a>(
    env: Env<'a>,
    queue: Term<'a>,
    program: Term<'a>,
    inputs: Term<'a>,
    tag: Term<'a>,
    collected: Term<'a>,
) -> NifResult<Term<'a>> {
    let queue = args::queue("program_run", queue)?.0.clone();
    let program: ResourceArc<ProgramRes> = program
        .decode()
        .map_err(|_| args::bad("program_run", "the program", "a compiled program", program))?;
    let collected: bool = collected
        .decode()
        .map_err(|_| args::bad("program_run", "collected", "a boolean", collected))?;
    if !collected && now::worth_collecting_bytes(program.output_bytes) {
        return Ok(atoms::collect().encode(env));
    }
    let list = program_inputs(&queue, &program, inputs)?;
    let tag_env = OwnedEnv::new();
    let mut host = ProgramHost {
        hooks: Vec::new(),
        caller: Caller {
            pid: env.pid(),
            tag: tag_env.save(tag),
            tag_env,
            queue: queue.clone(),
        },
    };
    let straight = ffi::program_straight_ops(&program.program);
    if (1..=NOW_MAX_NODES).contains(&straight) {
        let mut built = None;
        let ran = queue.run_now(|stream| {
            let run = match ffi::program_build(&program.program, &list, stream) {
                Ok(run) => run,
                Err(e) => return Some(Err(e.into())),
            };
            let mut built_run = BuiltRun {
                run,
                _program: program.clone(),
            };
            if !now::small(&ffi::program_pending(&built_run.run), stream) {
                built = Some(built_run);
                return None;
            }
            Some(ffi::program_complete(built_run.run.pin_mut(), &mut host).map_err(Error::from))
        });
        if let Some(outputs) = ran {
            let outputs = outputs?;
            let result = run_result(env, &outputs, &host, &queue);
            return Ok((atoms::done(), result).encode(env));
        }
        if let Some(mut built) = built {
            let owner = queue.clone();
            queue.submit(
                ReplyTo::new(env, tag),
                Box::new(move |_stream| {
                    let outputs = ffi::program_complete(built.run.pin_mut(), &mut host)?;
                    Ok(run_reply(outputs, host, owner))
                }),
            )?;
            return Ok(atoms::ok().encode(env));
        }
    }
    let owner = queue.clone();
    queue.submit(
        ReplyTo::new(env, tag),
        Box::new(move |stream| {
            let outputs = ffi::program_run(&program.program, &list, stream, &mut host)?;
            Ok(run_reply(outputs, host, owner))
        }),
    )?;
    Ok(atoms::ok().encode(env))
}
