//! Port forwarding end to end on loopback: a client speaking SPDY frames (as
//! kubectl's spdystream does) or WebSocket channels (as the Python client
//! does), the server of this crate, and a TCP echo server as the "pod".

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use httpstream::portforward::{channels, over_spdy, Dial, Target};
use httpstream::spdy::compression::HeaderCompressor;
use httpstream::spdy::frame::{rst, Frame, FrameReader, Headers, FLAG_FIN};
use httpstream::tunnel;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const T: Duration = Duration::from_secs(10);

/// An echo server that upper-cases what it gets; returns its port.
async fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n].to_ascii_uppercase()).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    port
}

/// Dials 127.0.0.1 for `open` and refuses every other port, as a pod with one
/// listening port would.
fn dial_only(open: u16) -> Dial {
    Arc::new(move |port| {
        Box::pin(async move {
            if port != open {
                return Err(format!("failed to connect to localhost:{port}: connection refused"));
            }
            TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())
        })
    })
}

fn target() -> Target {
    Target { pod: "sandbox-1".into(), uid: "".into() }
}

fn headers(kind: &str, port: &str, id: &str) -> Headers {
    let mut h = Headers::default();
    h.set("streamType", kind);
    h.set("port", port);
    h.set("requestID", id);
    h
}

/// The client end of a SPDY session.
struct Client<R, W> {
    frames: FrameReader<R>,
    w: W,
    z: HeaderCompressor,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Client<R, W> {
    fn new(r: R, w: W) -> Self {
        Self { frames: FrameReader::new(r), w, z: HeaderCompressor::new().unwrap() }
    }

    async fn send(&mut self, f: Frame) {
        let mut b = Vec::new();
        f.encode(&mut self.z, &mut b).unwrap();
        self.w.write_all(&b).await.unwrap();
        self.w.flush().await.unwrap();
    }

    async fn next(&mut self) -> Option<Frame> {
        tokio::time::timeout(T, self.frames.next()).await.expect("a frame in time").unwrap()
    }

    async fn open(&mut self, id: u32, h: Headers) {
        self.send(Frame::SynStream { stream_id: id, associated_to: 0, priority: 0, flags: 0, headers: h }).await;
    }

    /// Frames for `stream` until its FIN, concatenated (other frames skipped).
    async fn read_to_fin(&mut self, stream: u32) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            match self.next().await {
                Some(Frame::Data { stream_id, flags, data }) if stream_id == stream => {
                    out.extend_from_slice(&data);
                    if flags & FLAG_FIN != 0 {
                        return out;
                    }
                }
                Some(_) => {}
                None => panic!("session ended before stream {stream} finished"),
            }
        }
    }
}

/// kubectl's sequence for one connection: error stream (closed at once), data
/// stream, bytes both ways, then the client's FIN.
async fn forward_one<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(c: &mut Client<R, W>, port: u16, base: u32) {
    let (err_id, data_id) = (base, base + 2);
    let rid = base.to_string();
    c.open(err_id, headers("error", &port.to_string(), &rid)).await;
    assert!(matches!(c.next().await, Some(Frame::SynReply { stream_id, .. }) if stream_id == err_id));
    c.send(Frame::Data { stream_id: err_id, flags: FLAG_FIN, data: Bytes::new() }).await;
    c.open(data_id, headers("data", &port.to_string(), &rid)).await;
    assert!(matches!(c.next().await, Some(Frame::SynReply { stream_id, .. }) if stream_id == data_id));
    c.send(Frame::Data { stream_id: data_id, flags: 0, data: Bytes::from_static(b"hello ") }).await;
    c.send(Frame::Data { stream_id: data_id, flags: 0, data: Bytes::from_static(b"pod") }).await;
    let mut got = Vec::new();
    while got.len() < 9 {
        match c.next().await {
            Some(Frame::Data { stream_id, data, .. }) if stream_id == data_id => got.extend_from_slice(&data),
            other => panic!("expected data on stream {data_id}, got {other:?}"),
        }
    }
    assert_eq!(got, b"HELLO POD");
    // The client's half ends; the server half-closes the pod, which closes, so
    // both streams end (data first, then the empty error stream).
    c.send(Frame::Data { stream_id: data_id, flags: FLAG_FIN, data: Bytes::new() }).await;
    assert_eq!(c.read_to_fin(data_id).await, b"");
    assert_eq!(c.read_to_fin(err_id).await, b"", "no error for a good connection");
}

#[tokio::test]
async fn spdy_forwards_connections_and_reports_errors() {
    let port = echo_server().await;
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    tokio::spawn(over_spdy::serve(server_io, target(), dial_only(port)));
    let (r, w) = tokio::io::split(client_io);
    let mut c = Client::new(r, w);

    forward_one(&mut c, port, 1).await;
    forward_one(&mut c, port, 5).await;

    // Pings from the client come back.
    c.send(Frame::Ping { id: 1 }).await;
    assert_eq!(c.next().await, Some(Frame::Ping { id: 1 }));

    // A closed port: the error stream says why, in the kubelet's words.
    c.open(9, headers("error", "9", "9")).await;
    c.next().await;
    c.open(11, headers("data", "9", "9")).await;
    c.next().await;
    let msg = String::from_utf8(c.read_to_fin(9).await).unwrap();
    assert_eq!(
        msg,
        "error forwarding port 9 to pod sandbox-1, uid : failed to connect to localhost:9: connection refused"
    );

    // Streams with bad headers are refused with RST_STREAM; the session goes on.
    let mut no_port = Headers::default();
    no_port.set("streamType", "data");
    c.open(13, no_port).await;
    assert_eq!(c.next().await, Some(Frame::RstStream { stream_id: 13, status: rst::CANCEL }));
    c.open(15, headers("bogus", "80", "15")).await;
    assert_eq!(c.next().await, Some(Frame::RstStream { stream_id: 15, status: rst::CANCEL }));
    // Ids must increase.
    c.open(3, headers("data", "80", "3")).await;
    assert_eq!(c.next().await, Some(Frame::RstStream { stream_id: 3, status: rst::PROTOCOL_ERROR }));
    forward_one(&mut c, port, 17).await;
}

#[tokio::test]
async fn a_reset_from_the_client_closes_the_pod_connection() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    tokio::spawn(over_spdy::serve(server_io, target(), dial_only(port)));
    let (r, w) = tokio::io::split(client_io);
    let mut c = Client::new(r, w);
    c.open(1, headers("error", &port.to_string(), "0")).await;
    c.next().await;
    c.open(3, headers("data", &port.to_string(), "0")).await;
    c.next().await;
    let (mut pod, _) = tokio::time::timeout(T, l.accept()).await.unwrap().unwrap();
    c.send(Frame::RstStream { stream_id: 3, status: rst::CANCEL }).await;
    // The pod's socket sees the end although neither side sent FIN on it.
    let mut buf = [0u8; 8];
    assert_eq!(tokio::time::timeout(T, pod.read(&mut buf)).await.unwrap().unwrap(), 0);
}

#[tokio::test]
async fn spdy_tunnelled_in_websocket_messages() {
    let port = echo_server().await;
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server_ws = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
    tokio::spawn(over_spdy::serve(tunnel::byte_stream(server_ws), target(), dial_only(port)));
    let client_ws = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
    let mut c = {
        let io = tunnel::byte_stream(client_ws);
        let (r, w) = tokio::io::split(io);
        Client::new(r, w)
    };
    forward_one(&mut c, port, 1).await;
    forward_one(&mut c, port, 5).await;
}

#[tokio::test]
async fn websocket_channels_forward_each_port() {
    let port = echo_server().await;
    for framing in [channels::Framing::Binary, channels::Framing::Base64] {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server_ws = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        tokio::spawn(channels::serve(server_ws, vec![port, 9], framing, target(), dial_only(port)));
        let mut ws = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let decode = |m: Message| -> (u8, Vec<u8>) {
            match (framing, m) {
                (channels::Framing::Binary, Message::Binary(b)) => (b[0], b[1..].to_vec()),
                (channels::Framing::Base64, Message::Text(t)) => {
                    use base64::Engine;
                    let data = base64::engine::general_purpose::STANDARD.decode(&t.as_bytes()[1..]).unwrap();
                    (t.as_bytes()[0] - b'0', data)
                }
                (_, other) => panic!("unexpected {other:?}"),
            }
        };
        macro_rules! next {
            () => {
                decode(tokio::time::timeout(T, ws.next()).await.unwrap().unwrap().unwrap())
            };
        }
        // The port (little-endian) opens each channel: 0, 1 for the first port, 2, 3 for the second.
        let mut opening = Vec::new();
        for _ in 0..4 {
            opening.push(next!());
        }
        let le = |p: u16| p.to_le_bytes().to_vec();
        assert_eq!(opening, vec![(0, le(port)), (1, le(port)), (2, le(9)), (3, le(9))]);
        // The second port is closed: its error channel says so.
        let (ch, msg) = next!();
        assert_eq!(
            (ch, String::from_utf8(msg).unwrap().as_str()),
            (3, "error forwarding port 9 to pod sandbox-1, uid : failed to connect to localhost:9: connection refused")
        );
        let hello = match framing {
            channels::Framing::Binary => Message::Binary(Bytes::from_static(b"\x00hello")),
            channels::Framing::Base64 => Message::Text("0aGVsbG8=".into()),
        };
        ws.send(hello).await.unwrap();
        assert_eq!(next!(), (0, b"HELLO".to_vec()));
        // Closing the WebSocket ends the forwarding.
        ws.close(None).await.unwrap();
    }
}
