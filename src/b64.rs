//! A streaming base64 encoder (standard alphabet, padded, lines of 76
//! characters as MIME does), for attachments inlined into batches.

use std::io::{self, Write};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const LINE: usize = 76;

/// Encodes what is written to it into `out`; call [`Encoder::finish`] at the end.
pub struct Encoder<W: Write> {
    out: W,
    pending: [u8; 3],
    npending: usize,
    column: usize,
    buf: Vec<u8>,
}

impl<W: Write> Encoder<W> {
    pub fn new(out: W) -> Self {
        Encoder {
            out,
            pending: [0; 3],
            npending: 0,
            column: 0,
            buf: Vec::with_capacity(8192),
        }
    }

    fn quantum(&mut self, b: [u8; 3], n: usize) {
        if self.column == LINE {
            self.buf.push(b'\n');
            self.column = 0;
        }
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        self.buf.push(ALPHABET[(v >> 18) as usize & 63]);
        self.buf.push(ALPHABET[(v >> 12) as usize & 63]);
        self.buf.push(if n > 1 {
            ALPHABET[(v >> 6) as usize & 63]
        } else {
            b'='
        });
        self.buf.push(if n > 2 {
            ALPHABET[v as usize & 63]
        } else {
            b'='
        });
        self.column += 4;
    }

    /// Flush the last partial group (with padding) and return the writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.npending > 0 {
            let mut b = [0u8; 3];
            b[..self.npending].copy_from_slice(&self.pending[..self.npending]);
            self.quantum(b, self.npending);
        }
        self.out.write_all(&self.buf)?;
        Ok(self.out)
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while self.npending > 0 && self.npending < 3 && !rest.is_empty() {
            self.pending[self.npending] = rest[0];
            self.npending += 1;
            rest = &rest[1..];
        }
        if self.npending == 3 {
            let p = self.pending;
            self.quantum(p, 3);
            self.npending = 0;
        }
        let mut chunks = rest.chunks_exact(3);
        for c in &mut chunks {
            self.quantum([c[0], c[1], c[2]], 3);
        }
        let tail = chunks.remainder();
        self.pending[..tail.len()].copy_from_slice(tail);
        self.npending = tail.len();
        if self.buf.len() >= 8192 {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()
    }
}

/// Encode a whole buffer (small data, tests).
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
        let data: Vec<u8> = (0..200u8).collect();
        let mut e = Encoder::new(Vec::new());
        for chunk in data.chunks(7) {
            e.write_all(chunk).unwrap();
        }
        let out = String::from_utf8(e.finish().unwrap()).unwrap();
        assert_eq!(out, encode(&data));
        assert!(out.lines().all(|l| l.len() <= 76));
        assert_eq!(out.lines().next().unwrap().len(), 76);
    }
}
