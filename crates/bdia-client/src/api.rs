//! A typed client of the Bulk Data Insertion API (and of bdia's own lookups).
//!
//! It gets an access token with the client-credentials flow
//! (`POST /ims/token/v3`) and renews it before it expires or when the server
//! answers 401. Every call returns the server's JSON answer as a typed value
//! or a [`ClientError`] that says whether a retry can help.
//!
//! The answers are the server's own types ([`bdia_wire`]): a body missing
//! a required field, or with an unknown status, is a [`ClientError::Decode`].

use std::path::Path;
use std::time::{Duration, Instant};

pub use bdia_wire::{
    AccessToken, FileList, FileRecord, FileStatus, GroupAction, GroupView, Report, ReportQuery,
    Validation,
};
use serde::Deserialize;
use tokio::sync::Mutex;

/// Where and who.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// API client id (also sent as `x-api-key`).
    pub client_id: String,
    /// API client secret.
    pub client_secret: String,
}

/// What went wrong with a call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status.
    #[error("HTTP {status}: {message}")]
    Http {
        /// The status code.
        status: u16,
        /// The server's `error` text.
        message: String,
        /// `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused, reset, timed out. The request may or
    /// may not have reached the server.
    #[error("network: {0}")]
    Network(String),
    /// An answer that is not the expected JSON.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// The server's certificate is not trusted (or a CA certificate could
    /// not be read): nothing was sent, and trying again will not help.
    #[error("TLS: {0}")]
    Tls(String),
}

impl ClientError {
    /// True when the same call may succeed later (network, 5xx, 429).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Http { status, .. } => *status == 429 || *status >= 500,
            ClientError::Network(_) => true,
            ClientError::Decode(_) | ClientError::Tls(_) => false,
        }
    }

    /// True when the request may have been carried out without an answer
    /// (so an upload should be looked up by key before it is sent again).
    pub fn outcome_unknown(&self) -> bool {
        match self {
            ClientError::Http { status, .. } => *status >= 500,
            ClientError::Network(_) => true,
            ClientError::Decode(_) => true,
            ClientError::Tls(_) => false,
        }
    }
}

/// The client. Cheap to share behind an `Arc`; calls may run concurrently.
pub struct Client {
    http: reqwest::Client,
    creds: Credentials,
    token: Mutex<Option<(String, Instant)>>,
}

/// A failed request, with every cause (`error sending request for url
/// (...): client error (Connect): invalid peer certificate: UnknownIssuer`);
/// an untrusted server certificate is a [`ClientError::Tls`].
fn network(e: reqwest::Error) -> ClientError {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let cause = s.to_string();
        if !text.ends_with(&cause) {
            text = format!("{text}: {cause}");
        }
        source = s.source();
    }
    if matches!(
        rustls_error(&e),
        Some(tokio_rustls::rustls::Error::InvalidCertificate(_))
    ) {
        ClientError::Tls(format!(
            "{text} (the server's certificate is not signed by a trusted authority: \
             give the authority's PEM certificate with --ca-cert or BDIA_CA_CERT)"
        ))
    } else {
        ClientError::Network(text)
    }
}

/// The rustls error among the causes of `e` (they reach here inside
/// `io::Error`s, whose `source` skips what they wrap).
fn rustls_error<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a tokio_rustls::rustls::Error> {
    if let Some(tls) = e.downcast_ref::<tokio_rustls::rustls::Error>() {
        return Some(tls);
    }
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        if let Some(tls) = rustls_error(inner) {
            return Some(tls);
        }
    }
    e.source().and_then(rustls_error)
}

impl Client {
    /// A client for `creds`; `timeout` bounds each request. HTTPS servers
    /// are trusted when the system's root certificates vouch for them.
    pub fn new(creds: Credentials, timeout: Duration) -> Result<Client, ClientError> {
        Client::with_ca_cert(creds, timeout, None)
    }

    /// [`Client::new`], also trusting the certificates of the PEM file
    /// `ca_cert` (a private authority or a self-signed server).
    pub fn with_ca_cert(
        creds: Credentials,
        timeout: Duration,
        ca_cert: Option<&Path>,
    ) -> Result<Client, ClientError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10));
        if let Some(path) = ca_cert {
            let unreadable =
                |e: &dyn std::fmt::Display| ClientError::Tls(format!("{}: {e}", path.display()));
            let pem = std::fs::read(path).map_err(|e| unreadable(&e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| unreadable(&e))?;
            if certs.is_empty() {
                return Err(unreadable(&"no PEM certificate in the file"));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(network)?;
        let mut creds = creds;
        creds.url = creds.url.trim_end_matches('/').to_string();
        Ok(Client {
            http,
            creds,
            token: Mutex::new(None),
        })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.creds.url
    }

    /// A valid access token, fetched or renewed when needed.
    pub async fn token(&self) -> Result<String, ClientError> {
        let mut slot = self.token.lock().await;
        if let Some((t, until)) = slot.as_ref() {
            if Instant::now() < *until {
                return Ok(t.clone());
            }
        }
        let resp = self
            .http
            .post(format!("{}/ims/token/v3", self.creds.url))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.creds.client_id.as_str()),
                ("client_secret", self.creds.client_secret.as_str()),
            ])
            .send()
            .await
            .map_err(network)?;
        let answer: AccessToken = decode(resp).await?;
        // Renew a minute early (or at half-life for short tokens).
        let life = Duration::from_secs(answer.expires_in.max(2));
        let margin = Duration::from_secs(60).min(life / 2);
        *slot = Some((answer.access_token.clone(), Instant::now() + life - margin));
        Ok(answer.access_token)
    }

    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    /// Sends a request built by `build` with auth headers; on 401 renews the
    /// token once and tries again.
    async fn send<T, F>(&self, build: F) -> Result<T, ClientError>
    where
        T: for<'de> Deserialize<'de>,
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        for attempt in 0..2 {
            let token = self.token().await?;
            let resp = build(&self.http)
                .bearer_auth(&token)
                .header("x-api-key", &self.creds.client_id)
                .send()
                .await
                .map_err(network)?;
            if resp.status().as_u16() == 401 && attempt == 0 {
                self.forget_token().await;
                continue;
            }
            return decode(resp).await;
        }
        unreachable!("the loop returns on its second pass")
    }

    /// `POST /aa/collect/v1/events`: uploads one gzip batch file.
    pub async fn upload(
        &self,
        visitor_group: &str,
        idempotency_key: Option<&str>,
        upload_name: &str,
        body: bytes::Bytes,
    ) -> Result<FileRecord, ClientError> {
        self.send(|http| {
            let part = reqwest::multipart::Part::stream(body.clone())
                .file_name(upload_name.to_string())
                .mime_str("application/gzip")
                .expect("static mime type");
            let form = reqwest::multipart::Form::new().part("file", part);
            let mut req = http
                .post(format!("{}/aa/collect/v1/events", self.creds.url))
                .header("x-adobe-vgid", visitor_group)
                .multipart(form);
            if let Some(k) = idempotency_key {
                req = req.header("x-adobe-idempotency-key", k);
            }
            req
        })
        .await
    }

    /// `POST /aa/collect/v1/events/validate`: the server's verdict, valid
    /// (200, [`Validation::is_valid`]) or not (400); other statuses are errors.
    pub async fn validate(
        &self,
        upload_name: &str,
        body: bytes::Bytes,
    ) -> Result<Validation, ClientError> {
        self.validate_with(upload_name, body, false).await
    }

    /// [`ApiClient::validate`], with the impact preview
    /// (`?preview=true`, [`Validation::preview`]) when `preview` is set.
    pub async fn validate_with(
        &self,
        upload_name: &str,
        body: bytes::Bytes,
        preview: bool,
    ) -> Result<Validation, ClientError> {
        let query = if preview { "?preview=true" } else { "" };
        for attempt in 0..2 {
            let token = self.token().await?;
            let part =
                reqwest::multipart::Part::stream(body.clone()).file_name(upload_name.to_string());
            let resp = self
                .http
                .post(format!(
                    "{}/aa/collect/v1/events/validate{query}",
                    self.creds.url
                ))
                .bearer_auth(&token)
                .header("x-api-key", &self.creds.client_id)
                .multipart(reqwest::multipart::Form::new().part("file", part))
                .send()
                .await
                .map_err(network)?;
            match resp.status().as_u16() {
                401 if attempt == 0 => {
                    self.forget_token().await;
                    continue;
                }
                200 | 400 => {
                    let bytes = resp.bytes().await.map_err(network)?;
                    return serde_json::from_slice(&bytes)
                        .map_err(|e| ClientError::Decode(e.to_string()));
                }
                _ => return Err(http_error(resp).await),
            }
        }
        unreachable!("the loop returns on its second pass")
    }

    /// `GET /aa/collect/v1/events/key/{key}`; `None` when unknown.
    pub async fn by_key(&self, key: &str) -> Result<Option<FileRecord>, ClientError> {
        let path = format!(
            "{}/aa/collect/v1/events/key/{}",
            self.creds.url,
            percent_encode(key)
        );
        not_found_is_none(self.send(|http| http.get(&path)).await)
    }

    /// `GET /aa/collect/v1/events/{file_id}`; `None` when unknown.
    pub async fn by_id(&self, file_id: &str) -> Result<Option<FileRecord>, ClientError> {
        let path = format!(
            "{}/aa/collect/v1/events/{}",
            self.creds.url,
            percent_encode(file_id)
        );
        not_found_is_none(self.send(|http| http.get(&path)).await)
    }

    /// `GET /aa/collect/v1/events?vgid=&status=&limit=&cursor=`.
    pub async fn list(
        &self,
        visitor_group: Option<&str>,
        status: Option<&str>,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<FileList, ClientError> {
        let mut q: Vec<(&str, String)> = Vec::new();
        if let Some(v) = visitor_group {
            q.push(("vgid", v.to_string()));
        }
        if let Some(s) = status {
            q.push(("status", s.to_string()));
        }
        if let Some(l) = limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(c) = cursor {
            q.push(("cursor", c.to_string()));
        }
        let url = format!("{}/aa/collect/v1/events", self.creds.url);
        self.send(|http| http.get(&url).query(&q)).await
    }

    /// `GET /aa/collect/v1/groups/{vgid}`: a visitor group's state, queue,
    /// file in progress, last error and actions; `None` for a group the
    /// company never used.
    pub async fn group(&self, vgid: &str) -> Result<Option<GroupView>, ClientError> {
        let url = format!(
            "{}/aa/collect/v1/groups/{}",
            self.creds.url,
            percent_encode(vgid)
        );
        not_found_is_none(self.send(|http| http.get(&url)).await)
    }

    /// `POST /aa/collect/v1/groups/{vgid}/{pause|resume|cancel}`: the group
    /// after the action; `None` for a group the company never used.
    pub async fn group_action(
        &self,
        vgid: &str,
        action: GroupAction,
    ) -> Result<Option<GroupView>, ClientError> {
        let url = format!(
            "{}/aa/collect/v1/groups/{}/{}",
            self.creds.url,
            percent_encode(vgid),
            action.as_str()
        );
        not_found_is_none(self.send(|http| http.post(&url)).await)
    }

    /// `GET /api/v1/report-suites/{rsid}/report`: a report over the suite's
    /// processed hits.
    pub async fn report(&self, rsid: &str, query: &ReportQuery) -> Result<Report, ClientError> {
        let q = query.pairs();
        let url = format!(
            "{}/api/v1/report-suites/{}/report",
            self.creds.url,
            percent_encode(rsid)
        );
        self.send(|http| http.get(&url).query(&q)).await
    }

    /// `GET /aa/collect/v1/events/{file_id}/rejects`: the reject report as CSV.
    pub async fn rejects(&self, file_id: &str) -> Result<String, ClientError> {
        let url = format!(
            "{}/aa/collect/v1/events/{}/rejects",
            self.creds.url,
            percent_encode(file_id)
        );
        let token = self.token().await?;
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&token)
            .header("x-api-key", &self.creds.client_id)
            .send()
            .await
            .map_err(network)?;
        if !resp.status().is_success() {
            return Err(http_error(resp).await);
        }
        resp.text().await.map_err(network)
    }
}

fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn not_found_is_none<T>(r: Result<T, ClientError>) -> Result<Option<T>, ClientError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(ClientError::Http { status: 404, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn http_error(resp: reqwest::Response) -> ClientError {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or(text);
    ClientError::Http {
        status,
        message,
        retry_after,
    }
}

async fn decode<T: for<'de> Deserialize<'de>>(resp: reqwest::Response) -> Result<T, ClientError> {
    if !resp.status().is_success() {
        return Err(http_error(resp).await);
    }
    let bytes = resp.bytes().await.map_err(network)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ClientError::Decode(format!(
            "{e}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        ))
    })
}
