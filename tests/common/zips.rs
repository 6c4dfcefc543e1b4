//! Hand-made zip files for hostile-package tests: stored (uncompressed)
//! entries with any name bytes, duplicates included, which no well-behaved
//! zip writer produces. Just enough of the format (APPNOTE 4.3): local
//! headers, central directory, end record.

/// One entry: its name as raw bytes, its content, and its Unix file type
/// and mode (a regular file, or a folder when the name ends in `/`).
pub struct Entry {
    pub name: Vec<u8>,
    pub data: Vec<u8>,
    pub mode: u32,
}

pub fn entry(name: &str, data: &[u8]) -> Entry {
    Entry {
        name: name.as_bytes().to_vec(),
        data: data.to_vec(),
        mode: if name.ends_with('/') {
            0o040755
        } else {
            0o100644
        },
    }
}

/// A symbolic link entry: its content is the link's target.
pub fn symlink(name: &str, target: &str) -> Entry {
    Entry {
        mode: 0o120777,
        ..entry(name, target.as_bytes())
    }
}

/// A zip of `entries` in this order, names flagged as UTF-8 (bit 11).
pub fn zip(entries: &[Entry]) -> Vec<u8> {
    const UTF8: u16 = 1 << 11;
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let offset = out.len() as u32;
        let crc = crc32(&e.data);
        let size = e.data.len() as u32;
        let name_len = e.name.len() as u16;
        // Local file header.
        put32(&mut out, 0x0403_4b50);
        put16(&mut out, 20); // version needed
        put16(&mut out, UTF8);
        put16(&mut out, 0); // stored
        put16(&mut out, 0); // time
        put16(&mut out, 0x5b81); // date: 2025-12-01
        put32(&mut out, crc);
        put32(&mut out, size);
        put32(&mut out, size);
        put16(&mut out, name_len);
        put16(&mut out, 0); // extra
        out.extend_from_slice(&e.name);
        out.extend_from_slice(&e.data);
        // Central directory record.
        put32(&mut central, 0x0201_4b50);
        put16(&mut central, 0x031e); // made by: Unix, 3.0
        put16(&mut central, 20);
        put16(&mut central, UTF8);
        put16(&mut central, 0);
        put16(&mut central, 0);
        put16(&mut central, 0x5b81);
        put32(&mut central, crc);
        put32(&mut central, size);
        put32(&mut central, size);
        put16(&mut central, name_len);
        put16(&mut central, 0); // extra
        put16(&mut central, 0); // comment
        put16(&mut central, 0); // disk
        put16(&mut central, 0); // internal attributes
        put32(&mut central, e.mode << 16);
        put32(&mut central, offset);
        central.extend_from_slice(&e.name);
    }
    let central_start = out.len() as u32;
    out.extend_from_slice(&central);
    put32(&mut out, 0x0605_4b50);
    put16(&mut out, 0);
    put16(&mut out, 0);
    put16(&mut out, entries.len() as u16);
    put16(&mut out, entries.len() as u16);
    put32(&mut out, central.len() as u32);
    put32(&mut out, central_start);
    put16(&mut out, 0);
    out
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// CRC-32 (IEEE), table-driven.
pub fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, slot) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *slot = c;
    }
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The export package sample's batch: one letter whose attachments
/// `vedtak.pdf` and `vedlegg.txt` have empty Data.
pub fn sample_batch() -> Vec<u8> {
    std::fs::read(super::root().join("samples/src/export-package/batch.xml")).expect("batch")
}

/// The sample batch with `from` replaced by `to` (once; it must occur).
pub fn batch_with(from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(sample_batch()).expect("utf-8");
    assert!(text.contains(from), "the sample batch has no {from:?}");
    text.replacen(from, to, 1).into_bytes()
}
