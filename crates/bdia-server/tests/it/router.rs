//! Router-level tests: requests sent straight to the router
//! (`tower::ServiceExt::oneshot`, no socket) over a state in a temp data
//! dir, checking how each refusal is answered: status and JSON body.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use bdia_server::testing::test_config;
use bdia_server::{AppState, Config, Credentials, Server};
use serde_json::Value;
use tower::ServiceExt;

use crate::common::{bare_multipart, small_file};

/// A bound server's state (the server itself holds the data dir's lock).
struct App {
    state: AppState,
    credentials: Credentials,
    /// A valid access token of the default client.
    token: String,
    _server: Server,
    _dir: tempfile::TempDir,
}

async fn app_with(tweak: impl FnOnce(&mut Config)) -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    tweak(&mut config);
    let server = Server::bind(config).await.unwrap();
    let state = server.state().clone();
    let credentials = server.first_start_credentials().unwrap().clone();
    let client = state
        .store
        .get_client(&credentials.client_id)
        .await
        .unwrap()
        .unwrap();
    let token = state.tokens.issue(&client).unwrap().access_token;
    App {
        state,
        credentials,
        token,
        _server: server,
        _dir: dir,
    }
}

async fn app() -> App {
    app_with(|_| {}).await
}

impl App {
    fn router(&self) -> Router {
        bdia_server::router(self.state.clone())
    }

    /// A request with the default client's token and api key.
    fn authed(&self, method: Method, uri: &str) -> axum::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header("x-api-key", &self.credentials.client_id)
    }

    /// Sends `req`; the status and the JSON body (every answer here is JSON).
    async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.router().oneshot(req).await.unwrap();
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(content_type, "application/json", "{status}");
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        (status, body)
    }

    async fn get_authed(&self, uri: &str) -> (StatusCode, Value) {
        self.send(self.authed(Method::GET, uri).body(Body::empty()).unwrap())
            .await
    }
}

fn get(uri: &str) -> axum::http::request::Builder {
    Request::builder().method(Method::GET).uri(uri)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_every_authenticated_route_is_401() {
    let a = app().await;
    for (method, uri) in [
        (Method::GET, "/aa/collect/v1/events"),
        (Method::POST, "/aa/collect/v1/events"),
        (Method::POST, "/aa/collect/v1/events/validate"),
        (Method::GET, "/aa/collect/v1/events/key/k"),
        (Method::GET, "/aa/collect/v1/events/f"),
        (Method::GET, "/aa/collect/v1/events/f/rejects"),
        (Method::POST, "/aa/collect/v1/groups/g/retry"),
        (Method::GET, "/api/v1/report-suites"),
        (Method::GET, "/api/v1/report-suites/rs/report"),
        (Method::GET, "/api/v1/groups"),
    ] {
        let req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let (status, body) = a.send(req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        assert_eq!(
            body,
            serde_json::json!({ "error": "Missing Authorization header" }),
            "{method} {uri}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_or_forged_token_is_401() {
    let a = app().await;
    let (status, body) = a
        .send(
            get("/aa/collect/v1/events")
                .header(header::AUTHORIZATION, "Basic abc")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "Authorization must be 'Bearer <token>'");

    let (status, body) = a
        .send(
            get("/aa/collect/v1/events")
                .header(header::AUTHORIZATION, "Bearer not.a.token")
                .header("x-api-key", &a.credentials.client_id)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "Invalid access token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_of_another_client_is_401_and_a_disabled_client_403() {
    let a = app().await;
    let (status, body) = a
        .send(
            get("/aa/collect/v1/events")
                .header(header::AUTHORIZATION, format!("Bearer {}", a.token))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "Missing x-api-key header");

    let (status, body) = a
        .send(
            get("/aa/collect/v1/events")
                .header(header::AUTHORIZATION, format!("Bearer {}", a.token))
                .header("x-api-key", "someone-else")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["error"],
        "x-api-key does not match the access token's client"
    );

    a.state
        .store
        .set_client_disabled(&a.credentials.client_id, true)
        .await
        .unwrap();
    let (status, body) = a.get_authed("/aa/collect/v1/events").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "This API client is disabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_are_404_and_other_methods_405_in_json() {
    let a = app().await;
    let (status, body) = a
        .send(get("/no/such/route").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, serde_json::json!({ "error": "Not found" }));

    let (status, body) = a
        .send(
            Request::builder()
                .method(Method::DELETE)
                .uri("/aa/collect/v1/events")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body, serde_json::json!({ "error": "Method not allowed" }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_path_parameters_are_400_naming_the_parameter() {
    let a = app().await;
    // `%FF` is not UTF-8: the path parameter cannot be read as text.
    for (method, uri, error) in [
        (
            Method::GET,
            "/aa/collect/v1/events/%FF",
            "Malformed file id",
        ),
        (
            Method::GET,
            "/aa/collect/v1/events/%FF/rejects",
            "Malformed file id",
        ),
        (
            Method::GET,
            "/aa/collect/v1/events/key/%FF",
            "Malformed key",
        ),
        (
            Method::POST,
            "/aa/collect/v1/groups/%FF/retry",
            "Malformed visitor group id",
        ),
        (
            Method::GET,
            "/api/v1/report-suites/%FF/report",
            "Malformed report suite id",
        ),
    ] {
        let req = a.authed(method.clone(), uri).body(Body::empty()).unwrap();
        let (status, body) = a.send(req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {uri}");
        assert_eq!(
            body,
            serde_json::json!({ "error": error }),
            "{method} {uri}"
        );
    }
    // The caller is checked before the path: 401 first.
    let (status, _) = a
        .send(
            get("/aa/collect/v1/events/%FF")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_parameters_are_400() {
    let a = app().await;
    let (status, body) = a.get_authed("/aa/collect/v1/events?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "limit must be 1..1000");
    let (status, body) = a.get_authed("/aa/collect/v1/events?status=DONE").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"],
        "status must be one of UPLOADED, REJECTED, PROCESSING, COMPLETE, ERROR, CANCELLED"
    );
    let (status, body) = a.get_authed("/aa/collect/v1/events?cursor=nonsense").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "Invalid cursor");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_files_and_suites_are_404() {
    let a = app().await;
    let (status, body) = a.get_authed("/aa/collect/v1/events/no-such-file").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "File not found");
    let (status, body) = a
        .get_authed("/api/v1/report-suites/no.such.suite/report")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "Report suite not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_the_size_limit_are_413() {
    let a = app_with(|c| c.limits.max_uncompressed_bytes = 1024).await;
    let boundary = "router-test-boundary";
    let file = small_file(200, "acme.prod");
    for uri in ["/aa/collect/v1/events", "/aa/collect/v1/events/validate"] {
        let req = a
            .authed(Method::POST, uri)
            .header("x-adobe-vgid", "g")
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(Body::from(bare_multipart(boundary, &file)))
            .unwrap();
        let (status, body) = a.send(req).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{uri}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("too large"),
            "{uri}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_without_multipart_body_or_group_is_400() {
    let a = app().await;
    let (status, body) = a
        .send(
            a.authed(Method::POST, "/aa/collect/v1/events")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "Missing x-adobe-vgid header");

    let (status, body) = a
        .send(
            a.authed(Method::POST, "/aa/collect/v1/events")
                .header("x-adobe-vgid", "g")
                .body(Body::from("not multipart"))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"],
        "Expected a multipart/form-data body with a 'file' part"
    );
}
