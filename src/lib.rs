//! scangate: an authenticating reverse proxy for antivirus scan engines.
//!
//! Module map, in request order:
//! - [`config`]: the kavhttpd.xml-shaped file → typed [`config::Settings`] (`xml` → `validate`), the
//!   loader, in-place token edits (`edit`) and the reload triggers (`watch`).
//! - [`auth`]: token minting and digests (`token`), the live token map (`store`), reading the token
//!   from a request (`header`), what a role may call (`policy`), and each principal's live limit
//!   state and quota counts (`limits`, `quota`).
//! - [`net`]: listeners (TCP, unix) that the gateway, the admin endpoint and the emulator share.
//! - [`proxy`]: the client listener and connections (`server`), the per-request path (`handler`),
//!   the scan engines (`upstream`: selection, sessions and queue, health checks, pooled clients),
//!   retries (`forward`), the limit phase and its RateLimit fields (`limits`), header rules
//!   (`headers`), body guards
//!   (`body`) and the one error → status mapping (`error`).
//! - [`state`]: the reloadable snapshot (arc-swap) plus the token store, and the reload function;
//!   [`heap`] gives the pages a large load freed back to the OS.
//! - [`metrics`]: the Prometheus registry and the per-token handles the request path bumps.
//! - [`audit`]: the scan audit's vocabulary: scan calls, verdicts read from an answer's head, the
//!   objects scans name, per-credential statistics and the console's detections ring (wired into
//!   the request path by `proxy::audit`).
//! - [`admin`]: the admin listener (`/healthz`, `/readyz`, `/metrics`, `/config`, the web console
//!   under `/console/`).
//! - [`emulator`]: a KAV-protocol scan-engine emulator for demos, tests and benchmarks.
//! - [`cli`]: subcommands whose work lives here so `main.rs` stays thin (`emulator`, `demo`, `token`,
//!   `check`, `healthcheck`).
// `deny`, not `forbid`: `heap::release_free_pages` calls glibc's `malloc_trim`, the one `unsafe`
// block, allowed there because a measurement showed the need (see that module).
#![deny(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod emulator;
pub mod heap;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod proxy;
pub mod state;
