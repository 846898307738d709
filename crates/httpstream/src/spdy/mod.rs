//! SPDY/3.1, the stream multiplexing under kubectl's `port-forward`, `exec`
//! and `attach` (`k8s.io/apimachinery/pkg/util/httpstream/spdy`, which runs
//! `moby/spdystream`).
//!
//! - [`frame`]: the frames and their wire layout;
//! - [`compression`]: zlib header blocks with the SPDY dictionary ([`dictionary`]);
//! - [`session`]: a server session: accepted streams with a reader and a writer.

pub mod compression;
pub mod dictionary;
pub mod frame;
pub mod session;

pub use frame::{Frame, Headers};
pub use session::{serve, Incoming, Stream, StreamClosed, StreamWriter};

/// Why a session could not go on.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("reading the SPDY session: {0}")]
    Io(#[from] std::io::Error),
    #[error("SPDY header compression: {0}")]
    Compression(String),
    #[error("malformed SPDY frame: {0}")]
    Malformed(String),
}

/// `Upgrade:` value of a SPDY/3.1 upgrade (`httpstream/spdy` `HeaderSpdy31`).
pub const UPGRADE: &str = "SPDY/3.1";
