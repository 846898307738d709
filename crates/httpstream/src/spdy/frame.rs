//! SPDY/3 frames: their wire layout (SPDY Protocol Draft 3, section 2.2 and
//! 2.6), read from an async byte stream and written to a buffer. Header
//! blocks go through the session's [`compression`](super::compression).

use super::compression::{HeaderCompressor, HeaderDecompressor};
use super::SpdyError;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

pub const VERSION: u16 = 3;

pub const TYPE_SYN_STREAM: u16 = 1;
pub const TYPE_SYN_REPLY: u16 = 2;
pub const TYPE_RST_STREAM: u16 = 3;
pub const TYPE_SETTINGS: u16 = 4;
pub const TYPE_PING: u16 = 6;
pub const TYPE_GOAWAY: u16 = 7;
pub const TYPE_HEADERS: u16 = 8;
pub const TYPE_WINDOW_UPDATE: u16 = 9;

/// FLAG_FIN on data and control frames: the sender's half of the stream ends.
pub const FLAG_FIN: u8 = 0x01;
/// FLAG_UNIDIRECTIONAL on SYN_STREAM.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// Largest payload a frame can carry (24-bit length).
pub const MAX_PAYLOAD: usize = (1 << 24) - 1;

/// RST_STREAM status codes (section 2.4.2).
pub mod rst {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const CANCEL: u32 = 5;
    pub const INTERNAL_ERROR: u32 = 6;
}

/// A header block: lower-case names, each with its values (sent joined by NUL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, Vec<String>)>);

impl Headers {
    /// The first value of `name` (case-insensitive), as Go's `http.Header.Get`.
    pub fn get(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.0.iter().find(|(n, _)| *n == name).and_then(|(_, v)| v.first()).map(String::as_str)
    }

    /// Set `name` to one value, replacing earlier values.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let name = name.to_ascii_lowercase();
        self.0.retain(|(n, _)| *n != name);
        self.0.push((name, vec![value.into()]));
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(self.0.len() as u32).to_be_bytes());
        for (name, values) in &self.0 {
            let name = name.to_ascii_lowercase();
            let value = values.join("\0");
            b.extend_from_slice(&(name.len() as u32).to_be_bytes());
            b.extend_from_slice(name.as_bytes());
            b.extend_from_slice(&(value.len() as u32).to_be_bytes());
            b.extend_from_slice(value.as_bytes());
        }
        b
    }

    fn decode(mut b: &[u8]) -> Result<Self, SpdyError> {
        let count = take_u32(&mut b, "header count")?;
        let mut out = Vec::new();
        for _ in 0..count {
            let n = take_u32(&mut b, "header name length")? as usize;
            let name = take(&mut b, n, "header name")?;
            let v = take_u32(&mut b, "header value length")? as usize;
            let value = take(&mut b, v, "header value")?;
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            let values = String::from_utf8_lossy(value).split('\0').map(String::from).collect();
            out.push((name, values));
        }
        if !b.is_empty() {
            return Err(SpdyError::Malformed(format!("{} bytes after the header block", b.len())));
        }
        Ok(Headers(out))
    }
}

fn take<'a>(b: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], SpdyError> {
    if b.len() < n {
        return Err(SpdyError::Malformed(format!("header block ends inside the {what}")));
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Ok(head)
}

fn take_u32(b: &mut &[u8], what: &str) -> Result<u32, SpdyError> {
    let s = take(b, 4, what)?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// One SPDY/3 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream { stream_id: u32, associated_to: u32, priority: u8, flags: u8, headers: Headers },
    SynReply { stream_id: u32, flags: u8, headers: Headers },
    RstStream { stream_id: u32, status: u32 },
    Settings { flags: u8, entries: Vec<(u8, u32, u32)> },
    Ping { id: u32 },
    GoAway { last_good_stream_id: u32, status: u32 },
    Headers { stream_id: u32, flags: u8, headers: Headers },
    WindowUpdate { stream_id: u32, delta: u32 },
    Data { stream_id: u32, flags: u8, data: Bytes },
}

impl Frame {
    /// Append the frame's wire form to `out`.
    pub fn encode(&self, z: &mut HeaderCompressor, out: &mut Vec<u8>) -> Result<(), SpdyError> {
        let (kind, flags, body): (u16, u8, Vec<u8>) = match self {
            Frame::Data { stream_id, flags, data } => {
                if data.len() > MAX_PAYLOAD {
                    return Err(SpdyError::Malformed(format!("data frame of {} bytes", data.len())));
                }
                out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                out.extend_from_slice(&((u32::from(*flags) << 24) | data.len() as u32).to_be_bytes());
                out.extend_from_slice(data);
                return Ok(());
            }
            Frame::SynStream { stream_id, associated_to, priority, flags, headers } => {
                let mut b = Vec::new();
                b.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                b.extend_from_slice(&(associated_to & 0x7fff_ffff).to_be_bytes());
                b.push((priority & 0x07) << 5);
                b.push(0); // slot
                b.extend_from_slice(&z.compress(&headers.encode())?);
                (TYPE_SYN_STREAM, *flags, b)
            }
            Frame::SynReply { stream_id, flags, headers } => {
                let mut b = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                b.extend_from_slice(&z.compress(&headers.encode())?);
                (TYPE_SYN_REPLY, *flags, b)
            }
            Frame::Headers { stream_id, flags, headers } => {
                let mut b = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                b.extend_from_slice(&z.compress(&headers.encode())?);
                (TYPE_HEADERS, *flags, b)
            }
            Frame::RstStream { stream_id, status } => {
                let mut b = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                b.extend_from_slice(&status.to_be_bytes());
                (TYPE_RST_STREAM, 0, b)
            }
            Frame::Settings { flags, entries } => {
                let mut b = (entries.len() as u32).to_be_bytes().to_vec();
                for (f, id, value) in entries {
                    b.extend_from_slice(&((u32::from(*f) << 24) | (id & 0xff_ffff)).to_be_bytes());
                    b.extend_from_slice(&value.to_be_bytes());
                }
                (TYPE_SETTINGS, *flags, b)
            }
            Frame::Ping { id } => (TYPE_PING, 0, id.to_be_bytes().to_vec()),
            Frame::GoAway { last_good_stream_id, status } => {
                let mut b = (last_good_stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                b.extend_from_slice(&status.to_be_bytes());
                (TYPE_GOAWAY, 0, b)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut b = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                b.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
                (TYPE_WINDOW_UPDATE, 0, b)
            }
        };
        if body.len() > MAX_PAYLOAD {
            return Err(SpdyError::Malformed(format!("control frame of {} bytes", body.len())));
        }
        out.extend_from_slice(&(0x8000_0000 | (u32::from(VERSION) << 16) | u32::from(kind)).to_be_bytes());
        out.extend_from_slice(&((u32::from(flags) << 24) | body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        Ok(())
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads frames from one direction of a session.
pub struct FrameReader<R> {
    r: R,
    z: HeaderDecompressor,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(r: R) -> Self {
        Self { r, z: HeaderDecompressor::new() }
    }

    /// The next frame; `None` when the stream ends between frames. Control
    /// frames of unknown types are skipped, as the SPDY/3 draft asks.
    pub async fn next(&mut self) -> Result<Option<Frame>, SpdyError> {
        loop {
            let mut head = [0u8; 8];
            match self.r.read_exact(&mut head[..1]).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(SpdyError::Io(e)),
            }
            self.r.read_exact(&mut head[1..]).await?;
            let first = be32(&head, 0);
            let flags = head[4];
            let len = (be32(&head, 4) & 0xff_ffff) as usize;
            let mut body = vec![0u8; len];
            self.r.read_exact(&mut body).await?;
            if first & 0x8000_0000 == 0 {
                let stream_id = first & 0x7fff_ffff;
                if stream_id == 0 {
                    return Err(SpdyError::Malformed("data frame on stream 0".into()));
                }
                return Ok(Some(Frame::Data { stream_id, flags, data: Bytes::from(body) }));
            }
            let version = ((first >> 16) & 0x7fff) as u16;
            if version != VERSION {
                return Err(SpdyError::Malformed(format!("SPDY version {version}; this server speaks SPDY/3.1")));
            }
            if let Some(f) = self.control((first & 0xffff) as u16, flags, &body)? {
                return Ok(Some(f));
            }
        }
    }

    fn control(&mut self, kind: u16, flags: u8, b: &[u8]) -> Result<Option<Frame>, SpdyError> {
        let need = |n: usize, what: &str| {
            if b.len() < n {
                Err(SpdyError::Malformed(format!("{what} frame of {} bytes", b.len())))
            } else {
                Ok(())
            }
        };
        let id = |at: usize| be32(b, at) & 0x7fff_ffff;
        let frame = match kind {
            TYPE_SYN_STREAM => {
                need(10, "SYN_STREAM")?;
                let headers = Headers::decode(&self.z.decompress(&b[10..])?)?;
                Frame::SynStream { stream_id: id(0), associated_to: id(4), priority: b[8] >> 5, flags, headers }
            }
            TYPE_SYN_REPLY => {
                need(4, "SYN_REPLY")?;
                Frame::SynReply { stream_id: id(0), flags, headers: Headers::decode(&self.z.decompress(&b[4..])?)? }
            }
            TYPE_HEADERS => {
                need(4, "HEADERS")?;
                Frame::Headers { stream_id: id(0), flags, headers: Headers::decode(&self.z.decompress(&b[4..])?)? }
            }
            TYPE_RST_STREAM => {
                need(8, "RST_STREAM")?;
                Frame::RstStream { stream_id: id(0), status: be32(b, 4) }
            }
            TYPE_SETTINGS => {
                need(4, "SETTINGS")?;
                let n = be32(b, 0) as usize;
                if b.len() < 4 + n.saturating_mul(8) {
                    return Err(SpdyError::Malformed(format!("SETTINGS frame with {n} entries in {} bytes", b.len())));
                }
                let entries = (0..n)
                    .map(|i| {
                        let w = be32(b, 4 + i * 8);
                        ((w >> 24) as u8, w & 0xff_ffff, be32(b, 8 + i * 8))
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            TYPE_PING => {
                need(4, "PING")?;
                Frame::Ping { id: be32(b, 0) }
            }
            TYPE_GOAWAY => {
                need(8, "GOAWAY")?;
                Frame::GoAway { last_good_stream_id: id(0), status: be32(b, 4) }
            }
            TYPE_WINDOW_UPDATE => {
                need(8, "WINDOW_UPDATE")?;
                Frame::WindowUpdate { stream_id: id(0), delta: be32(b, 4) & 0x7fff_ffff }
            }
            _ => return Ok(None),
        };
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::default();
        for (k, v) in pairs {
            h.set(k, *v);
        }
        h
    }

    #[tokio::test]
    async fn every_frame_kind_round_trips() {
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 2,
                flags: FLAG_FIN,
                headers: headers(&[("streamType", "error"), ("port", "80"), ("requestID", "0")]),
            },
            Frame::SynReply { stream_id: 1, flags: 0, headers: Headers::default() },
            Frame::Headers { stream_id: 3, flags: 0, headers: headers(&[("a", "b")]) },
            Frame::Data { stream_id: 3, flags: 0, data: Bytes::from_static(b"GET / HTTP/1.1\r\n\r\n") },
            Frame::Data { stream_id: 3, flags: FLAG_FIN, data: Bytes::new() },
            Frame::RstStream { stream_id: 3, status: rst::CANCEL },
            Frame::Settings { flags: 0, entries: vec![(0, 7, 65536)] },
            Frame::Ping { id: 1 },
            Frame::WindowUpdate { stream_id: 0, delta: 4096 },
            Frame::GoAway { last_good_stream_id: 3, status: 0 },
        ];
        let mut z = HeaderCompressor::new().unwrap();
        let mut wire = Vec::new();
        for f in &frames {
            f.encode(&mut z, &mut wire).unwrap();
        }
        let mut r = FrameReader::new(&wire[..]);
        for f in &frames {
            assert_eq!(r.next().await.unwrap().as_ref(), Some(f));
        }
        assert_eq!(r.next().await.unwrap(), None);
    }

    #[test]
    fn header_names_are_lower_case_on_the_wire_and_get_ignores_case() {
        let h = headers(&[("X-Stream-Protocol-Version", "portforward.k8s.io")]);
        assert_eq!(h.0[0].0, "x-stream-protocol-version");
        assert_eq!(h.get("X-STREAM-protocol-version"), Some("portforward.k8s.io"));
        let multi = Headers(vec![("a".into(), vec!["1".into(), "2".into()])]);
        assert_eq!(Headers::decode(&multi.encode()).unwrap(), multi);
    }

    #[tokio::test]
    async fn unknown_control_frames_are_skipped_and_truncation_is_an_error() {
        let mut wire = vec![0x80, 0x03, 0x00, 0x63, 0, 0, 0, 2, 0xaa, 0xbb];
        Frame::Ping { id: 7 }.encode(&mut HeaderCompressor::new().unwrap(), &mut wire).unwrap();
        let mut r = FrameReader::new(&wire[..]);
        assert_eq!(r.next().await.unwrap(), Some(Frame::Ping { id: 7 }));
        let cut = &wire[..wire.len() - 1];
        let mut r = FrameReader::new(&cut[10..]);
        assert!(r.next().await.is_err());
        let v2 = [0x80u8, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1];
        assert!(FrameReader::new(&v2[..]).next().await.is_err());
    }
}
