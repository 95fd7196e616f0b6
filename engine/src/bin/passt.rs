//! `passt`: the QEMU-facing binary, command-line compatible with upstream
//! passt (see `docs/cli.md`).
//!
//! A thin main: the shared start-up path
//! ([`passt_engine::runtime::startup::main_for`]) in passt mode, unless
//! `argv[0]` names pasta (a `pasta -> passt` symlink, as upstream installs
//! it).

use std::process::ExitCode;

use passt_engine::fwd::Program;
use passt_engine::runtime::startup;

fn main() -> ExitCode {
    startup::main_for(Program::Passt)
}
