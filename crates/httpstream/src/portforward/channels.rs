//! Port forwarding over the WebSocket channel protocol
//! (`portforward/websocket.go`, the framing of `httpstream/wsstream`): the
//! ports come from the `port` query parameters; port *i* gets data channel
//! `2i` and error channel `2i+1`, and the first message on each is the port
//! as two little-endian bytes. Every message starts with its channel: a byte
//! (`v4.channel.k8s.io`, or no subprotocol) or an ASCII digit before base64
//! text (`v4.base64.channel.k8s.io`). The connection ends when every port's
//! forwarding has ended.

use super::{copy, parse_port, Dial, Target};
use base64::Engine;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub const V4_BINARY: &str = "v4.channel.k8s.io";
pub const V4_BASE64: &str = "v4.base64.channel.k8s.io";

/// How channel messages are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Binary,
    Base64,
}

/// `wsstream` negotiation: the first protocol the client offers that is
/// served; no protocol at all means binary framing. `Err` lists what is served.
pub fn negotiate(offered: &[String]) -> Result<(Option<&'static str>, Framing), String> {
    if offered.is_empty() {
        return Ok((None, Framing::Binary));
    }
    for p in offered {
        match p.as_str() {
            V4_BINARY => return Ok((Some(V4_BINARY), Framing::Binary)),
            V4_BASE64 => return Ok((Some(V4_BASE64), Framing::Base64)),
            _ => {}
        }
    }
    Err(format!("requested protocol(s) are not supported: {offered:?}; supports [\"{V4_BINARY}\" \"{V4_BASE64}\"]"))
}

/// `NewV4Options`: the ports of a WebSocket port-forward request, from its
/// `port` query values (each may be a comma-separated list).
pub fn ports_from_query(values: &[String]) -> Result<Vec<u16>, String> {
    if values.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    let mut ports = Vec::new();
    for v in values {
        if v.is_empty() {
            return Err("query parameter \"port\" cannot be empty".into());
        }
        for p in v.split(',') {
            ports.push(parse_port(p).map_err(|_| format!("unable to parse {v:?} as a port: invalid syntax"))?);
        }
    }
    Ok(ports)
}

fn encode(framing: Framing, channel: usize, data: &[u8]) -> Message {
    match framing {
        Framing::Binary => {
            let mut v = Vec::with_capacity(data.len() + 1);
            v.push(channel as u8);
            v.extend_from_slice(data);
            Message::Binary(v.into())
        }
        Framing::Base64 => {
            let mut s = String::with_capacity(data.len() * 4 / 3 + 4);
            s.push(char::from(b'0'.wrapping_add(channel as u8)));
            base64::engine::general_purpose::STANDARD.encode_string(data, &mut s);
            Message::Text(s.into())
        }
    }
}

fn decode(framing: Framing, msg: Message) -> Option<(usize, Bytes)> {
    match (framing, msg) {
        (Framing::Binary, Message::Binary(b)) if !b.is_empty() => Some((usize::from(b[0]), b.slice(1..))),
        (Framing::Base64, Message::Text(t)) if !t.is_empty() => {
            let ch = usize::from(t.as_bytes()[0].checked_sub(b'0')?);
            let data = base64::engine::general_purpose::STANDARD.decode(&t.as_bytes()[1..]).ok()?;
            Some((ch, Bytes::from(data)))
        }
        _ => None,
    }
}

/// Serve port forwarding for `ports` on an accepted WebSocket.
pub async fn serve<S>(ws: WebSocketStream<S>, ports: Vec<u16>, framing: Framing, target: Target, dial: Dial)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            let last = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || last {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let (closed_tx, closed_rx) = watch::channel(false);
    let mut inbound = Vec::with_capacity(ports.len());
    let mut tasks = JoinSet::new();
    for (i, &port) in ports.iter().enumerate() {
        let (data_ch, error_ch) = (2 * i, 2 * i + 1);
        for ch in [data_ch, error_ch] {
            let _ = out_tx.send(encode(framing, ch, &port.to_le_bytes())).await;
        }
        let (tx, rx) = mpsc::channel::<Bytes>(32);
        inbound.push(tx);
        let (out, target, dial, mut closed) = (out_tx.clone(), target.clone(), dial.clone(), closed_rx.clone());
        tasks.spawn(async move {
            match dial(port).await {
                Ok(pod) => {
                    let send = |chunk: Vec<u8>| {
                        let out = out.clone();
                        async move { out.send(encode(framing, data_ch, &chunk)).await.is_ok() }
                    };
                    copy::pump(pod, rx, send, async move {
                        let _ = closed.wait_for(|c| *c).await;
                    })
                    .await;
                }
                Err(e) => {
                    let msg = target.forwarding_error(port, &e);
                    tracing::info!(%msg, "port forward");
                    let _ = out.send(encode(framing, error_ch, msg.as_bytes())).await;
                }
            }
        });
    }
    let read = async {
        while let Some(Ok(msg)) = source.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            // Data channels only; anything else is ignored as wsstream does.
            if let Some((ch, data)) = decode(framing, msg) {
                if ch % 2 == 0 {
                    if let Some(tx) = inbound.get(ch / 2) {
                        let _ = tx.send(data).await;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = read => {
            let _ = closed_tx.send(true);
            while tasks.join_next().await.is_some() {}
        }
        _ = async { while tasks.join_next().await.is_some() {} } => {}
    }
    let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
    let _ = out_tx.send(Message::Close(Some(close))).await;
    drop(out_tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_as_the_kubelet_parses_them() {
        assert_eq!(ports_from_query(&["80".into(), "81,82".into()]).unwrap(), vec![80, 81, 82]);
        assert_eq!(ports_from_query(&[]).unwrap_err(), "query parameter \"port\" is required");
        assert_eq!(ports_from_query(&["".into()]).unwrap_err(), "query parameter \"port\" cannot be empty");
        assert_eq!(ports_from_query(&["x".into()]).unwrap_err(), "unable to parse \"x\" as a port: invalid syntax");
        assert!(ports_from_query(&["0".into()]).is_err());
    }

    #[test]
    fn negotiation_and_framing() {
        assert_eq!(negotiate(&[]).unwrap(), (None, Framing::Binary));
        assert_eq!(negotiate(&["x".into(), V4_BASE64.into()]).unwrap(), (Some(V4_BASE64), Framing::Base64));
        assert!(negotiate(&["v5.channel.k8s.io".into()]).is_err());
        for f in [Framing::Binary, Framing::Base64] {
            assert_eq!(decode(f, encode(f, 3, b"\x50\x00")), Some((3, Bytes::from_static(b"\x50\x00"))));
        }
        assert_eq!(encode(Framing::Base64, 1, b"hi"), Message::Text("1aGk=".into()));
    }
}
