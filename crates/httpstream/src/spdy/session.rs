//! The server side of a SPDY/3.1 session, as `moby/spdystream` (which kubectl
//! and the kubelet use) behaves:
//! - the client opens streams (odd ids, increasing); each is checked by the
//!   caller's `accept` and answered with SYN_REPLY, or reset (CANCEL) when
//!   refused, as `httpstream/spdy/connection.go` `newSpdyStream` does;
//! - data frames go to the stream's reader in order; FLAG_FIN ends the peer's
//!   half, RST_STREAM ends both;
//! - PINGs from the client are echoed; SETTINGS and WINDOW_UPDATE are read and
//!   ignored (spdystream does no flow control either); GOAWAY or the end of the
//!   byte stream ends the session and every stream in it.

use super::frame::{rst, Frame, FrameReader, Headers, FLAG_FIN};
use super::SpdyError;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

/// Largest data frame this side writes.
const WRITE_CHUNK: usize = 32 * 1024;
/// Data frames queued for one stream's reader before the session waits.
const STREAM_QUEUE: usize = 32;

/// What the session keeps for an open stream.
struct Entry {
    /// `None` once the peer's half ended (FIN).
    data: Option<mpsc::Sender<Bytes>>,
    /// Set to `true` when the peer resets the stream; dropped when it closes.
    reset: watch::Sender<bool>,
    local_fin: bool,
}

type Table = Arc<Mutex<HashMap<u32, Entry>>>;

fn lock(t: &Table) -> MutexGuard<'_, HashMap<u32, Entry>> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// A stream the client opened.
pub struct Stream {
    id: u32,
    headers: Headers,
    incoming: mpsc::Receiver<Bytes>,
    writer: StreamWriter,
}

impl Stream {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The headers of the client's SYN_STREAM.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The next data the client sent; `None` once its half ended (FIN), the
    /// stream was reset or the session ended.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.incoming.recv().await
    }

    pub fn writer(&self) -> StreamWriter {
        self.writer.clone()
    }

    /// The reading half (what [`recv`](Self::recv) yields) and the writing half.
    pub fn into_parts(self) -> (mpsc::Receiver<Bytes>, StreamWriter) {
        (self.incoming, self.writer)
    }

    /// Keep only the writing half: data the client sends later is dropped.
    pub fn into_writer(self) -> StreamWriter {
        self.writer
    }
}

/// The writing half of a stream (cheap to clone).
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Frame>,
    reset: watch::Receiver<bool>,
}

/// The stream or its session is gone.
#[derive(Debug, thiserror::Error)]
#[error("stream {0} is closed")]
pub struct StreamClosed(pub u32);

impl StreamWriter {
    /// Send `data` as one or more data frames.
    pub async fn write(&self, data: &[u8]) -> Result<(), StreamClosed> {
        for chunk in data.chunks(WRITE_CHUNK) {
            self.send(Frame::Data { stream_id: self.id, flags: 0, data: Bytes::copy_from_slice(chunk) }).await?;
        }
        Ok(())
    }

    /// End this side's half of the stream (an empty data frame with FLAG_FIN,
    /// as spdystream's `Stream.Close`).
    pub async fn close(&self) -> Result<(), StreamClosed> {
        self.send(Frame::Data { stream_id: self.id, flags: FLAG_FIN, data: Bytes::new() }).await
    }

    /// Abort the stream in both directions (RST_STREAM CANCEL).
    pub async fn reset(&self) -> Result<(), StreamClosed> {
        self.send(Frame::RstStream { stream_id: self.id, status: rst::CANCEL }).await
    }

    /// Resolves when the client resets the stream, the stream is fully closed,
    /// or the session ends.
    pub async fn cancelled(&self) {
        let mut r = self.reset.clone();
        let _ = r.wait_for(|reset| *reset).await;
    }

    async fn send(&self, frame: Frame) -> Result<(), StreamClosed> {
        if *self.reset.borrow() {
            return Err(StreamClosed(self.id));
        }
        self.out.send(frame).await.map_err(|_| StreamClosed(self.id))
    }
}

/// The streams of a session, in the order the client opened them.
pub struct Incoming {
    streams: mpsc::Receiver<Stream>,
}

impl Incoming {
    /// The next accepted stream; `None` once the session ended.
    pub async fn next(&mut self) -> Option<Stream> {
        self.streams.recv().await
    }
}

/// Serve a SPDY/3.1 session on `io` (the byte stream after the HTTP upgrade).
/// `accept` sees each new stream's headers; an `Err` refuses the stream.
pub fn serve<IO, A>(io: IO, accept: A) -> Incoming
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
    A: Fn(&Headers) -> Result<(), String> + Send + 'static,
{
    let (r, w) = tokio::io::split(io);
    let table: Table = Arc::new(Mutex::new(HashMap::new()));
    let (out_tx, out_rx) = mpsc::channel::<Frame>(64);
    let (streams_tx, streams_rx) = mpsc::channel::<Stream>(16);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(write_loop(w, out_rx, stop_rx, table.clone()));
    tokio::spawn(async move {
        if let Err(e) = read_loop(r, accept, &table, &out_tx, &streams_tx).await {
            tracing::debug!(error = %e, "SPDY session ended");
        }
        // Every stream ends with the session: readers see the end, writers fail.
        lock(&table).clear();
        let _ = stop_tx.send(());
    });
    Incoming { streams: streams_rx }
}

async fn read_loop<R, A>(
    r: R,
    accept: A,
    table: &Table,
    out: &mpsc::Sender<Frame>,
    streams: &mpsc::Sender<Stream>,
) -> Result<(), SpdyError>
where
    R: AsyncRead + Unpin,
    A: Fn(&Headers) -> Result<(), String>,
{
    let mut frames = FrameReader::new(r);
    let mut last_stream_id = 0u32;
    while let Some(frame) = frames.next().await? {
        match frame {
            Frame::SynStream { stream_id, flags, headers, .. } => {
                // spdystream's checkStreamFrame: client ids are odd and increase.
                if stream_id % 2 == 0 || stream_id <= last_stream_id {
                    let _ = out.send(Frame::RstStream { stream_id, status: rst::PROTOCOL_ERROR }).await;
                    continue;
                }
                last_stream_id = stream_id;
                if let Err(why) = accept(&headers) {
                    tracing::warn!(stream = stream_id, %why, "stream rejected");
                    let _ = out.send(Frame::RstStream { stream_id, status: rst::CANCEL }).await;
                    continue;
                }
                let (data_tx, data_rx) = mpsc::channel(STREAM_QUEUE);
                let (reset_tx, reset_rx) = watch::channel(false);
                let remote_fin = flags & FLAG_FIN != 0;
                lock(table).insert(
                    stream_id,
                    Entry { data: (!remote_fin).then_some(data_tx), reset: reset_tx, local_fin: false },
                );
                // The reply goes out before anything the handler writes.
                let _ = out.send(Frame::SynReply { stream_id, flags: 0, headers: Headers::default() }).await;
                let writer = StreamWriter { id: stream_id, out: out.clone(), reset: reset_rx };
                if streams.send(Stream { id: stream_id, headers, incoming: data_rx, writer }).await.is_err() {
                    return Ok(());
                }
            }
            Frame::Data { stream_id, flags, data } => {
                let sender = lock(table).get(&stream_id).and_then(|e| e.data.clone());
                if let Some(tx) = sender {
                    if !data.is_empty() {
                        // A reader that went away just drops what it is sent.
                        let _ = tx.send(data).await;
                    }
                }
                if flags & FLAG_FIN != 0 {
                    remote_finished(table, stream_id);
                }
            }
            Frame::Headers { stream_id, flags, .. } if flags & FLAG_FIN != 0 => remote_finished(table, stream_id),
            Frame::RstStream { stream_id, .. } => {
                if let Some(e) = lock(table).remove(&stream_id) {
                    let _ = e.reset.send(true);
                }
            }
            // Echo the client's pings (odd ids); ours would be even.
            Frame::Ping { id } if id % 2 == 1 => {
                let _ = out.send(Frame::Ping { id }).await;
            }
            Frame::GoAway { .. } => return Ok(()),
            Frame::SynReply { .. }
            | Frame::Headers { .. }
            | Frame::Settings { .. }
            | Frame::Ping { .. }
            | Frame::WindowUpdate { .. } => {}
        }
    }
    Ok(())
}

fn remote_finished(table: &Table, stream_id: u32) {
    let mut t = lock(table);
    let done = match t.get_mut(&stream_id) {
        Some(e) => {
            e.data = None;
            e.local_fin
        }
        None => false,
    };
    if done {
        t.remove(&stream_id);
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut frames: mpsc::Receiver<Frame>,
    mut stop: oneshot::Receiver<()>,
    table: Table,
) {
    let mut z = match super::compression::HeaderCompressor::new() {
        Ok(z) => z,
        Err(e) => {
            tracing::warn!(error = %e, "SPDY header compressor");
            return;
        }
    };
    let mut buf = Vec::with_capacity(WRITE_CHUNK + 64);
    loop {
        let frame = tokio::select! {
            f = frames.recv() => match f { Some(f) => f, None => break },
            _ = &mut stop => break,
        };
        match &frame {
            // Nothing more goes out on a stream once it is reset or gone.
            Frame::Data { stream_id, flags, .. } => {
                let mut t = lock(&table);
                let Some(e) = t.get_mut(stream_id) else { continue };
                if flags & FLAG_FIN != 0 {
                    e.local_fin = true;
                    if e.data.is_none() {
                        t.remove(stream_id);
                    }
                }
            }
            Frame::RstStream { stream_id, .. } => {
                lock(&table).remove(stream_id);
            }
            _ => {}
        }
        buf.clear();
        if let Err(e) = frame.encode(&mut z, &mut buf) {
            tracing::warn!(error = %e, "SPDY frame not sent");
            continue;
        }
        if w.write_all(&buf).await.is_err() || w.flush().await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
}
