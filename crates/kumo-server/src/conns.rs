//! The accept loop: each connection served by hyper (HTTP/1.1 or HTTP/2),
//! with a deadline for a request's headers and a cap on open connections.
//!
//! A connection with no request in flight must bring the next request's
//! headers within the header timeout, counted from when it opened or
//! from the end of its last response; otherwise it is closed. For
//! HTTP/1.1 hyper enforces it on the bytes of the head itself (a
//! half-sent request is cut off); a watchdog per connection enforces it
//! for any protocol, an HTTP/2 connection left idle included.
//!
//! Open connections are capped below the descriptor limit. At the cap,
//! the connections idle the longest (no request in flight, whether idle
//! or half-sent) are closed to make room, so that someone holding
//! thousands of idle connections cannot keep `/healthz` or anyone else
//! out; when every connection is busy, the new one is closed at once.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Descriptors kept back from connections: the database, instances'
/// channels and pipes, files being read or written.
const FD_RESERVE: u64 = 256;

/// How the accept loop treats connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    pub(crate) header_timeout: Duration,
    pub(crate) max_connections: usize,
}

/// Raises the soft limit on open descriptors to the hard limit, and gives
/// the most connections that fit below it with room for everything else:
/// `wanted` if it fits, else three quarters of the limit less a reserve.
pub(crate) fn connection_cap(wanted: Option<usize>) -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let limit = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 1024,
    };
    let fits = (limit / 4 * 3).saturating_sub(FD_RESERVE).max(16);
    let fits = usize::try_from(fits).unwrap_or(usize::MAX);
    match wanted {
        Some(n) if n > fits => {
            tracing::warn!(
                wanted = n,
                cap = fits,
                descriptor_limit = limit,
                "--max-connections is more than the descriptor limit allows; using the cap"
            );
            fits
        }
        Some(n) => n.max(1),
        None => fits,
    }
}

/// One open connection, as the accept loop and its watchdog see it.
struct Conn {
    /// Requests whose responses are not yet fully sent.
    busy: AtomicUsize,
    /// When the connection last became idle, in milliseconds since `epoch`.
    idle_since: AtomicU64,
    /// Told when the connection is to be closed to make room.
    evict: tokio::sync::Notify,
}

/// The open connections, by number in order of arrival.
struct Registry {
    epoch: Instant,
    conns: Mutex<BTreeMap<u64, Arc<Conn>>>,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes up to `n` of the connections idle the longest; says how many.
    fn evict_idle(&self, n: usize) -> usize {
        let mut conns = self.lock();
        let mut idle: Vec<(u64, u64)> = conns
            .iter()
            .filter(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
            .map(|(id, c)| (c.idle_since.load(Ordering::Acquire), *id))
            .collect();
        let n = n.min(idle.len());
        if n == 0 {
            return 0;
        }
        if n < idle.len() {
            idle.select_nth_unstable(n - 1);
        }
        for (_, id) in &idle[..n] {
            if let Some(conn) = conns.remove(id) {
                conn.evict.notify_one();
            }
        }
        n
    }
}

/// Keeps a connection counted as busy while a response is being made
/// and sent.
struct Busy {
    conn: Arc<Conn>,
    registry: Arc<Registry>,
}

impl Busy {
    fn new(conn: Arc<Conn>, registry: Arc<Registry>) -> Busy {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        Busy { conn, registry }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.conn
            .idle_since
            .store(self.registry.now_ms(), Ordering::Release);
        self.conn.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its connection busy until it is sent.
struct TrackedBody {
    inner: Body,
    _busy: Busy,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Accepts and serves connections until `stop` turns true, then lets the
/// open ones finish their requests (each is told to close when idle) and
/// returns once all are closed.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let registry = Arc::new(Registry {
        epoch: Instant::now(),
        conns: Mutex::new(BTreeMap::new()),
    });
    // Every connection task holds a sender; all are gone when all closed.
    let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut next_id = 0u64;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        let (stream, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, or the peer gone before we took it:
                // pause a moment rather than spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let open = registry.lock().len();
        if open >= limits.max_connections {
            let batch = (limits.max_connections / 10).max(1);
            if registry.evict_idle(batch) == 0 {
                tracing::debug!(%addr, open, "at the connection cap with every connection busy; closing the new one");
                drop(stream);
                continue;
            }
        }
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(registry.now_ms()),
            evict: tokio::sync::Notify::new(),
        });
        let id = next_id;
        next_id += 1;
        registry.lock().insert(id, conn.clone());
        tokio::spawn(serve_one(
            stream,
            addr,
            app.clone(),
            limits,
            conn,
            id,
            registry.clone(),
            stop.clone(),
            alive_tx.clone(),
        ));
    }
    drop(listener);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
}

#[allow(clippy::too_many_arguments)]
async fn serve_one(
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    app: Router,
    limits: ConnLimits,
    conn: Arc<Conn>,
    id: u64,
    registry: Arc<Registry>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    _alive: tokio::sync::mpsc::Sender<()>,
) {
    let _ = stream.set_nodelay(true);
    let service = {
        let conn = conn.clone();
        let registry = registry.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let busy = Busy::new(conn.clone(), registry.clone());
            req.extensions_mut().insert(ConnectInfo(addr));
            let app = app.clone();
            async move {
                let response = app
                    .oneshot(req.map(Body::new))
                    .await
                    .unwrap_or_else(|never: Infallible| match never {});
                Ok::<_, Infallible>(response.map(|inner| TrackedBody { inner, _busy: busy }))
            }
        })
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        let idle_deadline = match conn.busy.load(Ordering::Acquire) {
            0 => {
                let since = conn.idle_since.load(Ordering::Acquire);
                registry.epoch
                    + Duration::from_millis(since.saturating_add(millis(limits.header_timeout)))
            }
            // Busy: look again after a while (responses may stream long).
            _ => Instant::now() + limits.header_timeout,
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!(error = %e, %addr, "connection ended with an error");
                }
                break;
            }
            () = conn.evict.notified() => {
                tracing::debug!(%addr, "closing an idle connection to make room");
                break;
            }
            _ = stop.wait_for(|stopped| *stopped), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(idle_deadline.into()) => {
                let idle = conn.busy.load(Ordering::Acquire) == 0;
                let since = conn.idle_since.load(Ordering::Acquire);
                if idle && registry.now_ms() >= since.saturating_add(millis(limits.header_timeout)) {
                    tracing::debug!(%addr, "closing a connection that sent no request in time");
                    break;
                }
            }
        }
    }
    registry.lock().remove(&id);
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
