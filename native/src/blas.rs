//! `EMLX.blas_info/0`: the BLAS MLX's CPU kernels run on (see build/blas.rs
//! and native/bridge/blas.cc).

use rustler::{Encoder, Env, NifResult, Term};

use crate::ffi;

mod atoms {
    rustler::atoms! { kind, library, config, core, threads, sgemm_from }
}

/// `%{kind:, library:, config:, core:, threads:, sgemm_from:}`: see
/// `ffi::BlasInfo`.
#[rustler::nif]
fn blas_info(env: Env) -> NifResult<Term> {
    let b = ffi::blas_info();
    let pairs = [
        (atoms::kind(), b.kind.encode(env)),
        (atoms::library(), b.library.encode(env)),
        (atoms::config(), b.config.encode(env)),
        (atoms::core(), b.core.encode(env)),
        (atoms::threads(), b.threads.encode(env)),
        (atoms::sgemm_from(), b.sgemm_from.encode(env)),
    ];
    let keys: Vec<Term> = pairs.iter().map(|(k, _)| k.encode(env)).collect();
    let values: Vec<Term> = pairs.iter().map(|(_, v)| *v).collect();
    Term::map_from_term_arrays(env, &keys, &values)
}
