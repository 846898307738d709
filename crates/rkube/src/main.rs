//! `rkube`: a Kubernetes-compatible cluster in one binary.
//!
//! `rkube up` runs a single-node cluster (API server, controllers and, once
//! it exists, the node agent) in one process; `rkube server` runs the control
//! plane alone. See `rkube <command> --help`.

mod addons;
mod cli;
mod datastore;
mod join;
mod local;
mod run;
mod server_lb;
mod token;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    run::main(cli)
}
