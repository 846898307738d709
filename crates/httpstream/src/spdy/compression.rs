//! Header-block compression: one zlib stream per direction for the whole
//! session, primed with the SPDY/3 dictionary, each block ended by a sync
//! flush (what Go's `spdy.Framer` does, so kubectl's framer reads our blocks
//! and we read its).

use super::dictionary::DICTIONARY;
use super::SpdyError;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// Largest decompressed header block accepted (a guard against zlib bombs).
pub const MAX_HEADER_BLOCK: usize = 1 << 20;

/// Compresses outgoing header blocks.
pub struct HeaderCompressor {
    z: Compress,
}

impl HeaderCompressor {
    pub fn new() -> Result<Self, SpdyError> {
        // Go's framer: zlib.NewWriterLevelDict(buf, zlib.BestCompression, headerDictionary).
        let mut z = Compress::new(Compression::best(), true);
        z.set_dictionary(DICTIONARY).map_err(|e| SpdyError::Compression(format!("setting the dictionary: {e}")))?;
        Ok(Self { z })
    }

    /// Compress one header block, ending it with a sync flush.
    pub fn compress(&mut self, block: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(block.len() / 2 + 64);
        let start = self.z.total_in();
        loop {
            let consumed = usize::try_from(self.z.total_in() - start).unwrap_or(block.len());
            if out.capacity() - out.len() < 32 {
                out.reserve(256);
            }
            self.z
                .compress_vec(&block[consumed.min(block.len())..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            let consumed = usize::try_from(self.z.total_in() - start).unwrap_or(block.len());
            // zlib's rule: a flush is complete when it left output space unused.
            if consumed >= block.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// Decompresses incoming header blocks.
pub struct HeaderDecompressor {
    z: Decompress,
}

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecompressor {
    pub fn new() -> Self {
        Self { z: Decompress::new(true) }
    }

    /// Decompress one header block (the rest of a SYN_STREAM, SYN_REPLY or
    /// HEADERS frame after its fixed fields).
    pub fn decompress(&mut self, payload: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(payload.len() * 4 + 64);
        let start = self.z.total_in();
        loop {
            let consumed = usize::try_from(self.z.total_in() - start).unwrap_or(payload.len()).min(payload.len());
            if out.capacity() - out.len() < 32 {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::Malformed(format!(
                        "header block larger than {MAX_HEADER_BLOCK} bytes when decompressed"
                    )));
                }
                out.reserve(out.len().max(256));
            }
            let (in_before, out_before) = (self.z.total_in(), out.len());
            match self.z.decompress_vec(&payload[consumed..], &mut out, FlushDecompress::Sync) {
                Ok(_) => {}
                // The zlib header says FDICT: prime the window and go on.
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| SpdyError::Compression(format!("header dictionary: {e}")))?;
                    continue;
                }
                Err(e) => return Err(SpdyError::Compression(format!("header block: {e}"))),
            }
            let consumed = usize::try_from(self.z.total_in() - start).unwrap_or(payload.len());
            if consumed >= payload.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if self.z.total_in() == in_before && out.len() == out_before && out.len() < out.capacity() {
                return Err(SpdyError::Malformed("header block ends inside a compressed block".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_over_one_stream() {
        let mut c = HeaderCompressor::new().unwrap();
        let mut d = HeaderDecompressor::new();
        let blocks: [&[u8]; 3] = [b"\0\0\0\x01\0\0\0\x04porthello", b"", &[7u8; 5000]];
        for b in blocks {
            let z = c.compress(b).unwrap();
            assert_eq!(d.decompress(&z).unwrap(), b);
        }
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn blocks_from_c_zlib_with_the_dictionary_decode() {
        // Made by C zlib (Python's zlib.compressobj(9, zdict=DICTIONARY), Z_SYNC_FLUSH
        // per block), as Go's framer does: the error- then the data-stream headers of
        // a port-forward request. The second block refers back into the first.
        let z1 = unhex(
            "78f9e3c6a7c202253a703a2b294a4dcc851625aca9a0808614cb45a024cc64610024398b209198094adc8c0600000000ffff",
        );
        let z2 = unhex("c2aa15540a2512d209000000ffff");
        let b1 = unhex("000000030000000a73747265616d74797065000000056572726f7200000004706f7274000000023830000000097265717565737469640000000130");
        let b2 = unhex("000000030000000a73747265616d74797065000000046461746100000004706f7274000000023830000000097265717565737469640000000130");
        let mut d = HeaderDecompressor::new();
        assert_eq!(d.decompress(&z1).unwrap(), b1);
        assert_eq!(d.decompress(&z2).unwrap(), b2);
    }

    #[test]
    fn a_stream_without_the_dictionary_flag_also_decodes() {
        // Go's zlib reader accepts both; so do we.
        let mut c = Compress::new(Compression::fast(), true);
        let mut z = Vec::with_capacity(256);
        c.compress_vec(b"plain block", &mut z, FlushCompress::Sync).unwrap();
        assert_eq!(HeaderDecompressor::new().decompress(&z).unwrap(), b"plain block");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(HeaderDecompressor::new().decompress(b"\x78\x9c\xff\xff\xff").is_err());
        assert!(HeaderDecompressor::new().decompress(b"not zlib at all").is_err());
    }
}
