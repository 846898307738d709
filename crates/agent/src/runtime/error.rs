//! The error type of the pod runtime.

use std::io;

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A system call or file operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// An external command (`ip`, `modprobe`) failed.
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    /// The caller's spec or config is unusable.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// No sandbox with this pod uid exists on this node.
    #[error("no sandbox for pod {0}")]
    SandboxNotFound(String),
    /// The pod CIDR has no free address left.
    #[error("no free IP address left in {0}")]
    IpExhausted(ipnet::Ipv4Net),
    /// `argv[0]` was not found (mirrors the runtime's "executable file not found in $PATH").
    #[error("exec: \"{0}\": executable file not found in $PATH")]
    ExecutableNotFound(String),
    /// A container of this name is running in the pod already.
    #[error("container {0} is already running")]
    AlreadyRunning(String),
    /// The pod infra process did not come up.
    #[error("pod infra process: {0}")]
    Infra(String),
    /// A container shim did not report its container started.
    #[error("container shim: {0}")]
    Shim(String),
    /// Another runtime holds the data dir.
    #[error("{0} is in use by another rkube runtime")]
    Locked(String),
    /// A process did not end in time.
    #[error("timed out: {0}")]
    Timeout(String),
}

/// `map_err` helper: wrap an `io::Error` with what was being done.
pub(crate) fn io_ctx(context: impl Into<String>) -> impl FnOnce(io::Error) -> RuntimeError {
    let context = context.into();
    move |source| RuntimeError::Io { context, source }
}
