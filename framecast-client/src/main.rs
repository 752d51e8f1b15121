//! The `framecast-client` binary: parse the flags, run, turn the outcome into one line
//! on stderr and an exit code (see `--help`).

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::process::ExitCode;

use clap::Parser;
use framecast_client::failure::exit;
use framecast_client::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    match framecast_client::run(&args) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(failure) => {
            eprintln!("framecast-client: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
