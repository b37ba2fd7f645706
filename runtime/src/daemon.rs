//! What every Strata daemon does around its own work: logging through
//! tracing (`RUST_LOG` overrides the default filter), a tokio runtime, a
//! clear one-line error and exit code 1 on failure, and SIGINT/SIGTERM as the
//! signal to shut down cleanly.

use std::future::Future;

/// Runs `main` on a multi-threaded runtime and exits the process on error.
/// The error is printed with `{:#}` (for `anyhow`, the whole chain).
pub fn run<F, E>(name: &str, default_filter: &str, worker_threads: Option<usize>, main: F)
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .init();
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads {
        b.worker_threads(n);
    }
    let rt = b.enable_all().build().expect("tokio runtime");
    if let Err(e) = rt.block_on(main) {
        eprintln!("{name}: {e:#}");
        std::process::exit(1);
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
