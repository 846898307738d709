use crate::Revision;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },
    #[error("key {key:?} not found")]
    NotFound { key: String },
    #[error("key {key:?} was modified: expected revision {expected}, found {actual}")]
    Conflict { key: String, expected: Revision, actual: Revision },
    #[error("revision {requested} has been compacted (oldest available: {compacted})")]
    Compacted { requested: Revision, compacted: Revision },
    #[error("revision {requested} is in the future (current: {current})")]
    FutureRevision { requested: Revision, current: Revision },
    #[error("watcher fell too far behind and was closed")]
    WatcherLagged,
    #[error("sqlite {context}: {source}")]
    Sqlite {
        context: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("store {context}: {message}")]
    Backend { context: &'static str, message: String },
    /// The backend did not answer in time or has no quorum; worth retrying.
    #[error("store {context}: unavailable: {message}")]
    Unavailable { context: &'static str, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;
