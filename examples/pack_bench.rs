//! The package writer alone (`package::package`), on two large inputs made
//! once in DIR: a 284 MB batch of 12,000 letters with 16 KiB inline
//! attachments, and a 210 MB export package of 200 letters whose 1 MiB
//! attachments are inlined as base64. Prints the best of 3 and the
//! SHA-256 of the part, so a change can be checked for speed and for
//! byte-for-byte sameness. Run through `bench/package.sh`.
use dpv_batch::gen::{write_batch, Spec};
use dpv_batch::package::{package, PackOptions};
use std::io::Write;
use std::time::Instant;

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("dir"));
    std::fs::create_dir_all(&dir).unwrap();
    let inline = dir.join("inline.xml");
    if !inline.exists() {
        let spec = Spec {
            letters: 12_000,
            attachment_bytes: 16_384,
            ..Spec::default()
        };
        let mut f = std::fs::File::create(&inline).unwrap();
        write_batch(&spec, &mut f).unwrap();
    }
    let zip_path = dir.join("export.zip");
    if !zip_path.exists() {
        let spec = Spec {
            letters: 200,
            attachment_bytes: 1,
            ..Spec::default()
        };
        let mut xml = Vec::new();
        write_batch(&spec, &mut xml).unwrap();
        let mut xml = String::from_utf8(xml).unwrap();
        // <Data>…</Data> -> <Data/>
        let mut out = String::new();
        while let Some(i) = xml.find("<Data>") {
            let j = xml[i..].find("</Data>").unwrap() + i + 7;
            out.push_str(&xml[..i]);
            out.push_str("<Data/>");
            xml = xml[j..].to_string();
        }
        out.push_str(&xml);
        let f = std::fs::File::create(&zip_path).unwrap();
        let mut z = zip::ZipWriter::new(f);
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true);
        z.start_file("batch.xml", o).unwrap();
        z.write_all(out.as_bytes()).unwrap();
        let blob: Vec<u8> = (0..1_048_576u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for i in 0..200 {
            z.start_file(format!("vedtak-{i}.pdf"), o).unwrap();
            z.write_all(&blob).unwrap();
        }
        z.finish().unwrap();
    }
    let opts = PackOptions {
        max_part_bytes: u64::MAX / 2,
        max_part_letters: 1_000_000,
        numbered: false,
        name_prefix: "bench".into(),
    };
    for (name, input) in [("inline", &inline), ("export", &zip_path)] {
        let mut best = f64::MAX;
        let mut bytes = 0;
        let mut sum = String::new();
        for _ in 0..3 {
            let out = dir.join(format!("out-{name}"));
            let _ = std::fs::remove_dir_all(&out);
            let t = Instant::now();
            let packed = package(input, &out, &opts, None).unwrap_or_else(|e| panic!("{e}"));
            best = best.min(t.elapsed().as_secs_f64());
            bytes = packed.parts.iter().map(|p| p.bytes).sum::<u64>();
            let data = std::fs::read(&packed.parts[0].path).unwrap();
            use sha2::Digest;
            sum = sha2::Sha256::digest(&data)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
        }
        let in_len = std::fs::metadata(input).unwrap().len();
        println!("{name}: input {:.0} MB, output {:.0} MB, best of 3 {:.3} s, {:.0} MB/s out; part1 sha256 {}", in_len as f64/1e6, bytes as f64/1e6, best, bytes as f64/1e6/best, &sum[..16]);
    }
}
