//! The HTTP endpoints of `velonotify run`: Prometheus metrics.

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;

use crate::metrics::Metrics;

/// Serves `GET /metrics` on `listen` from a thread of its own. The address
/// is bound before this returns, so a busy port stops start-up.
pub fn serve_metrics(listen: &str, metrics: Arc<Metrics>) -> anyhow::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind(listen).with_context(|| format!("metrics: listening on {listen}"))?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    std::thread::Builder::new()
        .name("velonotify-metrics".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(async move {
                let app = Router::new().route("/metrics", get(move || async move { metrics.render() }));
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => {
                        if let Err(e) = axum::serve(listener, app).await {
                            tracing::error!(error = %e, "metrics server stopped");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "metrics server could not start"),
                }
            });
        })?;
    Ok(address)
}
