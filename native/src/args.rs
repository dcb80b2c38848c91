//! Decoding NIF arguments with messages a user can act on.
//!
//! Rustler's derived decoders answer a wrong term with a bare `badarg`
//! (Elixir: "argument error", no hint of which argument or why), and its
//! `Vec` decoder panics on an improper list. Every NIF argument that is not
//! a plain tensor goes through these helpers instead, so a bad call raises
//! `ArgumentError` naming the NIF, the argument and what it got.

use rustler::types::tuple::get_tuple;
use rustler::{Atom, Binary, ResourceArc, Term, TermType};

use crate::error::{Error, Result};
use crate::tensor::QueueRes;

/// `nif: what must be expected, got: <term>`.
pub fn bad(nif: &str, what: &str, expected: &str, term: Term) -> Error {
    Error::BadArg(format!(
        "{nif}: {what} must be {expected}, got: {}",
        show(term)
    ))
}

/// A short rendering of `term` for an error message: large binaries, lists,
/// tuples and maps are summarised rather than printed whole.
pub fn show(term: Term) -> String {
    const MAX: usize = 160;
    let summary = match term.get_type() {
        TermType::Binary => term
            .decode::<Binary>()
            .ok()
            .filter(|b| b.len() > 48)
            .map(|b| format!("a binary of {} bytes", b.len())),
        TermType::List => match term.list_length() {
            Ok(n) if n > 24 => Some(format!("a list of {n} elements")),
            Ok(_) => None,
            Err(_) => Some("an improper list".to_string()),
        },
        TermType::Tuple => get_tuple(term)
            .ok()
            .filter(|t| t.len() > 24)
            .map(|t| format!("a tuple of {} elements", t.len())),
        TermType::Map => term
            .map_size()
            .ok()
            .filter(|n| *n > 16)
            .map(|n| format!("a map of {n} keys")),
        _ => None,
    };
    emlx_pure::summary::shorten(summary.unwrap_or_else(|| format!("{term:?}")), MAX)
}

/// The elements of a proper list (an improper one is refused, not a panic).
pub fn list<'a>(nif: &str, what: &str, term: Term<'a>) -> Result<Vec<Term<'a>>> {
    if term.get_type() != TermType::List {
        return Err(bad(nif, what, "a list", term));
    }
    if term.list_length().is_err() {
        return Err(bad(nif, what, "a proper list", term));
    }
    term.decode().map_err(|_| bad(nif, what, "a list", term))
}

/// A list of integers that fit in 64 bits.
pub fn int_list(nif: &str, what: &str, term: Term) -> Result<Vec<i64>> {
    list(nif, what, term)?
        .into_iter()
        .map(|t| {
            t.decode::<i64>()
                .map_err(|_| bad(nif, what, "a list of 64-bit integers", term))
        })
        .collect()
}

/// A command queue handle (the `ref` inside `EMLX.CommandQueue`).
pub fn queue(nif: &str, term: Term) -> Result<ResourceArc<QueueRes>> {
    term.decode().map_err(|_| {
        bad(
            nif,
            "the queue",
            "an EMLX command queue reference (EMLX.CommandQueue's :ref)",
            term,
        )
    })
}

/// `None` for nil, else what `decode` makes of the term.
pub fn optional<'a, T>(
    term: Term<'a>,
    decode: impl FnOnce(Term<'a>) -> Result<T>,
) -> Result<Option<T>> {
    if term
        .decode::<Atom>()
        .is_ok_and(|a| a == rustler::types::atom::nil())
    {
        Ok(None)
    } else {
        decode(term).map(Some)
    }
}

/// An atom, by name.
pub fn atom_name(nif: &str, what: &str, term: Term) -> Result<String> {
    if term.get_type() != TermType::Atom {
        return Err(bad(nif, what, "an atom", term));
    }
    term.atom_to_string()
        .map_err(|_| bad(nif, what, "an atom", term))
}

/// An atom.
pub fn atom(nif: &str, what: &str, term: Term) -> Result<Atom> {
    term.decode().map_err(|_| bad(nif, what, "an atom", term))
}

/// A non-negative integer below 2^64.
pub fn count(nif: &str, what: &str, term: Term) -> Result<u64> {
    term.decode()
        .map_err(|_| bad(nif, what, "a non-negative integer below 2^64", term))
}

/// A UTF-8 string (an Elixir binary).
pub fn string(nif: &str, what: &str, term: Term) -> Result<String> {
    let bin = binary(nif, what, term)?;
    std::str::from_utf8(bin.as_slice())
        .map(str::to_owned)
        .map_err(|_| bad(nif, what, "a UTF-8 string", term))
}

/// A binary.
pub fn binary<'a>(nif: &str, what: &str, term: Term<'a>) -> Result<Binary<'a>> {
    if term.get_type() != TermType::Binary {
        return Err(bad(nif, what, "a binary", term));
    }
    term.decode().map_err(|_| bad(nif, what, "a binary", term))
}
