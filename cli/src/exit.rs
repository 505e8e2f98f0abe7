//! The CLI's exit codes and the failure that carries one (documented in
//! docs/purge.md): every network command ends through [`report`].
//!
//! 0 done; 1 any other failure (build, minify; `check` found an error in
//! the configuration); 2 usage (bad flags, no token,
//! no endpoint); 3 authentication refused (401/403); 4 network (connect, TLS,
//! timeout); 5 server error (5xx, an answer that is not what was asked for);
//! 6 request refused (400, 404 = API disabled, 405, 413, 429); 7 partial:
//! a purge fanned out to several providers failed on some of them only.

use std::process::ExitCode;

pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_AUTH: u8 = 3;
pub const EXIT_NETWORK: u8 = 4;
pub const EXIT_SERVER: u8 = 5;
pub const EXIT_REFUSED: u8 = 6;
pub const EXIT_PARTIAL: u8 = 7;

/// A failure with its exit code and message.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

pub fn fail(code: u8, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

/// Prints the failure's message on stderr and turns the outcome into the
/// process's exit code.
pub fn report(outcome: Result<(), Failure>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
