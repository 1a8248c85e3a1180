//! The HTTP endpoints of `velonotify run`: Prometheus metrics here, the
//! ingest endpoint in `ingest.rs`; both served the same way.

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;

use crate::metrics::Metrics;

/// Serves `GET /metrics` on `listen` from a thread of its own.
pub fn serve_metrics(listen: &str, metrics: Arc<Metrics>) -> anyhow::Result<std::net::SocketAddr> {
    let app = Router::new().route("/metrics", get(move || async move { metrics.render() }));
    serve(listen, "metrics", app)
}

/// Serves `app` on `listen` from a thread of its own, named after `what`.
/// The address is bound before this returns, so a busy port stops start-up.
pub fn serve(listen: &str, what: &'static str, app: Router) -> anyhow::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind(listen).with_context(|| format!("{what}: listening on {listen}"))?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    std::thread::Builder::new()
        .name(format!("velonotify-{what}"))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => {
                        if let Err(e) = axum::serve(listener, app).await {
                            tracing::error!(error = %e, "{what} endpoint stopped");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "{what} endpoint could not start"),
                }
            });
        })?;
    Ok(address)
}
