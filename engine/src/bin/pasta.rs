//! `pasta`: the namespace-facing binary, command-line compatible with
//! upstream pasta (see `docs/pasta.md`).
//!
//! A thin main: the shared start-up path
//! ([`passt_engine::runtime::startup::main_for`]) in pasta mode, unless
//! `argv[0]` names passt.

use std::process::ExitCode;

use passt_engine::fwd::Program;
use passt_engine::runtime::startup;

fn main() -> ExitCode {
    startup::main_for(Program::Pasta)
}
