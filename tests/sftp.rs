//! The SFTP transport against a real OpenSSH sshd (scripts/sftp-server):
//! one throwaway server per test, on 127.0.0.1, stopped in Drop.
//!
//! Needs root and openssh-server/openssh-client (scripts/test installs
//! them). Without them every test here FAILS with the reason; set
//! DPV_SKIP_SFTP=1 to skip them instead (each says so on stderr).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dpv_batch::transport::sftp::Sftp;
use dpv_batch::transport::{ErrorKind, FileTransport, Inbound};

mod common;
use common::sftp::{keygen_fingerprint, Server, SCRIPT};

/// A server for test `test`; `None` (with a note on stderr) when DPV_SKIP_SFTP=1.
fn server(test: &str) -> Option<Server> {
    common::sftp::server(&format!("sftp::{test}"))
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// A pseudo-random file of `size` bytes, written in chunks.
fn random_file(path: &Path, size: u64, seed: u64) {
    let mut f = std::io::BufWriter::new(File::create(path).unwrap());
    let mut x = seed | 1;
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in chunk.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
        }
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

/// Whether two files have the same bytes (compared in chunks).
fn same_content(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

fn batch(dir: &Path, shipment: &str) -> PathBuf {
    let path = dir.join(format!("{shipment}.xml"));
    let spec = dpv_batch::gen::Spec {
        letters: 3,
        shipment_reference: shipment.into(),
        reference_prefix: format!("{shipment}-"),
        ..dpv_batch::gen::Spec::default()
    };
    dpv_batch::gen::write_batch(&spec, &mut File::create(&path).unwrap()).unwrap();
    path
}

#[test]
fn upload_delivered_list_fetch_remove_round_trip() {
    let Some(server) = server("upload_delivered_list_fetch_remove_round_trip") else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    let file = batch(local.path(), "SFTP-0001");
    let size = fs::metadata(&file).unwrap().len();
    let mut t = Sftp::new(&server.cfg()).unwrap();
    assert!(t.describe().starts_with("sftp dpvsftp@127.0.0.1:"));

    assert!(!t.delivered("SFTP-0001.xml", size).unwrap());
    t.upload(&file, "SFTP-0001.xml").unwrap();
    let upload = server.account().join("upload");
    assert_eq!(names(&upload), ["SFTP-0001.xml"]);
    assert!(same_content(&file, &upload.join("SFTP-0001.xml")));
    assert!(t.delivered("SFTP-0001.xml", size).unwrap());
    assert!(!t.delivered("SFTP-0001.xml", size + 1).unwrap());
    assert!(!t.delivered("SFTP-0002.xml", size).unwrap());

    // Altinn's side (the simulator) answers, on the account's folder.
    let mut sim = dpv_batch::sim::Simulator::new(
        &server.account(),
        dpv_batch::sim::SimOptions {
            confirm_delay: Some(Duration::ZERO),
            ..Default::default()
        },
    )
    .unwrap();
    let mut report = sim.step().unwrap();
    if report.confirmation_files == 0 {
        report = sim.step().unwrap();
    }
    assert_eq!(report.confirmation_files, 1, "{:?}", report.log);
    assert!(names(&upload).is_empty());
    // Gone from upload/, but its receipt says it arrived.
    assert!(t.delivered("SFTP-0001.xml", size).unwrap());

    // Temporary names are never listed.
    let receipts = server.account().join("receipts");
    fs::write(receipts.join(".half.receipt.xml.part"), "x").unwrap();
    fs::write(receipts.join("other.tmp"), "x").unwrap();
    let listed = t.list(Inbound::Receipts).unwrap();
    assert_eq!(listed, ["SFTP-0001.xml.receipt.xml"]);
    let dest = local.path().join("receipt.xml");
    t.fetch(Inbound::Receipts, &listed[0], &dest).unwrap();
    let receipt = dpv_batch::altinn::parse_receipt(&mut File::open(&dest).unwrap()).unwrap();
    assert_eq!(receipt.shipment_reference, "SFTP-0001");
    assert_eq!(receipt.letters.len(), 3);
    t.remove(Inbound::Receipts, &listed[0]).unwrap();
    t.remove(Inbound::Receipts, &listed[0]).unwrap(); // idempotent
    assert!(t.list(Inbound::Receipts).unwrap().is_empty());
    // The receipt is gone now, so nothing remote remembers the upload.
    assert!(!t.delivered("SFTP-0001.xml", size).unwrap());

    let confirmations = t.list(Inbound::Confirmations).unwrap();
    assert_eq!(confirmations, ["confirmations-00000001.xml"]);
    let dest = local.path().join("c.xml");
    t.fetch(Inbound::Confirmations, &confirmations[0], &dest)
        .unwrap();
    let c = dpv_batch::altinn::parse_confirmations(&mut File::open(&dest).unwrap()).unwrap();
    assert_eq!(c.items.len(), 3);
    t.remove(Inbound::Confirmations, &confirmations[0]).unwrap();
    assert!(t.list(Inbound::Confirmations).unwrap().is_empty());
    assert!(names(local.path()).iter().all(|n| !n.starts_with('.')));

    // Bad names never reach the server.
    let e = t.upload(&file, "../escape.xml").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent);
}

#[test]
fn processed_receipt_dir_keeps_inbound_files() {
    let Some(server) = server("processed_receipt_dir_keeps_inbound_files") else {
        return;
    };
    let done = server.mkdir("done");
    let mut cfg = server.cfg();
    cfg.processed_receipt_dir = Some("done".into());
    let mut t = Sftp::new(&cfg).unwrap();
    let receipts = server.account().join("receipts");
    fs::write(receipts.join("B-1.xml.receipt.xml"), "first").unwrap();
    t.remove(Inbound::Receipts, "B-1.xml.receipt.xml").unwrap();
    assert!(names(&receipts).is_empty());
    assert_eq!(
        fs::read_to_string(done.join("B-1.xml.receipt.xml")).unwrap(),
        "first"
    );
    // A receipt moved away still proves delivery.
    assert!(t.delivered("B-1.xml", 123).unwrap());
    // A repeat of the same name replaces the earlier one.
    fs::write(receipts.join("B-1.xml.receipt.xml"), "second").unwrap();
    t.remove(Inbound::Receipts, "B-1.xml.receipt.xml").unwrap();
    t.remove(Inbound::Receipts, "B-1.xml.receipt.xml").unwrap();
    assert!(names(&receipts).is_empty());
    assert_eq!(
        fs::read_to_string(done.join("B-1.xml.receipt.xml")).unwrap(),
        "second"
    );
}

#[test]
fn rename_over_an_existing_file_is_handled() {
    let Some(server) = server("rename_over_an_existing_file_is_handled") else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    let file = local.path().join("b.xml");
    fs::write(&file, "new content, complete").unwrap();
    let upload = server.account().join("upload");
    let mut t = Sftp::new(&server.cfg()).unwrap();

    // A stale file of another size under the final name: replaced.
    fs::write(upload.join("B.xml"), "stale").unwrap();
    t.upload(&file, "B.xml").unwrap();
    assert_eq!(names(&upload), ["B.xml"]);
    assert_eq!(
        fs::read_to_string(upload.join("B.xml")).unwrap(),
        "new content, complete"
    );

    // The same name and size again (an earlier try that was delivered):
    // nothing changes, no temporary file is left.
    t.upload(&file, "B.xml").unwrap();
    assert_eq!(names(&upload), ["B.xml"]);
    assert_eq!(
        fs::read_to_string(upload.join("B.xml")).unwrap(),
        "new content, complete"
    );
}

#[test]
fn wrong_pinned_host_key_is_permanent_and_names_both_fingerprints() {
    let Some(server) = server("wrong_pinned_host_key_is_permanent_and_names_both_fingerprints")
    else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    let file = local.path().join("b.xml");
    fs::write(&file, "x").unwrap();
    let other_pub = PathBuf::from(format!("{}.pub", server.get("SFTP_OTHER_KEY")));
    let expected = keygen_fingerprint(&other_pub);
    let offered = keygen_fingerprint(&server.path("SFTP_HOST_PUBKEY"));
    assert_ne!(expected, offered);

    // known_hosts pins another key for this host:port.
    let other = fs::read_to_string(&other_pub).unwrap();
    let fields: Vec<&str> = other.split_whitespace().collect();
    let kh = local.path().join("known_hosts");
    fs::write(
        &kh,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            server.port(),
            fields[0],
            fields[1]
        ),
    )
    .unwrap();
    let mut cfg = server.cfg();
    cfg.known_hosts = Some(kh);
    let mut t = Sftp::new(&cfg).unwrap();
    let e = t.upload(&file, "b.xml").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent, "{e}");
    assert!(e.message.contains("host key mismatch"), "{e}");
    assert!(e.message.contains(&expected), "{e}");
    assert!(e.message.contains(&offered), "{e}");
    assert!(names(&server.account().join("upload")).is_empty());

    // A wrong fingerprint, alone: the same.
    let mut cfg = server.cfg();
    cfg.known_hosts = None;
    cfg.host_key_fingerprints = vec![expected.clone()];
    let e = Sftp::new(&cfg).unwrap().upload(&file, "b.xml").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent, "{e}");
    assert!(
        e.message.contains(&expected) && e.message.contains(&offered),
        "{e}"
    );
    assert!(names(&server.account().join("upload")).is_empty());

    // The right fingerprint alone is enough.
    cfg.host_key_fingerprints = vec![offered.clone()];
    Sftp::new(&cfg).unwrap().upload(&file, "b.xml").unwrap();

    // A hashed known_hosts (ssh-keygen -H) works too.
    let hashed = local.path().join("hashed_known_hosts");
    fs::copy(server.path("SFTP_KNOWN_HOSTS"), &hashed).unwrap();
    let status = Command::new("ssh-keygen")
        .arg("-q")
        .arg("-H")
        .arg("-f")
        .arg(&hashed)
        .output()
        .unwrap();
    assert!(status.status.success());
    assert!(fs::read_to_string(&hashed).unwrap().starts_with("|1|"));
    let mut cfg = server.cfg();
    cfg.known_hosts = Some(hashed);
    Sftp::new(&cfg).unwrap().upload(&file, "c.xml").unwrap();
    assert_eq!(names(&server.account().join("upload")), ["b.xml", "c.xml"]);

    // No pin at all: refused before any connection.
    let mut cfg = server.cfg();
    cfg.known_hosts = None;
    let e = Sftp::new(&cfg).err().expect("no pin must be refused");
    assert_eq!(e.kind, ErrorKind::Permanent);
    assert!(e.message.contains("pinned"), "{e}");
}

#[test]
fn client_keys_and_passphrases() {
    let Some(server) = server("client_keys_and_passphrases") else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    let file = local.path().join("b.xml");
    fs::write(&file, "x").unwrap();

    // A key the server does not know.
    let mut cfg = server.cfg();
    cfg.private_key = server.path("SFTP_OTHER_KEY");
    let e = Sftp::new(&cfg).unwrap().upload(&file, "b.xml").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent, "{e}");
    assert!(e.message.contains("authentication refused"), "{e}");
    assert!(names(&server.account().join("upload")).is_empty());

    // A passphrase-protected key, passphrase from a file.
    let mut cfg = server.cfg();
    cfg.private_key = server.path("SFTP_KEY_PASS");
    cfg.private_key_passphrase_file = Some(server.path("SFTP_PASSPHRASE_FILE"));
    Sftp::new(&cfg).unwrap().upload(&file, "b.xml").unwrap();

    // ... and with a wrong passphrase.
    let wrong = local.path().join("wrong.txt");
    fs::write(&wrong, "not it\n").unwrap();
    cfg.private_key_passphrase_file = Some(wrong);
    let e = Sftp::new(&cfg).unwrap().upload(&file, "c.xml").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent, "{e}");
    assert!(e.message.contains("authentication refused"), "{e}");
    assert_eq!(names(&server.account().join("upload")), ["b.xml"]);
}

#[test]
fn upload_folder_without_write_permission_is_permanent() {
    let Some(server) = server("upload_folder_without_write_permission_is_permanent") else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    let file = local.path().join("b.xml");
    fs::write(&file, "x").unwrap();
    let upload = server.account().join("upload");
    fs::set_permissions(&upload, fs::Permissions::from_mode(0o555)).unwrap();
    let mut t = Sftp::new(&server.cfg()).unwrap();
    let e = t.upload(&file, "b.xml").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent, "{e}");
    assert!(e.message.to_lowercase().contains("permission"), "{e}");
    assert!(names(&upload).is_empty());

    // A missing upload folder is a configuration problem: permanent.
    let mut cfg = server.cfg();
    cfg.upload_dir = "no-such-folder".into();
    let e = Sftp::new(&cfg).unwrap().upload(&file, "b.xml").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent, "{e}");
    assert!(e.message.contains("no-such-folder"), "{e}");
}

#[test]
fn sshd_killed_mid_upload_then_retry_gives_one_complete_file() {
    let Some(mut server) = server("sshd_killed_mid_upload_then_retry_gives_one_complete_file")
    else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    let file = local.path().join("big.xml");
    let size = 200 * 1000 * 1000;
    random_file(&file, size, 0x5eed);
    let upload = server.account().join("upload");
    let part = upload.join(".big.xml.part");
    let mut t = Sftp::new(&server.cfg()).unwrap();
    t.list(Inbound::Receipts).unwrap(); // connected

    // Kill sshd and its session once 20 MB have arrived.
    let killed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (killed, stop) = (killed.clone(), stop.clone());
        let (part, envfile) = (part.clone(), server.envfile.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if fs::metadata(&part).is_ok_and(|m| m.len() > 20_000_000) {
                    let out = Command::new("bash")
                        .arg(SCRIPT)
                        .arg("kill")
                        .arg(&envfile)
                        .output()
                        .unwrap();
                    assert!(out.status.success());
                    killed.store(true, Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let result = t.upload(&file, "big.xml");
    stop.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    assert!(
        killed.load(Ordering::SeqCst),
        "the upload ended ({result:?}) before sshd could be killed"
    );
    let e = result.expect_err("the upload must fail while sshd is down");
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert!(e.message.contains("gave up after 3 tries"), "{e}");
    assert!(!upload.join("big.xml").exists());
    let partial = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    assert!(partial < size, "the temporary file has {partial} bytes");

    server.script("restart");
    // The same transport object: the dead session is replaced.
    assert!(!t.delivered("big.xml", size).unwrap());
    t.upload(&file, "big.xml").unwrap();
    assert_eq!(names(&upload), ["big.xml"]);
    assert_eq!(fs::metadata(upload.join("big.xml")).unwrap().len(), size);
    assert!(same_content(&file, &upload.join("big.xml")));
    assert!(t.delivered("big.xml", size).unwrap());
}

#[test]
fn session_is_reused_and_replaced_after_a_server_restart() {
    let Some(mut server) = server("session_is_reused_and_replaced_after_a_server_restart") else {
        return;
    };
    let mut t = Sftp::new(&server.cfg()).unwrap();
    for _ in 0..5 {
        t.list(Inbound::Receipts).unwrap();
    }
    // One session for all of them.
    let log = fs::read_to_string(server.path("SFTP_LOG")).unwrap();
    assert_eq!(log.matches("Accepted publickey").count(), 1, "{log}");
    server.script("restart");
    assert!(t.list(Inbound::Receipts).unwrap().is_empty());
    let log = fs::read_to_string(server.path("SFTP_LOG")).unwrap();
    assert_eq!(log.matches("Accepted publickey").count(), 1, "{log}");

    // A stopped server: transient, after the configured number of tries.
    server.script("kill");
    let e = t.list(Inbound::Receipts).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert!(e.message.contains("gave up after 3 tries"), "{e}");
}

/// Peak resident memory of this process, in bytes (VmHWM).
fn peak_rss() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

#[test]
fn one_gigabyte_streams_in_flat_memory() {
    let Some(server) = server("one_gigabyte_streams_in_flat_memory") else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    let file = local.path().join("huge.xml");
    let size: u64 = 1 << 30;
    File::create(&file).unwrap().set_len(size).unwrap(); // sparse
    let mut t = Sftp::new(&server.cfg()).unwrap();
    t.list(Inbound::Receipts).unwrap();
    // Reset the peak (clear_refs 5), so it shows this upload only. Other
    // tests run beside this one; they stream too.
    fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = peak_rss();
    let started = Instant::now();
    t.upload(&file, "huge.xml").unwrap();
    let took = started.elapsed();
    let grew = peak_rss().saturating_sub(before);
    eprintln!(
        "1 GiB upload: {:.1} s, {:.0} MB/s, peak RSS grew {} KiB",
        took.as_secs_f64(),
        size as f64 / 1e6 / took.as_secs_f64(),
        grew / 1024
    );
    assert_eq!(
        fs::metadata(server.account().join("upload/huge.xml"))
            .unwrap()
            .len(),
        size
    );
    assert!(
        grew < 64 * 1024 * 1024,
        "peak RSS grew by {} MiB during a 1 GiB upload",
        grew >> 20
    );
}
