use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong while starting or driving a test server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("rkube server exited before it was ready ({status}); logs:\n{logs}")]
    Exited { status: std::process::ExitStatus, logs: String },
    #[error("rkube server not ready after {timeout:?} ({path} never appeared); logs:\n{logs}")]
    NotReady { timeout: Duration, path: PathBuf, logs: String },
    #[error("rkube never printed {needle:?} within {timeout:?}; logs:\n{logs}")]
    LogTimeout { needle: String, timeout: Duration, logs: String },
    #[error("bad kubeconfig {path}: {reason}")]
    Kubeconfig { path: PathBuf, reason: String },
    #[error("the server is not running")]
    NotRunning,
    /// A [`Sandbox`](crate::Sandbox) cannot be built or used (not root, no `ip`,
    /// bad node index, ...).
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// A test etcd cluster cannot be started or is not healthy.
    #[error("etcd: {0}")]
    Etcd(String),
    /// A command run by the sandbox failed (or ran into its timeout).
    #[error("`{command}` failed ({status}):\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}")]
    Command { command: String, status: std::process::ExitStatus, stdout: String, stderr: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}
