//! One module per `cachefront` subcommand, each with its `Args` and `run()`.

pub mod edge_exporter;
pub mod purge;
pub mod state;
