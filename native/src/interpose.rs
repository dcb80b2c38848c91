//! Functions this library exports under the names of functions libmlx calls,
//! so that the dynamic linker binds libmlx's calls to them (this library
//! comes before libmlx in libmlx's lookup scope; see
//! native/bridge/inline_cpu.cc for why and what they do).
//!
//! Each export is a trampoline: one jump to a C++ hook compiled into the
//! bridge, leaving every argument register and the stack as the caller set
//! them, so the hook receives the member function's own arguments
//! (`this` first). The C++ hooks' parameter lists are written with MLX's
//! types, so the compiler, not this file, keeps the calling convention
//! right. Linux only: elsewhere the linker does not interpose this way.

macro_rules! trampolines {
    ($($export:literal => $trampoline:ident -> $hook:ident),* $(,)?) => {
        unsafe extern "C" {
            $(fn $hook();)*
        }
        $(
            // SAFETY: a naked function is its assembly alone; this one is a
            // single tail jump to a hook with the exported function's exact
            // signature, so nothing here reads or changes the arguments.
            #[unsafe(naked)]
            #[unsafe(export_name = $export)]
            extern "C" fn $trampoline() {
                #[cfg(target_arch = "x86_64")]
                core::arch::naked_asm!("jmp {hook}", hook = sym self::$hook);
                #[cfg(target_arch = "aarch64")]
                core::arch::naked_asm!("b {hook}", hook = sym self::$hook);
            }
        )*
    };
}

mod scheduler {
    trampolines! {
        "_ZN3mlx4core9scheduler9Scheduler7enqueueENS0_6StreamESt8functionIFvvEE" => enqueue -> emlx_hook_enqueue,
        "_ZN3mlx4core9scheduler9Scheduler12signal_eventENS0_6StreamENS0_5EventESt8functionIFvRS4_EE" => signal_event -> emlx_hook_signal_event,
        "_ZN3mlx4core9scheduler9Scheduler10wait_eventENS0_6StreamENS0_5EventESt8functionIFvRS4_EE" => wait_event -> emlx_hook_wait_event,
        "_ZN3mlx4core9scheduler9Scheduler11check_errorENS0_6StreamE" => check_error -> emlx_hook_check_error,
    }
}
