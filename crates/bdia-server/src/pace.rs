//! How fast a request body must arrive.
//!
//! Every request body is read through [`paced`]: it must be received whole
//! within `upload_deadline_secs` of its first read and, past
//! `upload_rate_grace_secs` of waiting for the client, at
//! `upload_min_bytes_per_sec` on average over the time spent waiting for it
//! (time the server spends not reading, for instance while the engine
//! catches up, is not held against the client). A body that falls behind
//! fails like a disconnect: whatever was reading it keeps nothing, and
//! [`call`] answers 408 with the reason.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::config::Config;
use crate::error::ApiError;

/// The pace a body must keep.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    deadline: Duration,
    min_rate: u64,
    grace: Duration,
}

impl Pace {
    /// The pace of `config`.
    pub fn of(config: &Config) -> Pace {
        Pace {
            deadline: Duration::from_secs(config.upload_deadline_secs),
            min_rate: config.upload_min_bytes_per_sec,
            grace: Duration::from_secs(config.upload_rate_grace_secs),
        }
    }

    /// The waiting allowed after receiving `bytes`.
    fn allowed_wait(&self, bytes: u64) -> Duration {
        if self.min_rate == 0 {
            return Duration::MAX;
        }
        self.grace
            .saturating_add(Duration::from_secs_f64(bytes as f64 / self.min_rate as f64))
    }
}

/// A body cut off by its [`Pace`] (found again in the errors of whatever
/// read it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TooSlow(pub String);

/// `body`, failing with [`TooSlow`] (its text also put in `cut`) when it
/// does not keep `pace`.
pub fn paced(body: Body, pace: Pace, cut: Arc<OnceLock<String>>) -> Body {
    struct St {
        started: Option<Instant>,
        bytes: u64,
        waited: Duration,
        done: bool,
    }
    let st = St {
        started: None,
        bytes: 0,
        waited: Duration::ZERO,
        done: false,
    };
    let stream =
        futures::stream::unfold((body.into_data_stream(), st), move |(mut inner, mut st)| {
            let cut = cut.clone();
            async move {
                if st.done {
                    return None;
                }
                let now = Instant::now();
                let deadline = *st.started.get_or_insert(now) + pace.deadline;
                let rate_limit = pace.allowed_wait(st.bytes).saturating_sub(st.waited);
                let until = deadline.min(now.checked_add(rate_limit).unwrap_or(deadline));
                let next = tokio::time::timeout_at(until, inner.next()).await;
                st.waited += now.elapsed();
                let item = match next {
                    Ok(Some(Ok(b))) => {
                        st.bytes += b.len() as u64;
                        Ok(b)
                    }
                    Ok(Some(Err(e))) => {
                        st.done = true;
                        Err(axum::BoxError::from(e))
                    }
                    Ok(None) => return None,
                    Err(_) => {
                        st.done = true;
                        let why = if Instant::now() >= deadline {
                            format!(
                                "Request body too slow: not received within {} s",
                                pace.deadline.as_secs()
                            )
                        } else {
                            format!(
                                "Request body too slow: under {} bytes/s on average \
                                 ({} bytes in {} s)",
                                pace.min_rate,
                                st.bytes,
                                st.waited.as_secs()
                            )
                        };
                        let _ = cut.set(why.clone());
                        Err(TooSlow(why).into())
                    }
                };
                Some((item, (inner, st)))
            }
        });
    Body::from_stream(stream)
}

/// `app`'s answer to `req` with the body paced; a request whose body was
/// cut off is answered 408 with the reason, whatever the handler made of
/// the failed read.
pub async fn call<B>(app: Router, req: Request<B>, pace: Pace) -> Response
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let cut = Arc::new(OnceLock::new());
    let req = req.map(|b| paced(Body::new(b), pace, cut.clone()));
    let resp = match app.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    match cut.get() {
        Some(why) if resp.status() != axum::http::StatusCode::REQUEST_TIMEOUT => {
            ApiError::RequestTimeout(why.clone()).into_response()
        }
        _ => resp,
    }
}
