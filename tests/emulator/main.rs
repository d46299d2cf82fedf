//! The KAV-protocol emulator over real sockets: every endpoint, every bad input with its exact status
//! and body, the body cap, unix sockets, keep-alive, h2c and graceful shutdown.

mod errors;
mod harness;
mod methods;
mod scans;
mod transport;
