//! `passt`: the QEMU-facing binary, command-line compatible with upstream
//! passt (see `docs/cli.md`).
//!
//! A thin main: block the stop signals, parse the command line, and hand
//! the options to the shared start-up path
//! (`passt_engine::runtime::startup`), which does the rest.

use std::process::ExitCode;

use passt_engine::cli::{self, CliError};
use passt_engine::fwd::{Program, SpecContext};
use passt_engine::runtime::{process, startup};

fn main() -> ExitCode {
    // Before anything else (and before the fork): a SIGTERM that arrives
    // before the loop reads its signalfd must wait for it, not kill us
    // with the socket and pid files left behind.
    if let Err(e) = process::block_stop_signals() {
        eprintln!("Failed to block signals: {e}");
        return ExitCode::from(1);
    }
    let cx = SpecContext {
        program: Program::Passt,
        ephemeral: startup::ephemeral_range(),
    };
    match cli::parse_args_in(std::env::args_os(), cx) {
        Ok(opts) => startup::run(opts, cx),
        Err(e @ (CliError::Help(_) | CliError::Version(_) | CliError::Capabilities(_))) => {
            print!("{e}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
