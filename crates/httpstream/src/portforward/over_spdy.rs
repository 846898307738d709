//! Port forwarding over a SPDY session (`portforward/httpstream.go`): streams
//! carry `streamType` (`error` or `data`), `port` and `requestID`; once both
//! streams of a request are open the pod's port is dialled and the data
//! stream carries the bytes. A failure is written to the error stream.

use super::{copy, parse_port, Dial, Target, HEADER_PORT, HEADER_REQUEST_ID, HEADER_STREAM_TYPE};
use super::{STREAM_TYPE_DATA, STREAM_TYPE_ERROR};
use crate::spdy::{self, Headers, Stream, StreamWriter};
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// How long the second stream of a pair may take (the kubelet's
/// `--streaming-connection-idle-timeout` aside, `DefaultStreamCreationTimeout`).
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// `httpStreamReceived`: the checks a new stream must pass to be accepted.
pub fn check_stream(h: &Headers) -> Result<(), String> {
    let port =
        h.get(HEADER_PORT).filter(|p| !p.is_empty()).ok_or_else(|| format!("{HEADER_PORT:?} header is required"))?;
    parse_port(port)?;
    match h.get(HEADER_STREAM_TYPE) {
        None | Some("") => Err(format!("{HEADER_STREAM_TYPE:?} header is required")),
        Some(STREAM_TYPE_ERROR | STREAM_TYPE_DATA) => Ok(()),
        Some(other) => Err(format!("invalid stream type {other:?}")),
    }
}

/// `httpStreamHandler.requestID`: the header, or for clients too old to send
/// one, a guess from the stream id (error = id, data = id - 2).
fn request_id(s: &Stream) -> String {
    match s.headers().get(HEADER_REQUEST_ID) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ if s.headers().get(HEADER_STREAM_TYPE) == Some(STREAM_TYPE_DATA) => s.id().saturating_sub(2).to_string(),
        _ => s.id().to_string(),
    }
}

#[derive(Default)]
struct Pair {
    data: Option<Stream>,
    error: Option<StreamWriter>,
}

/// Serve port forwarding on an upgraded SPDY connection until it ends.
pub async fn serve<IO>(io: IO, target: Target, dial: Dial)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let mut incoming = spdy::serve(io, check_stream);
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let (timeout_tx, mut timeouts) = mpsc::unbounded_channel::<String>();
    loop {
        let stream = tokio::select! {
            s = incoming.next() => match s { Some(s) => s, None => break },
            Some(id) = timeouts.recv() => {
                // `monitorStreamPair`: the pair never completed.
                if let Some(p) = pairs.remove(&id) {
                    if let Some(err) = p.error {
                        let _ = err.write(format!("(request={id}) timed out waiting for streams").as_bytes()).await;
                        let _ = err.close().await;
                    }
                }
                continue;
            }
        };
        let id = request_id(&stream);
        let created = !pairs.contains_key(&id);
        let pair = pairs.entry(id.clone()).or_default();
        if created {
            let (tx, id) = (timeout_tx.clone(), id.clone());
            tokio::spawn(async move {
                tokio::time::sleep(STREAM_CREATION_TIMEOUT).await;
                let _ = tx.send(id);
            });
        }
        let is_error = stream.headers().get(HEADER_STREAM_TYPE) == Some(STREAM_TYPE_ERROR);
        let duplicate = if is_error { pair.error.is_some() } else { pair.data.is_some() };
        if duplicate {
            let what = if is_error { "error" } else { "data" };
            let msg = format!("error processing stream for request {id}: {what} stream already assigned");
            tracing::warn!(%msg, "port forward");
            if let Some(err) = &pair.error {
                let _ = err.write(msg.as_bytes()).await;
            }
            continue;
        }
        if is_error {
            pair.error = Some(stream.into_writer());
        } else {
            pair.data = Some(stream);
        }
        if pair.error.is_some() && pair.data.is_some() {
            if let Some(Pair { data: Some(data), error: Some(error) }) = pairs.remove(&id) {
                tokio::spawn(forward(data, error, target.clone(), dial.clone()));
            }
        }
    }
}

/// `httpStreamHandler.portForward` for one complete pair.
async fn forward(data: Stream, error: StreamWriter, target: Target, dial: Dial) {
    // check_stream accepted the header, so it parses.
    let port = data.headers().get(HEADER_PORT).and_then(|p| parse_port(p).ok()).unwrap_or_default();
    let (incoming, writer) = data.into_parts();
    match dial(port).await {
        Ok(pod) => {
            let cancel = writer.clone();
            copy::pump(
                pod,
                incoming,
                |chunk| {
                    let w = writer.clone();
                    async move { w.write(&chunk).await.is_ok() }
                },
                async move { cancel.cancelled().await },
            )
            .await;
        }
        Err(e) => {
            let msg = target.forwarding_error(port, &e);
            tracing::info!(%msg, "port forward");
            let _ = error.write(msg.as_bytes()).await;
        }
    }
    let _ = writer.close().await;
    let _ = error.close().await;
}
