//! Streaming the request body to the blocking engine pass.
//!
//! The multipart `file` part is forwarded chunk by chunk over a bounded
//! channel ([`CHANNEL_CHUNKS`] chunks at most); [`ChannelRead`] is the
//! blocking side, a `Read` that tees every byte to the staged file. Every
//! wait for the client is bounded by the idle timeout ([`within`]), and
//! the body as a whole by its pace (`crate::pace`: a deadline and a
//! minimum average rate; a body that trickles in is cut off with 408).
//! `End` is sent only when the whole body was read cleanly: on any failure
//! the reader sees an error or a closed channel, so nothing is kept.

use std::io::{self, Read, Write};
use std::time::Duration;

use axum::extract::multipart::MultipartError;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::StatusCode;
use bdia_store::blob::StagedFile;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;
use crate::state::AppState;

/// Body chunks buffered between the network and the engine.
pub const CHANNEL_CHUNKS: usize = 16;

pub(super) enum Msg {
    Data(Bytes),
    End,
    Fail(io::Error),
}

/// `Read` over the channel, copying every byte to the staged file.
pub(super) struct ChannelRead {
    /// A message received before the pass started: the pass waits for the
    /// body's first bytes without a thread.
    pub(super) first: Option<Msg>,
    pub(super) rx: mpsc::Receiver<Msg>,
    pub(super) cur: Bytes,
    pub(super) tee: Option<StagedFile>,
    pub(super) ended: bool,
    /// SHA-256 of every byte read (duplicate content).
    pub(super) hasher: sha2::Sha256,
}

impl Read for ChannelRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            if self.ended {
                return Ok(0);
            }
            let next = match self.first.take() {
                Some(m) => Some(m),
                None => self.rx.blocking_recv(),
            };
            match next {
                Some(Msg::Data(b)) => {
                    if let Some(t) = self.tee.as_mut() {
                        t.write_all(&b)?;
                    }
                    sha2::Digest::update(&mut self.hasher, &b);
                    self.cur = b;
                }
                Some(Msg::End) => {
                    self.ended = true;
                    return Ok(0);
                }
                Some(Msg::Fail(e)) => return Err(e),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "upload aborted",
                    ))
                }
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if let Some(slow) = s.downcast_ref::<crate::pace::TooSlow>() {
            return ApiError::RequestTimeout(slow.0.clone());
        }
        source = s.source();
    }
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge("Upload exceeds the size limit".into())
    } else {
        ApiError::BadRequest(format!("Malformed multipart body: {}", e.body_text()))
    }
}

/// Streams the `file` part into the channel. `Ok(false)`: the engine
/// stopped reading (a rejection); the rest of the part is then read and
/// dropped, up to `drain_cap` bytes, so that the client gets to read the
/// answer instead of a reset connection.
async fn stream_field(
    field: &mut axum::extract::multipart::Field<'_>,
    tx: &mpsc::Sender<Msg>,
    drain_cap: u64,
    idle: Duration,
) -> Result<bool, ApiError> {
    loop {
        match within(idle, field.chunk()).await {
            Ok(Some(b)) => {
                if tx.send(Msg::Data(b)).await.is_err() {
                    let mut drained = 0u64;
                    while drained < drain_cap {
                        match within(idle, field.chunk()).await {
                            Ok(Some(b)) => drained += b.len() as u64,
                            _ => break,
                        }
                    }
                    return Ok(false);
                }
            }
            Ok(None) => return Ok(true),
            Err(e) => return Err(fail(tx, e).await),
        }
    }
}

/// Waits for the next piece of the body, at most `idle`: a client that
/// stops sending is treated like one that disconnected.
async fn within<T>(
    idle: Duration,
    fut: impl std::future::Future<Output = Result<T, MultipartError>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(idle, fut).await {
        Ok(r) => r.map_err(multipart_error),
        Err(_) => Err(ApiError::BadRequest(format!(
            "Upload stalled: nothing received for {} s",
            idle.as_secs()
        ))),
    }
}

async fn fail(tx: &mpsc::Sender<Msg>, err: ApiError) -> ApiError {
    let _ = tx.send(Msg::Fail(io::Error::other(err.to_string()))).await;
    err
}

/// Streams the body: parts other than `file` are read and dropped, the
/// `file` part goes to the channel (its filename to `name`, first). A
/// missing or second `file` part is a 400. `End` is sent only when the
/// whole body was read cleanly; on any failure the consumer sees an error
/// (or a closed channel) and keeps nothing.
pub(super) async fn pump(
    mp: &mut Multipart,
    tx: mpsc::Sender<Msg>,
    drain_cap: u64,
    idle: Duration,
    mut name: Option<oneshot::Sender<String>>,
) -> Result<(), ApiError> {
    let mut seen_file = false;
    loop {
        match within(idle, mp.next_field()).await {
            Ok(Some(mut f)) => {
                if f.name() == Some("file") {
                    if seen_file {
                        return Err(fail(
                            &tx,
                            ApiError::BadRequest(
                                "Duplicate 'file' part in the multipart body".into(),
                            ),
                        )
                        .await);
                    }
                    seen_file = true;
                    if let Some(n) = name.take() {
                        let _ = n.send(file_name_of(f.file_name()));
                    }
                    if !stream_field(&mut f, &tx, drain_cap, idle).await? {
                        return Ok(());
                    }
                } else {
                    loop {
                        match within(idle, f.chunk()).await {
                            Ok(Some(_)) => {}
                            Ok(None) => break,
                            Err(e) => return Err(fail(&tx, e).await),
                        }
                    }
                }
            }
            Ok(None) => break,
            Err(e) => return Err(fail(&tx, e).await),
        }
    }
    if !seen_file {
        return Err(ApiError::BadRequest(
            "Missing 'file' part in the multipart body".into(),
        ));
    }
    let _ = tx.send(Msg::End).await;
    Ok(())
}

fn file_name_of(mp_name: Option<&str>) -> String {
    mp_name.unwrap_or("").chars().take(1024).collect()
}

/// The multipart reader over the request body (reads nothing yet).
pub(super) async fn open_multipart(state: &AppState, req: Request) -> Result<Multipart, ApiError> {
    Multipart::from_request(req, state).await.map_err(|_| {
        ApiError::BadRequest("Expected a multipart/form-data body with a 'file' part".into())
    })
}
