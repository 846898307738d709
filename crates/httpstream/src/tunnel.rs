//! SPDY tunnelled over WebSocket, as kubectl 1.31+ sends `port-forward`
//! (`client-go/tools/portforward/tunneling_connection.go`): the subprotocol is
//! `SPDY/3.1+<protocol>`, and the binary messages, taken in order, are the
//! SPDY byte stream. A text message is an error; a close message ends it.

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Prefix of a tunnelling subprotocol (`constants.WebsocketsSPDYTunnelingPrefix`).
pub const PREFIX: &str = "SPDY/3.1+";

/// Bytes buffered between the WebSocket and the byte-stream side.
const BUFFER: usize = 64 * 1024;

/// Turn a WebSocket into a byte stream: what is written to the returned end is
/// sent as binary messages, and binary messages received can be read from it.
/// The bridge runs until either side ends.
pub fn byte_stream<S>(ws: WebSocketStream<S>) -> DuplexStream
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(BUFFER);
    tokio::spawn(bridge(ws, ours));
    theirs
}

async fn bridge<S>(ws: WebSocketStream<S>, io: DuplexStream)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = ws.split();
    let (mut rd, mut wr) = tokio::io::split(io);
    let inbound = async {
        while let Some(msg) = source.next().await {
            match msg {
                Ok(Message::Binary(b)) => {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(Message::Text(_)) => {
                    tracing::debug!("text message on a SPDY tunnel: ending it");
                    break;
                }
                Ok(_) => {} // ping/pong: tungstenite answers pings itself
            }
        }
        let _ = wr.shutdown().await;
    };
    let outbound = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                        return;
                    }
                }
            }
        }
        let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
        let _ = sink.send(Message::Close(Some(close))).await;
        let _ = sink.close().await;
    };
    // Whichever side ends first ends the tunnel.
    tokio::select! {
        _ = inbound => {}
        _ = outbound => {}
    }
}
