/// Errors of the DNS servers and their upstream exchanges.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("DNS message: {0}")]
    Proto(String),
    #[error("upstream: {0}")]
    Upstream(String),
    #[error("kubernetes: {0}")]
    Kube(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
