//! Base64 as dpv-batch writes and reads it, on top of the `base64` crate.
//!
//! Written: standard alphabet, padded, lines of 76 characters as MIME does
//! (attachments inlined into batches, streamed: [`Encoder`]). Read: the
//! [`LENIENT`] engine for keys and hashes in OpenSSH files, which pad or
//! not. The validation rules keep their own streaming checker
//! (`validate::rules`), because they report *where* in a file a bad
//! character is, which no codec does.

use std::io::{self, Write};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};

/// Bytes per 76-character line (76 / 4 * 3).
const LINE_BYTES: usize = 57;

/// Standard alphabet, padding optional, stray low bits tolerated (as
/// OpenSSH's own decoder does).
pub const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Encodes what is written to it into `out`, a line break between lines;
/// call [`Encoder::finish`] at the end. Memory: one buffer of whole lines.
pub struct Encoder<W: Write> {
    out: W,
    /// Input not yet encoded: less than one line.
    pending: Vec<u8>,
    /// Encoded lines waiting to be written in one call.
    buf: Vec<u8>,
    /// Whether a line has been written (the next one needs a break first).
    started: bool,
}

impl<W: Write> Encoder<W> {
    pub fn new(out: W) -> Self {
        Encoder {
            out,
            pending: Vec::with_capacity(LINE_BYTES),
            buf: Vec::with_capacity(8192 + 80),
            started: false,
        }
    }

    /// One line (57 bytes, or fewer at the very end) into `buf`.
    fn line(&mut self, bytes: &[u8]) {
        if self.started {
            self.buf.push(b'\n');
        }
        self.started = true;
        let at = self.buf.len();
        self.buf.resize(at + 4 * bytes.len().div_ceil(3), 0);
        // Cannot fail: the room was made just above.
        let _ = STANDARD.encode_slice(bytes, &mut self.buf[at..]);
    }

    /// Encode the last partial line (with padding) and return the writer.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.line(&rest);
        }
        self.out.write_all(&self.buf)?;
        Ok(self.out)
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        if !self.pending.is_empty() {
            let take = (LINE_BYTES - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() < LINE_BYTES {
                return Ok(data.len());
            }
            let full = std::mem::take(&mut self.pending);
            self.line(&full);
            self.pending = full;
            self.pending.clear();
        }
        let mut lines = rest.chunks_exact(LINE_BYTES);
        for l in &mut lines {
            self.line(l);
            if self.buf.len() >= 8192 {
                self.out.write_all(&self.buf)?;
                self.buf.clear();
            }
        }
        self.pending.extend_from_slice(lines.remainder());
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()
    }
}

/// Encode a whole buffer, wrapped like [`Encoder`] (small data, tests).
pub fn encode(data: &[u8]) -> String {
    let mut e = Encoder::new(Vec::new());
    let _ = e.write_all(data);
    let out = e.finish().unwrap_or_default();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg==");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(b"Hello, world"), "SGVsbG8sIHdvcmxk");
    }

    #[test]
    fn split_writes_and_line_wrapping() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        // Wrapped exactly as MIME: the crate's encoding, a break every 76.
        let whole = STANDARD.encode(&data);
        let wrapped: Vec<&str> = whole
            .as_bytes()
            .chunks(76)
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect();
        assert_eq!(encode(&data), wrapped.join("\n"));
        for size in [1, 7, 57, 58, 300] {
            let mut e = Encoder::new(Vec::new());
            for chunk in data.chunks(size) {
                e.write_all(chunk).unwrap();
            }
            let out = String::from_utf8(e.finish().unwrap()).unwrap();
            assert_eq!(out, encode(&data), "writes of {size}");
        }
        // A whole number of lines ends without a break.
        assert_eq!(encode(&[0; 57]).len(), 76);
        assert_eq!(encode(&[0; 114]).len(), 153);
    }

    #[test]
    fn lenient_decoding_takes_padded_and_unpadded() {
        assert_eq!(LENIENT.decode("Zm8=").unwrap(), b"fo");
        assert_eq!(LENIENT.decode("Zm8").unwrap(), b"fo");
        assert!(LENIENT.decode("a").is_err());
        assert!(LENIENT.decode("ab$c").is_err());
    }
}
