//! Runs a minifier so that a panic inside it becomes an ordinary error: the
//! build promises to keep a file's original bytes when its minifier fails,
//! and minifiers are large programs with assertions of their own (minify-js
//! 0.6.0, used before oxc, panicked on most real code). Natively a panic can
//! be caught; in the worker (wasm, panic=abort) it cannot, which is why the
//! edge refuses risky input before minifying instead.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    /// Where the last guarded panic happened, recorded by the quiet hook.
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// `run()`'s result, or `Err` naming the panic and where it happened. The
/// default panic hook is swapped for a quiet one meanwhile, so a caught panic
/// is reported once, as a warning, instead of as a backtrace on stderr.
pub fn without_panics<T>(run: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", crate_relative(l.file()), l.line()));
        PANIC_LOCATION.with(|cell| *cell.borrow_mut() = location);
    }));
    let outcome = catch_unwind(AssertUnwindSafe(run));
    std::panic::set_hook(previous_hook);
    match outcome {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            let location = PANIC_LOCATION
                .with(|cell| cell.borrow_mut().take())
                .map(|l| format!(" at {l}"))
                .unwrap_or_default();
            Err(format!("minifier panicked{location}: {message}"))
        }
    }
}

/// `/root/.cargo/registry/src/.../oxc_minifier-0.146.0/src/peephole/mod.rs` →
/// `oxc_minifier-0.146.0/src/peephole/mod.rs`: enough to find the upstream issue.
fn crate_relative(file: &str) -> &str {
    match file.rfind("/src/") {
        Some(src) => {
            let crate_start = file[..src].rfind('/').map_or(0, |slash| slash + 1);
            &file[crate_start..]
        }
        None => file,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_with_its_message() {
        let result: Result<(), String> = without_panics(|| panic!("boom"));
        let message = result.expect_err("panic is an error");
        assert!(
            message.contains("boom") && message.contains("guarded.rs"),
            "{message}"
        );
        assert_eq!(without_panics(|| Ok::<_, String>(7)), Ok(7));
    }
}
