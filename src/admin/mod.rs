//! The operator endpoints under `/__cachefront/`: bearer-token checks and
//! the state export/import.

pub mod auth;
pub mod state;
