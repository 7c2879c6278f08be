//! Accepting connections: HTTP/1.1 (over TLS when configured) with a header read timeout,
//! connection caps and graceful draining.
//!
//! axum's own `serve` has no header read timeout, which leaves a server open to clients that
//! trickle their headers (slowloris). Here every connection gets [`HEADER_READ_TIMEOUT`](crate::config::HEADER_READ_TIMEOUT) to
//! send a request's headers, which also bounds how long an idle keep-alive connection stays
//! open (the body has its own timeout, in `http`). Connections are capped in all (never more
//! than half the process's descriptor limit, so the store, plugins and logs keep theirs) and
//! per address, so one client trickling bytes on many connections cannot starve the others:
//! a connection over a cap is closed at once. On shutdown the listener closes, idle
//! connections are closed and in-flight requests get [`DRAIN_TIMEOUT`] to finish.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// How long in-flight requests may run after shutdown begins.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections may be open at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionCaps {
    /// In all.
    pub(crate) total: u32,
    /// From one address.
    pub(crate) per_address: u32,
}

impl ConnectionCaps {
    /// The configured caps, the total lowered to half the descriptor limit.
    pub(crate) fn new(total: u32, per_address: u32) -> Self {
        let descriptors = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .map_or(u64::MAX, |n| n / 2);
        let total = u32::try_from(u64::from(total).min(descriptors.max(8))).unwrap_or(total);
        Self { total, per_address }
    }
}

/// The open connections, in all and per address.
#[derive(Debug, Default)]
struct OpenConnections {
    total: u32,
    per_address: HashMap<IpAddr, u32>,
}

/// One admitted connection; dropping it frees its place.
struct Admitted {
    open: Arc<Mutex<OpenConnections>>,
    address: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                open.per_address.remove(&self.address);
            }
        }
    }
}

/// A place for a connection from `address`, unless a cap is reached.
fn admit(
    open: &Arc<Mutex<OpenConnections>>,
    caps: ConnectionCaps,
    address: IpAddr,
) -> Option<Admitted> {
    let mut table = open
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let from_address = table.per_address.get(&address).copied().unwrap_or(0);
    if table.total >= caps.total || from_address >= caps.per_address {
        return None;
    }
    table.total += 1;
    table.per_address.insert(address, from_address + 1);
    Some(Admitted {
        open: open.clone(),
        address,
    })
}

/// Serves `router` on `listener` until `shutdown` changes, then drains.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
    header_timeout: Duration,
    caps: ConnectionCaps,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let open = Arc::new(Mutex::new(OpenConnections::default()));
    let mut refused_logged = None::<std::time::Instant>;
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Some(admitted) = admit(&open, caps, remote.ip()) else {
            // Logged at most once a minute: a flood must not fill the log either.
            if refused_logged.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                tracing::warn!(%remote, total = caps.total, per_address = caps.per_address, "connection refused: too many open connections");
                refused_logged = Some(std::time::Instant::now());
            }
            drop(stream);
            continue;
        };
        let app = router
            .clone()
            .map_request(move |mut req: axum::http::Request<Incoming>| {
                req.extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(remote));
                req
            });
        let service = TowerToHyperService::new(app);
        let watcher = graceful.watcher();
        let http = http.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _admitted = admitted;
            let served = match tls {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(acceptor) => {
                    // The handshake has the header timeout too: a client that never finishes
                    // it holds nothing for long.
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            watcher
                                .watch(http.serve_connection(TokioIo::new(stream), service))
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, %remote, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, %remote, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; closing them");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_in_all_and_per_address_and_freed_when_they_end() {
        let open = Arc::new(Mutex::new(OpenConnections::default()));
        let caps = ConnectionCaps {
            total: 3,
            per_address: 2,
        };
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            [127, 0, 0, 2].into(),
            [127, 0, 0, 3].into(),
            [127, 0, 0, 4].into(),
        );
        let first = admit(&open, caps, a);
        let second = admit(&open, caps, a);
        assert!(first.is_some() && second.is_some());
        assert!(admit(&open, caps, a).is_none(), "two per address");
        let third = admit(&open, caps, b);
        assert!(third.is_some());
        assert!(admit(&open, caps, c).is_none(), "three in all");
        drop(first);
        assert!(
            admit(&open, caps, c).is_some(),
            "an ended connection frees its place"
        );
    }

    #[test]
    fn the_total_never_exceeds_half_the_descriptor_limit() {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        let caps = ConnectionCaps::new(u32::MAX, 64);
        assert!(
            u64::from(caps.total) <= (limit / 2).max(8),
            "{} of {limit}",
            caps.total
        );
    }
}
