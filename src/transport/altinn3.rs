//! The Altinn 3 transport: letter by letter through the Correspondence API,
//! exactly once. It adapts [`crate::altinn3::letters::split`] (a packaged
//! part → one folder per letter, each with its idempotent key) and
//! [`crate::altinn3::client::Client`] (the HTTP calls) to [`Transport`]:
//!
//! - **prepare**: a packaged part is split into letters; each becomes a part
//!   of its own, journalled with its idempotent key before anything is sent.
//!   A letter our A3 rules refuse is journalled as refused and never sent.
//! - **submit**: a batch of letters goes out with up to `concurrency` calls
//!   in flight, and Altinn answers each at once: created (id and status) or
//!   refused (for that letter only: Altinn's `code`, `detail`, `traceId`).
//!   The client retries 408/429/5xx and network failures with backoff,
//!   jitter and Retry-After; what still fails comes back as
//!   [`Submitted::Retry`] and the letter stays in flight. A 409 (errorCode
//!   1034, "key taken") means an earlier call of ours created it: it is
//!   settled by searching for the key, so nothing is created twice.
//! - **settle**: a letter whose outcome is unknown (a crash between the
//!   journal and the answer, a lost answer) is looked up by its idempotent
//!   key; found: created, with its id; not found: sent again, same key.
//! - **collect**: sent letters are polled (`GET /correspondence/{id}`), less
//!   often as they age, until a final status; what is new (published,
//!   failed with Altinn's reason, reserved, read) becomes letter news.
//! - a call that says the transport is unusable for everyone (a refused
//!   token, 403, 4001) is a permanent error: the pipeline stops sending and
//!   `status` says why; Altinn throttling us is said too.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tracing::{info, warn};
use uuid::Uuid;

use super::{News, Outgoing, PrepareContext, Result, Submitted, Transport, TransportError};
use crate::altinn3::client::{CallError, Client, Overview, SendOutcome};
use crate::altinn3::letters::{self, AttachmentMeta, LetterMeta, SplitOptions};
use crate::config::{Altinn3Config, ReceiptAfter};
use crate::journal::{Answer, LetterEvent, NewLetter, NewPart, PollRow, Refusal, StatusUpdate};
use crate::package::{self, PackError};

/// Letters per `submit` call, per letter allowed in flight: enough that the
/// journal's two transactions per batch cost little next to the calls.
const BATCH_PER_SLOT: usize = 8;

/// A sent letter is not polled any more once it is this old without a
/// final status (a letter nobody reads would be polled for ever).
const POLL_FOR: Duration = Duration::from_secs(60 * 24 * 3600);

/// The longest pause between two looks at a letter.
const POLL_MAX: Duration = Duration::from_secs(3600);

pub struct Altinn3 {
    client: Client,
    cfg: Altinn3Config,
}

/// The transport for `[transport.altinn3]`. Reads the key now; no network.
pub fn open(config: &crate::config::Config) -> Result<Box<dyn Transport>> {
    let cfg = config.transport.altinn3.clone().ok_or_else(|| {
        TransportError::permanent(
            "transport.kind is altinn3 but there is no [transport.altinn3] section",
        )
    })?;
    let client = Client::new(&cfg).map_err(|e| TransportError::permanent(e.0))?;
    Ok(Box::new(Altinn3 { client, cfg }))
}

/// How long after its requested publish time an unpublished letter shows
/// as overdue in `status`.
pub fn overdue_after(cfg: &crate::config::Config) -> Duration {
    cfg.transport
        .altinn3
        .as_ref()
        .map(|a| a.overdue_after)
        .unwrap_or(Duration::from_secs(3600))
}

/// `check-config --connect`: a token, the exchange, one harmless read.
pub fn check_connection(cfg: &Altinn3Config) -> std::result::Result<(), String> {
    let client = Client::new(cfg).map_err(|e| e.0)?;
    client.check_connection().map_err(|e| e.to_string())
}

impl Altinn3 {
    /// A journalled letter as the client wants it: the folder `split`
    /// wrote (its request and attachment files), with the journalled key.
    fn meta(&self, out: &Outgoing) -> std::result::Result<LetterMeta, String> {
        let l = out
            .letters
            .first()
            .ok_or_else(|| format!("part {} has no letter", out.part.remote_name))?;
        let key = l
            .idempotent_key
            .as_deref()
            .and_then(|k| Uuid::parse_str(k).ok())
            .ok_or_else(|| format!("letter {} has no idempotent key", l.senders_reference))?;
        let request = read_request(&out.path)?;
        let names: Vec<String> = request["correspondence"]["content"]["attachments"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|a| a["fileName"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let mut attachments = Vec::with_capacity(names.len());
        for (i, file_name) in names.into_iter().enumerate() {
            let path = out.path.join(format!("a{:03}.bin", i + 1));
            let bytes = fs::metadata(&path)
                .map_err(|e| format!("{} cannot be read: {e}", path.display()))?
                .len();
            attachments.push(AttachmentMeta {
                file_name,
                path,
                bytes,
            });
        }
        Ok(LetterMeta {
            index: (out.part.part_no.max(1)) as u32,
            senders_reference: l.senders_reference.clone(),
            reportee: l.reportee.clone(),
            resource_id: l.resource_id.clone().unwrap_or_default(),
            idempotent_key: key,
            dir: out.path.clone(),
            attachments,
            refused: Vec::new(),
        })
    }

    /// A 409 (key taken): the correspondence an earlier call of ours made.
    fn settle_one(&self, out: &Outgoing) -> Result<Option<Submitted>> {
        let l = out
            .letters
            .first()
            .ok_or_else(|| TransportError::permanent("a letter part without its letter"))?;
        let key = l
            .idempotent_key
            .as_deref()
            .and_then(|k| Uuid::parse_str(k).ok())
            .ok_or_else(|| TransportError::permanent("a letter without its idempotent key"))?;
        let resource = l.resource_id.as_deref().unwrap_or_default();
        match self.client.find(resource, key) {
            Ok(Some(id)) => {
                // Its status, for the receipt; polling corrects it later.
                let status = match self.client.overview(id) {
                    Ok(Some(o)) => o.status,
                    _ => "Initialized".to_string(),
                };
                info!(letter = %l.senders_reference, correspondence = %id, "found by its idempotent key");
                Ok(Some(Submitted::Answered(Answer::Created {
                    correspondence_id: id.to_string(),
                    status,
                })))
            }
            Ok(None) => Ok(None),
            Err(e) => call_error(e).map(Some),
        }
    }

    /// The next look at a letter created `age` ago.
    fn poll_after(&self, age: Duration) -> Option<Duration> {
        if age > POLL_FOR {
            return None;
        }
        // A tenth of its age, between the configured interval and an hour:
        // fresh letters change fast, old ones rarely.
        Some((age / 10).clamp(self.cfg.poll_interval, POLL_MAX.max(self.cfg.poll_interval)))
    }

    /// What one look at a letter found, and what is new since the last.
    fn status_update(&self, row: &PollRow, found: Option<Overview>) -> StatusUpdate {
        let now = crate::clock::now();
        let age = Duration::from_secs(row.age_seconds.max(0) as u64);
        let Some(o) = found else {
            // Altinn no longer knows it (purged): nothing more will come.
            warn!(correspondence = %row.correspondence_id, "Altinn no longer knows this correspondence (404); polling stops");
            return StatusUpdate {
                letter_id: row.letter_id,
                status: "NotFound".into(),
                status_text: Some("Altinn no longer knows this correspondence".into()),
                published_at: None,
                read_at: None,
                events: Vec::new(),
                next_poll: None,
            };
        };
        let mut events = Vec::new();
        let was = row.altinn_status.as_deref();
        if o.status == "Reserved" && was != Some("Reserved") {
            events.push((LetterEvent::Reserved, now.clone(), o.status_text.clone()));
        }
        let published = o.published.is_some() || status::published(Some(&o.status));
        let published_at = published.then(|| o.published.clone().unwrap_or_else(|| now.clone()));
        if row.published_at.is_none() {
            if let Some(at) = &published_at {
                events.push((LetterEvent::Published, at.clone(), None));
            }
        }
        if status::failed(Some(&o.status)) && !status::failed(was) {
            events.push((
                LetterEvent::Failed,
                now.clone(),
                Some(
                    o.status_text
                        .clone()
                        .unwrap_or_else(|| "no reason given".into()),
                ),
            ));
        }
        if row.read_at.is_none() {
            if let Some(at) = &o.read {
                events.push((LetterEvent::Read, at.clone(), None));
            }
        }
        let done = status::is_final(Some(&o.status)) || o.read.is_some();
        StatusUpdate {
            letter_id: row.letter_id,
            status: o.status,
            status_text: o.status_text,
            published_at,
            read_at: o.read,
            events,
            next_poll: if done { None } else { self.poll_after(age) },
        }
    }
}

impl Transport for Altinn3 {
    fn describe(&self) -> String {
        format!("altinn3 {}", self.cfg.api_base)
    }

    fn prepare(
        &mut self,
        part: &package::Part,
        dir: &Path,
        ctx: &PrepareContext<'_>,
    ) -> std::result::Result<Vec<NewPart>, PackError> {
        let opts = SplitOptions::new(&self.cfg, key_namespace(ctx.installation_id), 0);
        let folder = format!("{:05}", part.part_no);
        let out_dir = dir.join(&folder);
        let metas = letters::split(&part.path, &out_dir, &opts).map_err(|e| match e {
            letters::SplitError::Io(e) => PackError::Io(e),
            letters::SplitError::Input(m) => PackError::Input(m),
        })?;
        // The letters hold everything now; the part is not needed any more.
        let _ = fs::remove_file(&part.path);
        let stem = part.remote_name.trim_end_matches(".xml");
        let mut parts = Vec::with_capacity(metas.len());
        for (n, m) in metas.iter().enumerate() {
            let local = format!("{folder}/L{:05}", m.index);
            let publish_at = read_request(&m.dir).ok().and_then(|r| {
                r["correspondence"]["requestedPublishTime"]
                    .as_str()
                    .map(str::to_string)
            });
            let json = fs::metadata(m.request_path()).map(|m| m.len()).unwrap_or(0);
            let answer = (!m.refused.is_empty()).then(|| {
                Answer::Refused(Refusal {
                    http: None,
                    error_code: None,
                    code: m.refused.first().map(|f| f.code.clone()),
                    detail: m
                        .refused
                        .iter()
                        .map(|f| format!("[{}] {}", f.code, f.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                    trace_id: None,
                })
            });
            parts.push(NewPart {
                part_no: ctx.first_part_no + n as i64,
                remote_name: format!("{stem}-L{:05}", m.index),
                local,
                shipment_reference: part.shipment_reference.clone(),
                sequence_no: None,
                sequence_slot: None,
                bytes: (json + m.attachment_bytes()) as i64,
                letters: vec![NewLetter {
                    idempotent_key: Some(m.idempotent_key.to_string()),
                    resource_id: Some(m.resource_id.clone()),
                    publish_at,
                    ..NewLetter::new(&m.senders_reference, &m.reportee)
                }],
                answer,
            });
        }
        Ok(parts)
    }

    fn batch_size(&self) -> usize {
        // As many as the calls allowed in flight now (fewer while Altinn
        // throttles us), so a batch takes about as long whatever the rate.
        self.client.concurrency_now().max(1) * BATCH_PER_SLOT
    }

    fn submit(&mut self, parts: &[Outgoing]) -> Vec<Result<Submitted>> {
        let mut results: Vec<Option<Result<Submitted>>> = (0..parts.len()).map(|_| None).collect();
        let mut metas = Vec::with_capacity(parts.len());
        let mut at = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            match self.meta(p) {
                Ok(m) => {
                    metas.push(m);
                    at.push(i);
                }
                Err(e) => {
                    results[i] = Some(Err(TransportError::transient(format!(
                        "letter {} cannot be sent as it is: {e}",
                        p.part.remote_name
                    ))))
                }
            }
        }
        let outcomes = self.client.send_many(&metas);
        // 409s are settled by searching for the key, several at once.
        let mut taken = Vec::new();
        for (&i, outcome) in at.iter().zip(outcomes) {
            results[i] = Some(match outcome {
                SendOutcome::Created {
                    correspondence_id,
                    status,
                } => Ok(Submitted::Answered(Answer::Created {
                    correspondence_id: correspondence_id.to_string(),
                    status,
                })),
                SendOutcome::Refused(p) => Ok(Submitted::Answered(Answer::Refused(Refusal {
                    http: Some(p.http),
                    error_code: p.error_code,
                    code: p.code,
                    detail: p.detail,
                    trace_id: p.trace_id,
                }))),
                SendOutcome::Retry { reason, after } => Ok(Submitted::Retry { reason, after }),
                SendOutcome::Stop(m) => Err(TransportError::permanent(m)),
                SendOutcome::AlreadyExists => {
                    taken.push(i);
                    continue;
                }
            });
        }
        let settled = in_parallel(&taken, self.cfg.concurrency, |&i| {
            self.settle_one(&parts[i])
        });
        for (i, s) in taken.into_iter().zip(settled) {
            results[i] = Some(match s {
                Ok(Some(s)) => Ok(s),
                // Taken, yet not found: Altinn's search lags; look again later.
                Ok(None) => Ok(Submitted::Retry {
                    reason: "Altinn says the idempotent key is taken but finds no \
                             correspondence with it yet"
                        .into(),
                    after: None,
                }),
                Err(e) => Err(e),
            });
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(TransportError::transient("internal: no outcome"))))
            .collect()
    }

    fn settle(&mut self, parts: &[Outgoing]) -> Vec<Result<Option<Submitted>>> {
        in_parallel(parts, self.cfg.concurrency, |p| self.settle_one(p))
    }

    fn collect(&mut self, due: &[PollRow]) -> Result<Vec<News>> {
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let looked = in_parallel(due, self.cfg.concurrency, |row| {
            let id = Uuid::parse_str(&row.correspondence_id)
                .map_err(|e| CallError::Stop(format!("correspondence id: {e}")))?;
            self.client.overview(id)
        });
        let mut updates = Vec::with_capacity(due.len());
        let mut trouble = None;
        for (row, found) in due.iter().zip(looked) {
            match found {
                Ok(o) => updates.push(self.status_update(row, o)),
                Err(CallError::Stop(m)) => trouble = Some(TransportError::permanent(m)),
                Err(e) => {
                    // Look again later, as if nothing changed.
                    warn!(correspondence = %row.correspondence_id, error = %e, "cannot look at a letter's status");
                    updates.push(StatusUpdate {
                        letter_id: row.letter_id,
                        status: row.altinn_status.clone().unwrap_or_default(),
                        status_text: None,
                        published_at: None,
                        read_at: None,
                        events: Vec::new(),
                        next_poll: self
                            .poll_after(Duration::from_secs(row.age_seconds.max(0) as u64)),
                    });
                }
            }
        }
        match trouble {
            Some(t) if updates.is_empty() => Err(t),
            _ => Ok(vec![News::Statuses(updates)]),
        }
    }

    fn first_poll(&self) -> Duration {
        self.cfg.poll_interval
    }

    fn receipt_waits_for_publication(&self) -> bool {
        self.cfg.receipt_after == ReceiptAfter::Published
    }

    fn parts_in_receipt(&self) -> bool {
        false
    }

    fn condition(&self) -> Option<String> {
        self.client.throttled()
    }
}

/// The namespace of this installation's idempotent keys: a UUIDv5 of its
/// installation id (`state/installation-id`, kept in the journal too), so
/// the same letter gets the same key after any restart, and another
/// installation's letters never share one.
pub fn key_namespace(installation_id: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("dpv-batch/installation/{installation_id}").as_bytes(),
    )
}

/// A letter folder's request (`letter.json`), as JSON.
fn read_request(dir: &Path) -> std::result::Result<serde_json::Value, String> {
    let path = dir.join("letter.json");
    let bytes = fs::read(&path).map_err(|e| format!("{} cannot be read: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

/// A read call's failure as a settle/submit result.
fn call_error(e: CallError) -> Result<Submitted> {
    match e {
        CallError::Retry { reason, after } => Ok(Submitted::Retry { reason, after }),
        CallError::Refused(p) => Err(TransportError::transient(format!(
            "Altinn refused a search for a letter's key: {p}"
        ))),
        CallError::Stop(m) => Err(TransportError::permanent(m)),
    }
}

/// `f` over `items` on up to `n` threads (the client's calls block their
/// caller), results in input order.
fn in_parallel<T: Sync, R: Send>(items: &[T], n: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if items.len() <= 1 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut out: Vec<(usize, R)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..n.clamp(1, items.len()))
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        mine.push((i, f(item)));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// What Altinn 3's correspondence statuses mean for us (reference §3.1):
/// the one place that knows.
pub mod status {
    /// Published, or something only a published letter can reach.
    pub fn published(status: Option<&str>) -> bool {
        matches!(
            status,
            Some(
                "Published"
                    | "Fetched"
                    | "Read"
                    | "Replied"
                    | "Confirmed"
                    | "PurgedByRecipient"
                    | "Archived"
                    | "AttachmentsDownloaded"
                    | "Forwarded"
            )
        )
    }

    /// Altinn could not publish it.
    pub fn failed(status: Option<&str>) -> bool {
        status == Some("Failed")
    }

    /// Nothing more will happen to it that we report: stop looking.
    /// (`NotFound`: Altinn no longer knows it, e.g. purged.)
    pub fn is_final(status: Option<&str>) -> bool {
        matches!(
            status,
            Some("Failed" | "PurgedByAltinn" | "PurgedByRecipient" | "Archived" | "NotFound")
        )
    }
}
