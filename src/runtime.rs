//! The tokio runtime the daemon runs on.
//!
//! One worker thread per CPU the process may use: its CPU affinity and cgroup quota, as
//! [`std::thread::available_parallelism`] reads them, unless `TOKIO_WORKER_THREADS` says
//! otherwise. With one worker the runtime is a current-thread one: every task runs on the main
//! thread, with no work-stealing scheduler between the I/O driver and the connection tasks.
//! On one CPU that served 5–12 % more requests per second than a one-worker multi-thread
//! runtime in paired runs, for ~1 % fewer instructions per request (BENCHMARKS.md).
//!
//! A current-thread runtime runs nothing while a task computes, so work that takes long
//! (parsing a reloaded config) goes to the blocking pool, as it should on any runtime.

use std::ffi::OsStr;
use std::num::NonZeroUsize;

/// Overrides the number of worker threads, as it does for any tokio program.
pub const WORKERS_ENV: &str = "TOKIO_WORKER_THREADS";

/// The number of worker threads: `TOKIO_WORKER_THREADS` when set, otherwise `available`.
pub fn workers(
    env: Option<&OsStr>,
    available: impl FnOnce() -> NonZeroUsize,
) -> Result<NonZeroUsize, String> {
    let Some(value) = env else {
        return Ok(available());
    };
    value
        .to_str()
        .and_then(|v| v.trim().parse::<NonZeroUsize>().ok())
        .ok_or_else(|| {
            format!(
                "{WORKERS_ENV}: expected a number of threads of 1 or more, got {:?}",
                value.to_string_lossy()
            )
        })
}

/// [`workers`] from this process's environment and CPUs.
pub fn workers_from_env() -> Result<NonZeroUsize, String> {
    workers(std::env::var_os(WORKERS_ENV).as_deref(), available_cpus)
}

/// The runtime for `workers` threads: current-thread for one, multi-thread otherwise.
pub fn build(workers: NonZeroUsize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if workers.get() == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers.get());
        builder
    };
    builder.enable_all().build()
}

/// The CPUs this process may run on; one when that cannot be read.
pub fn available_cpus() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: usize) -> NonZeroUsize {
        NonZeroUsize::new(v).unwrap()
    }

    #[test]
    fn the_available_cpus_unless_the_variable_says_otherwise() {
        assert_eq!(workers(None, || n(3)), Ok(n(3)));
        assert_eq!(workers(Some(OsStr::new("1")), || n(8)), Ok(n(1)));
        assert_eq!(workers(Some(OsStr::new(" 6 ")), || n(1)), Ok(n(6)));
    }

    #[test]
    fn a_variable_that_is_not_a_positive_number_is_refused_with_its_value() {
        for bad in ["0", "", "two", "-1", "1.5"] {
            let err = workers(Some(OsStr::new(bad)), || n(2)).unwrap_err();
            assert!(err.starts_with("TOKIO_WORKER_THREADS: "), "{err}");
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn one_worker_is_a_current_thread_runtime_more_are_multi_thread() {
        use tokio::runtime::RuntimeFlavor;
        let one = build(n(1)).unwrap();
        assert_eq!(one.handle().runtime_flavor(), RuntimeFlavor::CurrentThread);
        let two = build(n(2)).unwrap();
        assert_eq!(two.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
        assert_eq!(two.handle().metrics().num_workers(), 2);
        // Timers and I/O are on in both.
        one.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(1)).await });
        two.block_on(async {
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        });
    }
}
