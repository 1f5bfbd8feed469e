//! A server on `127.0.0.1:0` in a temporary data dir, for tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{AppState, Config, Credentials, Server};

/// A running test server.
pub struct TestServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// The default client's credentials (read from `credentials.json`).
    pub credentials: Credentials,
    /// The server's state (direct store access for assertions).
    pub state: AppState,
    dir: Option<tempfile::TempDir>,
    data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// The test configuration: port 0, rate limit off, given data dir.
pub fn test_config(data_dir: &Path) -> Config {
    let mut c = Config {
        data_dir: data_dir.to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Config::default()
    };
    c.rate_limit.enabled = false;
    c.shutdown_grace_secs = 10;
    c
}

impl TestServer {
    /// Starts on a fresh temp dir; `tweak` adjusts the configuration.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> anyhow::Result<TestServer> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().to_path_buf();
        Self::start_in(Some(dir), &path, tweak).await
    }

    /// Starts on an existing data dir (restart tests).
    pub async fn start_in(
        dir: Option<tempfile::TempDir>,
        data_dir: &Path,
        tweak: impl FnOnce(&mut Config),
    ) -> anyhow::Result<TestServer> {
        let mut config = test_config(data_dir);
        tweak(&mut config);
        let server = Server::bind(config).await?;
        let addr = server.local_addr();
        let state = server.state().clone();
        let creds: Credentials =
            serde_json::from_slice(&std::fs::read(data_dir.join("credentials.json"))?)?;
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Ok(TestServer {
            addr,
            credentials: creds,
            state,
            dir,
            data_dir: data_dir.to_path_buf(),
            stop: Some(tx),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops gracefully; returns the temp dir (kept alive for a restart).
    pub async fn stop(mut self) -> anyhow::Result<Option<tempfile::TempDir>> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(self.dir.take())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
