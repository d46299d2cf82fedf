//! Subcommands whose work lives in the library, so `main.rs` holds one enum variant and one dispatch
//! arm per command. Each module has the command's clap `Args` and its `run`, which returns the exit
//! code.
//!
//! - [`emulator`]: `scangate emulator`, the KAV-protocol scan-engine emulator as a process.
//! - [`demo`]: `scangate demo`, an emulator and a gateway in one process with a throwaway token.
//! - [`healthcheck`]: `scangate healthcheck`, one GET against the admin listener for Docker.
//! - [`process`]: what these long-running commands share: the runtime, stop signals, exit codes.

pub mod demo;
pub mod emulator;
pub mod healthcheck;
pub mod process;
