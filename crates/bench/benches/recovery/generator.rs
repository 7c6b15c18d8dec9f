//! The load generator's own runtime, its threads at the lowest CPU priority.
//!
//! On this two-core machine the generator shares the CPU with the service
//! and Postgres. Offering ten times capacity costs it most of a core (it was
//! measured taking 0.65-0.8 cores at 10x), which a real fleet pays on its own
//! hardware; at normal priority that CPU came out of the service's and
//! Postgres's share, and the benchmark measured its own generator rather
//! than the service. At nice 19 the generator gets the CPU the service and
//! Postgres leave idle. The fault proxy (the link) and the samplers (the
//! stopwatch) stay on the main runtime at normal priority. The CPU split is
//! printed with every scenario (`tillsync_bench::cpu`), so this is visible, not assumed.

use tokio::runtime::{Builder, Runtime};

use tillsync_bench::cpu::Generator;

/// The generator threads' name, by which the CPU split counts them.
pub const THREAD_NAME: &str = "load-generator";
/// The generator, for the CPU split.
pub const GENERATOR: Generator = Generator::Threads(THREAD_NAME);
const NICE: i32 = 19;

pub fn runtime() -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(THREAD_NAME)
        .on_thread_start(|| {
            // On Linux the nice value is per thread, so this lowers only the
            // generator's threads, not the proxy's.
            let thread = rustix::thread::gettid();
            if rustix::process::setpriority_process(Some(thread), NICE).is_err() {
                eprintln!("warning: the load generator runs at normal CPU priority");
            }
        })
        .enable_all()
        .build()
        .expect("the load generator's runtime starts")
}
