//! The Altinn 3 client against the real simulator binary over HTTP:
//! token + exchange + send (JSON, multipart, attachment API) + 409 + find +
//! overview + refusal + retries under 429/5xx + commit-then-drop, and every
//! letter created exactly once.

mod common;
use common::*;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use dpv_batch::altinn3::auth::Step;
use dpv_batch::altinn3::client::{CallError, Client, SendOutcome};
use dpv_batch::altinn3::letters::{split, LetterMeta, SplitOptions};
use dpv_batch::config::{Altinn3Config, Environment, ResourceEntry, Route};
use uuid::Uuid;

/// A running `dpv-batch sim-altinn3`, killed (by its pid) when dropped.
struct Sim {
    child: Child,
    root: PathBuf,
    urls: HashMap<String, String>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sim {
    fn start(root: &Path, extra: &[&str]) -> Sim {
        let child = Command::new(bin())
            .args(["sim-altinn3", "--listen", "127.0.0.1:0", "--root"])
            .arg(root)
            .arg("--client-key")
            .arg(root_dir().join("tests/fixtures/altinn3/client.pub.pem"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sim-altinn3");
        let mut sim = Sim {
            child,
            root: root.to_path_buf(),
            urls: HashMap::new(),
        };
        // Ready when sim.toml has its four lines (written once listening).
        let toml = root.join("sim.toml");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&toml) {
                let urls: HashMap<String, String> = text
                    .lines()
                    .filter_map(|l| {
                        let (k, v) = l.split_once('=')?;
                        Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                    })
                    .collect();
                if urls.len() == 4 {
                    sim.urls = urls;
                    return sim;
                }
            }
            assert!(Instant::now() < deadline, "sim-altinn3 did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn config(&self, dir: &Path) -> Altinn3Config {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.join("client.pem");
        std::fs::copy(root_dir().join("tests/fixtures/altinn3/client.pem"), &key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut cfg = Altinn3Config::new("dpv-batch-test", key);
        cfg.environment = Environment::Custom;
        cfg.route = Route::EformidlingProxy;
        cfg.key_id = Some("test".into());
        cfg.api_base = self.urls["api_base"].clone();
        cfg.token_url = self.urls["token_url"].clone();
        cfg.audience = self.urls["audience"].clone();
        cfg.exchange_url = Some(self.urls["exchange_url"].clone());
        cfg.resources.insert(
            "4255".into(),
            ResourceEntry::Id("eformidling-dpv-administrasjon".into()),
        );
        cfg.resources.insert(
            "5504/1".into(),
            ResourceEntry::Table {
                resource: "eformidling-dpv-taushetsbelagt".into(),
                confidential: true,
            },
        );
        cfg.fill_defaults();
        assert_eq!(cfg.check(), Vec::<String>::new());
        cfg
    }

    /// The stored contract view of a correspondence.
    fn stored(&self, id: Uuid) -> serde_json::Value {
        let path = self.root.join("correspondences").join(format!("{id}.json"));
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }

    /// SendersReference → how many correspondences the sim holds for it.
    fn created(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        let Ok(dir) = std::fs::read_dir(self.root.join("correspondences")) else {
            return out;
        };
        for e in dir {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
            let r = v["correspondence"]["sendersReference"]
                .as_str()
                .unwrap()
                .to_string();
            *out.entry(r).or_insert(0) += 1;
        }
        out
    }

    fn mark_read(&self, id: Uuid) {
        let api = &self.urls["api_base"];
        let base = &api[..api.find("/correspondence/api").unwrap()];
        let r = reqwest::blocking::Client::new()
            .post(format!("{base}/_sim/correspondence/{id}/read"))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
}

fn root_dir() -> PathBuf {
    root()
}

fn day(n: u64) -> String {
    dpv_batch::clock::format_time(SystemTime::now() + Duration::from_secs(n * 86_400))
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A batch of letters: (SendersReference, Reportee, attachment bytes).
fn batch(path: &Path, letters: &[(String, &str, Option<Vec<u8>>)]) {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Correspondences xmlns=\"http://schemas.altinn.no/services/intermediary/correspondence/2009/10\">\n<SystemUserCode>ABC-1</SystemUserCode><ShipmentReference>CLIENT</ShipmentReference>\n",
    );
    for (r, reportee, attachment) in letters {
        let att = attachment
            .as_ref()
            .map(|a| {
                format!(
                    "<Attachments><BinaryAttachments><BinaryAttachment><FileName>vedtak-{r}.pdf</FileName>\
                     <Name>Vedtak</Name><Encrypted>false</Encrypted><Data>{}</Data></BinaryAttachment>\
                     </BinaryAttachments></Attachments>",
                    b64(a)
                )
            })
            .unwrap_or_default();
        s.push_str(&format!(
            "<Correspondence><ServiceCode>4255</ServiceCode><ServiceEdition>10</ServiceEdition>\
             <SendersReference>{r}</SendersReference><Reportee>{reportee}</Reportee><Content>\
             <LanguageCode>1044</LanguageCode><MessageTitle>Vedtak {r}</MessageTitle>\
             <MessageBody>Hei</MessageBody>{att}</Content><DueDateTime>{}</DueDateTime>\
             <Notifications><Notification><ShipmentDateTime>{}</ShipmentDateTime>\
             <LanguageCode>1044</LanguageCode><NotificationType>VarselDPVMedRevarsel</NotificationType>\
             <TextTokens><TextToken><TokenNum>0</TokenNum><TokenValue>Hei $reporteeName$</TokenValue>\
             </TextToken></TextTokens><RecieverEndPoints><ReceiverEndPoint><TransportType>EmailPreferred\
             </TransportType></ReceiverEndPoint></RecieverEndPoints></Notification></Notifications>\
             </Correspondence>\n",
            day(30),
            day(1)
        ));
    }
    s.push_str("</Correspondences>\n");
    std::fs::write(path, s).unwrap();
}

fn split_batch(
    dir: &Path,
    cfg: &Altinn3Config,
    letters: &[(String, &str, Option<Vec<u8>>)],
) -> Vec<LetterMeta> {
    let part = dir.join("part.xml");
    batch(&part, letters);
    let opts = SplitOptions::new(cfg, Uuid::new_v4(), 0);
    let out = split(&part, &dir.join("letters"), &opts).unwrap();
    for l in &out {
        assert!(l.refused.is_empty(), "{:?}", l.refused);
    }
    out
}

/// Send until every letter is created (settling 409s with find), as the
/// pipeline does; returns the ids. Bounded: at most `rounds` rounds.
fn send_until_settled(client: &Client, letters: &[LetterMeta], rounds: usize) -> Vec<Uuid> {
    let mut ids: Vec<Option<Uuid>> = vec![None; letters.len()];
    for _ in 0..rounds {
        let pending: Vec<usize> = (0..letters.len()).filter(|&i| ids[i].is_none()).collect();
        if pending.is_empty() {
            break;
        }
        let batch: Vec<LetterMeta> = pending.iter().map(|&i| letters[i].clone()).collect();
        for (&i, outcome) in pending.iter().zip(client.send_many(&batch)) {
            match outcome {
                SendOutcome::Created {
                    correspondence_id, ..
                } => ids[i] = Some(correspondence_id),
                SendOutcome::AlreadyExists => {
                    match client.find(&letters[i].resource_id, letters[i].idempotent_key) {
                        Ok(Some(id)) => ids[i] = Some(id),
                        Ok(None) => panic!("409 but find() finds nothing"),
                        // The search itself met a 429/5xx: next round.
                        Err(CallError::Retry { .. }) => {}
                        Err(e) => panic!("find: {e}"),
                    }
                }
                SendOutcome::Retry { .. } => {}
                other => panic!("letter {i}: {other:?}"),
            }
        }
    }
    ids.into_iter()
        .map(|i| i.expect("every letter settled"))
        .collect()
}

#[test]
fn send_find_overview_refusal_and_409_against_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(
        &dir.path().join("sim"),
        &["--unknown-recipient", "931706691"],
    );
    let mut cfg = sim.config(dir.path());
    cfg.attachment_upload_threshold = 4096;
    let small = b"%PDF-1.4 small".to_vec();
    let large: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let letters = split_batch(
        dir.path(),
        &cfg,
        &[
            ("L-MULTIPART".into(), "974760673", Some(small.clone())),
            ("L-JSON".into(), "991825827", None),
            ("L-ATTACHMENT-API".into(), "974761076", Some(large.clone())),
            ("L-UNKNOWN".into(), "931706691", None),
        ],
    );
    let client = Client::new(&cfg).unwrap();
    client.check_connection().unwrap();
    assert_eq!(client.throttled(), None);

    let outcomes = client.send_many(&letters);
    let mut ids = Vec::new();
    for (l, o) in letters.iter().zip(&outcomes).take(3) {
        match o {
            SendOutcome::Created {
                correspondence_id,
                status,
            } => {
                assert!(
                    ["Initialized", "ReadyForPublish", "Published"].contains(&status.as_str()),
                    "{status}"
                );
                ids.push(*correspondence_id);
                let stored = sim.stored(*correspondence_id);
                let sent: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(l.request_path()).unwrap()).unwrap();
                let c = &stored["correspondence"];
                assert_eq!(c["sendersReference"], l.senders_reference.as_str());
                assert_eq!(stored["idempotentKey"], l.idempotent_key.to_string());
                assert_eq!(stored["recipients"], sent["recipients"]);
                assert_eq!(c["resourceId"], "eformidling-dpv-administrasjon");
                assert_eq!(
                    c["content"]["messageTitle"],
                    sent["correspondence"]["content"]["messageTitle"]
                );
                assert_eq!(c["notification"]["notificationChannel"], "EmailPreferred");
                assert_eq!(
                    c["notification"]["emailBody"],
                    "Hei $correspondenceRecipientName$"
                );
            }
            other => panic!("{}: {other:?}", l.senders_reference),
        }
    }
    // The multipart letter carried its file; the large one went by the
    // attachment API (existingAttachments, published first).
    let multipart = sim.stored(ids[0]);
    assert_eq!(
        multipart["correspondence"]["content"]["attachments"][0]["fileName"],
        "vedtak-L-MULTIPART.pdf"
    );
    let via_api = sim.stored(ids[2]);
    let existing = via_api["existingAttachments"].as_array().unwrap();
    assert_eq!(existing.len(), 1, "{via_api}");
    let att_id = existing[0].as_str().unwrap();
    let bytes = std::fs::read(sim.root.join("attachments").join(format!("{att_id}.bin"))).unwrap();
    assert_eq!(bytes, large, "the large attachment arrived byte for byte");

    // The unknown recipient: refused with Altinn's reason, the others unharmed.
    match &outcomes[3] {
        SendOutcome::Refused(p) => {
            assert_eq!((p.http, p.error_code), (404, Some(1029)), "{p}");
            assert!(p.trace_id.is_some(), "{p}");
        }
        other => panic!("{other:?}"),
    }

    // Again: 409 for each created letter, settled by find().
    let again = client.send_many(&letters[..3]);
    assert!(
        again.iter().all(|o| *o == SendOutcome::AlreadyExists),
        "{again:?}"
    );
    for (l, id) in letters.iter().zip(&ids) {
        assert_eq!(client.find(&l.resource_id, l.idempotent_key), Ok(Some(*id)));
    }
    assert_eq!(
        client.find("eformidling-dpv-administrasjon", Uuid::new_v4()),
        Ok(None)
    );
    let created = sim.created();
    assert_eq!(created.len(), 3);
    assert!(created.values().all(|&n| n == 1));

    // Overview: Published (publish delay 0), then Read through the test hook.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = client.overview(ids[1]).unwrap().unwrap();
        if o.status == "Published" {
            assert!(o.published.is_some());
            break;
        }
        assert!(Instant::now() < deadline, "not published: {o:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    sim.mark_read(ids[1]);
    let o = client.overview(ids[1]).unwrap().unwrap();
    assert_eq!(o.status, "Read");
    assert!(o.read.is_some());
    assert_eq!(client.overview(Uuid::new_v4()), Ok(None));

    // A letter with A3 findings never reaches Altinn, whatever the caller does.
    let mut refused = letters[1].clone();
    refused.idempotent_key = Uuid::new_v4();
    refused.refused.push(dpv_batch::validate::Finding {
        line: 7,
        column: 1,
        code: "A3009".into(),
        layer: dpv_batch::validate::Layer::Altinn3,
        message: "DueDateTime is in the past".into(),
    });
    match &client.send_many(&[refused])[0] {
        SendOutcome::Refused(p) => {
            assert_eq!((p.http, p.code.as_deref()), (0, Some("A3009")));
            assert!(p.detail.contains("in the past"), "{p}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.created().len(), 3);
}

#[test]
fn throttling_errors_and_dropped_answers_still_create_each_letter_once() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(
        &dir.path().join("sim"),
        &[
            "--rate-429",
            "0.2",
            "--rate-5xx",
            "0.1",
            "--drop-after-commit",
            "0.15",
        ],
    );
    let mut cfg = sim.config(dir.path());
    cfg.concurrency = 8;
    cfg.attachment_upload_threshold = 2048;
    let letters: Vec<(String, &str, Option<Vec<u8>>)> = (0..24)
        .map(|i| {
            let att = match i % 3 {
                0 => None,
                1 => Some(vec![b'x'; 100]),
                _ => Some(vec![b'y'; 5000]),
            };
            (format!("STORM-{i:03}"), "974760673", att)
        })
        .collect();
    let letters = split_batch(dir.path(), &cfg, &letters);
    let client = Client::new(&cfg).unwrap();
    let ids = send_until_settled(&client, &letters, 30);
    assert_eq!(ids.len(), 24);
    let created = sim.created();
    assert_eq!(created.len(), 24, "{created:?}");
    for (r, n) in &created {
        assert_eq!(*n, 1, "{r} created {n} times");
    }
    assert!(client.throttled().is_some(), "429s were seen");
    assert!(client.concurrency_now() < 8 || client.throttled().is_some());
}

#[test]
fn a_wrong_audience_or_unknown_key_is_named_before_any_letter_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&dir.path().join("sim"), &[]);
    let mut cfg = sim.config(dir.path());
    cfg.audience = "https://maskinporten.no/".into();
    let client = Client::new(&cfg).unwrap();
    let e = client.check_connection().unwrap_err();
    assert_ne!(e.step, Step::Api, "{e}");
    assert!(
        e.to_string().contains("Maskinporten refused the grant"),
        "{e}"
    );

    // A key the client is not registered with.
    let other = dir.path().join("other.pem");
    let ok = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&other)
        .arg("2048")
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut cfg = sim.config(dir.path());
        cfg.private_key = other;
        let client = Client::new(&cfg).unwrap();
        let e = client.check_connection().unwrap_err();
        assert_eq!(e.step, Step::Key, "{e}");
        // Sending stops for everyone, with the reason.
        let letters = split_batch(dir.path(), &cfg, &[("K-1".into(), "974760673", None)]);
        match &client.send_many(&letters)[0] {
            SendOutcome::Stop(m) => assert!(m.contains("key step"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            client.find("eformidling-dpv-administrasjon", Uuid::new_v4()),
            Err(CallError::Stop(_))
        ));
    }
}
