//! The `scangate` binary: parse arguments, set up tracing, load config, start the runtime, run.
#![forbid(unsafe_code)]

fn main() {
    println!("scangate");
}
