//! Connections: the accept loop, its limits, TLS.
//!
//! - Every connection gets `header_read_timeout_secs` to finish its TLS
//!   handshake and, again, to send each request's headers; the same bound
//!   applies to the wait between keep-alive requests, so an idle
//!   connection is closed after it too.
//! - At most `max_connections` connections are served at once. At the
//!   limit the loop stops accepting: further connections wait in the
//!   kernel's listen backlog (and are accepted as others close) instead of
//!   costing a descriptor each.
//! - The limit is checked against the descriptor limit at start
//!   ([`connection_budget`]): each connection may hold two descriptors (its
//!   socket and an upload's staged file), plus [`FD_RESERVE`] for the
//!   database, the lake and reports.
//! - Every request body must keep its pace ([`crate::pace`]).
//! - A failed `accept` (out of descriptors, out of memory) is logged and
//!   retried after a pause that doubles up to one second; it never stops
//!   the loop.
//! - Shutdown stops accepting, lets requests in flight finish (idle
//!   connections close at once) and waits for them up to the grace period.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::pace::{self, Pace};

/// Descriptors kept free of connections: database, lake, reports, logs.
pub const FD_RESERVE: u64 = 128;
/// Descriptors one connection may hold: its socket and a staged upload.
pub const FDS_PER_CONNECTION: u64 = 2;
/// `max_connections` when unset and the descriptor limit allows it.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 4_096;
/// Fewer connections than this is no server: refuse to start.
pub const MIN_CONNECTIONS: u64 = 8;

/// The longest pause after a failed `accept`.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// `max_connections` for a descriptor limit of `nofile`: the configured
/// value when `FDS_PER_CONNECTION × it + FD_RESERVE` fits, else an error
/// naming the rule; unset, the most that fits, at most
/// [`DEFAULT_MAX_CONNECTIONS`] and at least [`MIN_CONNECTIONS`].
pub fn budget_for(configured: Option<u32>, nofile: u64) -> Result<usize, String> {
    let fits = nofile.saturating_sub(FD_RESERVE) / FDS_PER_CONNECTION;
    let rule = format!(
        "{FDS_PER_CONNECTION} × max_connections + {FD_RESERVE} must not exceed the \
         descriptor limit (RLIMIT_NOFILE = {nofile})"
    );
    match configured {
        Some(n) if u64::from(n) > fits => Err(format!(
            "max_connections = {n} is too many: {rule}, so at most {fits}; \
             raise the limit (ulimit -n, LimitNOFILE=) or lower max_connections"
        )),
        Some(n) => Ok(n as usize),
        None if fits < MIN_CONNECTIONS => Err(format!(
            "the descriptor limit is too low to serve: {rule} and at least \
             {MIN_CONNECTIONS} connections; raise it (ulimit -n, LimitNOFILE=)"
        )),
        None => Ok(fits.min(DEFAULT_MAX_CONNECTIONS) as usize),
    }
}

/// Raises the soft descriptor limit to the hard one (where allowed) and
/// returns `max_connections` for it ([`budget_for`]).
pub fn connection_budget(configured: Option<u32>) -> anyhow::Result<usize> {
    let nofile = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            let (soft, hard) = rlimit::Resource::NOFILE
                .get()
                .context("reading RLIMIT_NOFILE")?;
            tracing::warn!(error = %e, soft, hard, "could not raise the descriptor limit");
            soft
        }
    };
    let max = budget_for(configured, nofile).map_err(anyhow::Error::msg)?;
    tracing::info!(
        descriptor_limit = nofile,
        max_connections = max,
        "connection limit"
    );
    Ok(max)
}

/// The HTTPS side of `tls_cert` and `tls_key` (PEM): rustls with the ring
/// provider, HTTP/1.1 by ALPN.
pub fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the TLS certificate {}", cert.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the TLS key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not go together")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A bound listener and how its connections are served.
pub struct Listening {
    /// The bound socket.
    pub listener: TcpListener,
    /// Present: HTTPS.
    pub tls: Option<TlsAcceptor>,
    /// Connections served at once.
    pub max_connections: usize,
    /// TLS handshake, request headers, keep-alive idle: each at most this.
    pub header_read_timeout: Duration,
    /// Wait for requests in flight at shutdown.
    pub grace: Duration,
    /// The pace every request body must keep.
    pub pace: Pace,
}

impl Listening {
    /// Binds `config.listen` with the limits of `config`; `max_connections`
    /// from [`connection_budget`].
    pub async fn bind(config: &Config, max_connections: usize) -> anyhow::Result<Listening> {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            _ => None,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        Ok(Listening::over(listener, tls, max_connections, config))
    }

    /// `listener` served with the timeouts and pace of `config`.
    pub fn over(
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        max_connections: usize,
        config: &Config,
    ) -> Listening {
        Listening {
            listener,
            tls,
            max_connections,
            header_read_timeout: Duration::from_secs(config.header_read_timeout_secs),
            grace: Duration::from_secs(config.shutdown_grace_secs),
            pace: Pace::of(config),
        }
    }

    /// Serves `app` until `shutdown` resolves, then waits (up to the grace
    /// period) for the requests in flight.
    pub async fn serve(
        self,
        app: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Listening {
            listener,
            tls,
            max_connections,
            header_read_timeout,
            grace,
            pace,
        } = self;
        let permits = Arc::new(Semaphore::new(max_connections));
        let graceful = GracefulShutdown::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .keep_alive(true);
        let mut backoff = Duration::ZERO;
        tokio::pin!(shutdown);
        loop {
            // At the limit, wait here: new connections stay in the backlog.
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => p.context("connection permits")?,
                _ = &mut shutdown => break,
            };
            let stream = tokio::select! {
                r = listener.accept() => r,
                _ = &mut shutdown => break,
            };
            let (stream, peer) = match stream {
                Ok(accepted) => {
                    backoff = Duration::ZERO;
                    accepted
                }
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    backoff = (backoff * 2).clamp(Duration::from_millis(50), MAX_ACCEPT_BACKOFF);
                    tracing::warn!(error = %e, pause_ms = backoff.as_millis() as u64, "accept failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => continue,
                        _ = &mut shutdown => break,
                    }
                }
            };
            let _ = stream.set_nodelay(true);
            let conn = Conn {
                http: http.clone(),
                app: app.clone(),
                pace,
                watcher: graceful.watcher(),
                header_read_timeout,
                peer,
            };
            let tls = tls.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tls {
                    None => conn.serve(stream).await,
                    Some(tls) => conn.serve_tls(stream, tls).await,
                }
            });
        }
        drop(listener);
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("requests in flight did not finish within the grace period");
        }
        Ok(())
    }
}

/// Errors of one connection that `accept` reports; the next accept is fine.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// What one connection's task needs.
struct Conn {
    http: hyper::server::conn::http1::Builder,
    app: Router,
    pace: Pace,
    watcher: Watcher,
    header_read_timeout: Duration,
    /// The client's address, given to handlers as
    /// `axum::extract::ConnectInfo<SocketAddr>`.
    peer: SocketAddr,
}

impl Conn {
    /// HTTP/1.1 over `io` until the client closes, a timeout, or shutdown.
    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (app, pace, peer) = (self.app, self.pace, self.peer);
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let app = app.clone();
            async move { Ok::<_, std::convert::Infallible>(pace::call(app, req, pace).await) }
        });
        let conn = self.http.serve_connection(TokioIo::new(io), service);
        if let Err(e) = self.watcher.watch(conn).await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }

    /// The TLS handshake (within the header-read timeout), then HTTP. A
    /// client speaking plain HTTP gets a JSON 400 saying so.
    async fn serve_tls(self, stream: TcpStream, tls: TlsAcceptor) {
        let limit = self.header_read_timeout;
        let handshake = async {
            let mut first = [0u8; 1];
            // A TLS connection starts with a handshake record (0x16).
            if stream.peek(&mut first).await? == 1 && first[0] != 0x16 {
                return Ok(Err(stream));
            }
            tls.accept(stream).await.map(Ok)
        };
        match tokio::time::timeout(limit, handshake).await {
            Ok(Ok(Ok(tls_stream))) => self.serve(tls_stream).await,
            Ok(Ok(Err(plain))) => refuse_plain_http(plain).await,
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        }
    }
}

/// Answers a plain-HTTP request on the HTTPS port with a JSON 400 and
/// closes (reading at most a little of the request, briefly).
async fn refuse_plain_http(mut stream: TcpStream) {
    let body = serde_json::to_string(&bdia_wire::ErrorBody {
        error: "This port speaks HTTPS: use an https:// URL".into(),
        code: None,
    })
    .unwrap_or_default();
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut head = [0u8; 8192];
        let _ = stream.read(&mut head).await;
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_follows_the_descriptor_limit() {
        // Unset: what fits, capped.
        assert_eq!(budget_for(None, 1_048_576), Ok(4_096));
        assert_eq!(budget_for(None, 1_024), Ok(448));
        assert_eq!(budget_for(None, 256), Ok(64));
        let e = budget_for(None, 100).unwrap_err();
        assert!(e.contains("RLIMIT_NOFILE = 100"), "{e}");
        // Configured: kept when it fits, refused with the rule otherwise.
        assert_eq!(budget_for(Some(64), 256), Ok(64));
        let e = budget_for(Some(65), 256).unwrap_err();
        assert!(
            e.contains("max_connections = 65") && e.contains("at most 64"),
            "{e}"
        );
        assert_eq!(budget_for(Some(10_000), 1_048_576), Ok(10_000));
    }
}
