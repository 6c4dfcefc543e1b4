//! The Altinn 3 Correspondence API client: a synchronous facade over an
//! async HTTP client with a runtime of its own.
//!
//! Why this shape:
//! - The pipeline is synchronous and runs inside the daemon's
//!   current-thread tokio runtime; blocking that runtime on a future of its
//!   own would deadlock. So the client owns a small multi-thread runtime,
//!   spawns its work there and waits on a plain channel ([`Client::run`]).
//! - One batch is many letters: [`Client::send_many`] keeps up to
//!   `concurrency` calls in flight and answers in input order.
//! - Altinn publishes no rate limit for Correspondence. We honour 429/503
//!   with `Retry-After` (everyone pauses, not only the unlucky call), halve
//!   the calls in flight on a 429 and grow back by one per window of
//!   successes (AIMD, as TCP does), shrink on slow answers, and can hold to
//!   our own `max_requests_per_second`. [`Client::throttled`] says so.
//! - Every answer is classified once ([`classify`]): 4xx except
//!   408/409/429 are permanent for that letter (`Refused`, with Altinn's
//!   `code`, `detail` and `traceId`); 409/1034 means the idempotent key is
//!   taken (`AlreadyExists`: settle with [`Client::find`]); 408/429/5xx and
//!   network failures may have happened or not (`Retry`); a second 401, a
//!   403 or 4001 concern every letter (`Stop`).
//! - Attachments stream from their files: in the multipart
//!   `POST /correspondence/upload` up to `attachment_upload_threshold`,
//!   above it through the attachment API (`POST /attachment`, upload,
//!   wait for Published, then `existingAttachments`).
//! - `Accept: application/json` on every API call (Altinn answers 406
//!   otherwise). Tokens come from [`super::auth`] and never reach a log.

use std::path::Path;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, ACCEPT, RETRY_AFTER};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use uuid::Uuid;

use super::auth::{self, Auth, AuthError, Step};
use super::letters::LetterMeta;
use super::model::{
    AttachmentOverview, CorrespondenceOverview, InitializeAttachment, InitializeCorrespondences,
    InitializeResponse, ProblemDetails, SearchResult,
};
use crate::config::Altinn3Config;

/// Why the client cannot be built.
#[derive(Debug)]
pub struct ClientError(pub String);

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClientError {}

/// What Altinn said when it refused something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub http: u16,
    /// Altinn's numeric error (`errorCode`, e.g. 1029), when it gave one.
    pub error_code: Option<i64>,
    /// Altinn's code (`CORR-01029`, `STD-00000`), when it gave one.
    pub code: Option<String>,
    pub detail: String,
    pub trace_id: Option<String>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.http)?;
        if let Some(c) = &self.code {
            write!(f, " {c}")?;
        }
        if let Some(e) = self.error_code {
            write!(f, " (errorCode {e})")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        if let Some(t) = &self.trace_id {
            write!(f, " [traceId {t}]")?;
        }
        Ok(())
    }
}

/// The outcome of sending one letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Created {
        correspondence_id: Uuid,
        status: String,
    },
    /// 409 / errorCode 1034: the idempotent key is taken; settle with `find`.
    AlreadyExists,
    /// Permanent for this letter (4xx except 408/409/429).
    Refused(Problem),
    /// 408/429/5xx/network: the outcome is unknown, try again later.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Unusable for everyone (auth after one refresh, 403, 4001, bad config).
    Stop(String),
}

/// Why a read call (find, overview) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Refused(Problem),
    Stop(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Retry { reason, .. } => write!(f, "{reason} (will retry)"),
            CallError::Refused(p) => write!(f, "refused: {p}"),
            CallError::Stop(m) => write!(f, "{m}"),
        }
    }
}

/// A sent letter's state, from `GET /correspondence/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overview {
    pub status: String,
    pub status_text: Option<String>,
    pub published: Option<String>,
    pub read: Option<String>,
}

/// `check_connection`'s verdict: which step failed, in plain words.
#[derive(Debug, Clone)]
pub struct ConnectError {
    pub step: Step,
    pub message: String,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the {} step failed: {}", self.step, self.message)
    }
}

impl From<AuthError> for ConnectError {
    fn from(e: AuthError) -> Self {
        ConnectError {
            step: e.step,
            message: e.message,
        }
    }
}

/// How often a send is tried inside one `send_many` before it is handed
/// back as `Retry` (the pipeline tries again later).
const SEND_TRIES: u32 = 3;
/// Longest pause inside `send_many` (a longer Retry-After is handed back).
const MAX_INNER_WAIT: Duration = Duration::from_secs(30);
/// Longest answer body read (ProblemDetails, JSON responses).
const MAX_ANSWER: usize = 1024 * 1024;
/// Waiting for an uploaded attachment to be Published (malware scan).
const ATTACHMENT_PUBLISH_WAIT: Duration = Duration::from_secs(15 * 60);
/// `POST /correspondence` with attachments not yet published (1018): tries.
const UNPUBLISHED_TRIES: u32 = 6;

/// The client. Cheap to share by reference; `send_many` runs in parallel.
pub struct Client {
    rt: Option<tokio::runtime::Runtime>,
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    auth: Auth,
    api: String,
    threshold: u64,
    request_timeout: Duration,
    /// The first configured resource: what `check_connection` reads.
    probe_resource: Option<String>,
    gate: Gate,
    pace: Pace,
}

impl Drop for Client {
    fn drop(&mut self) {
        // Dropping a runtime inside another runtime's context panics;
        // shutting it down in the background never does.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Client {
    pub fn new(cfg: &Altinn3Config) -> Result<Client, ClientError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("altinn3")
            .enable_all()
            .build()
            .map_err(|e| ClientError(format!("cannot start the Altinn 3 client's runtime: {e}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("dpv-batch/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(cfg.concurrency.max(1))
            .build()
            .map_err(|e| ClientError(format!("cannot build the HTTP client: {e}")))?;
        let auth = Auth::new(cfg, http.clone()).map_err(|e| ClientError(e.to_string()))?;
        let max = cfg.concurrency.max(1);
        Ok(Client {
            rt: Some(rt),
            inner: Arc::new(Inner {
                http,
                auth,
                api: cfg.api_base.trim_end_matches('/').to_string(),
                threshold: cfg.attachment_upload_threshold,
                request_timeout: cfg.request_timeout,
                probe_resource: cfg
                    .resources
                    .values()
                    .next()
                    .map(|r| r.resource().to_string()),
                gate: Gate::new(max),
                pace: Pace::new(cfg.max_requests_per_second),
            }),
        })
    }

    /// Run a future on the client's runtime and wait for it on this thread
    /// (never `block_on` on the caller's runtime).
    fn run<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let rt = self.rt.as_ref()?;
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().ok()
    }

    /// Send every letter, up to `concurrency` at once; the outcomes are in
    /// input order. A letter with A3 findings is never sent: it comes back
    /// `Refused` with them.
    ///
    /// `concurrency` workers take letters off one queue (rather than a task
    /// per letter waiting at the gate: 10,000 waiters woken on every release
    /// would cost more than the calls).
    pub fn send_many(&self, letters: &[LetterMeta]) -> Vec<SendOutcome> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let inner = self.inner.clone();
        let letters = Arc::new(letters.to_vec());
        let n = letters.len();
        self.run(async move {
            let next = Arc::new(AtomicUsize::new(0));
            let results: Arc<StdMutex<Vec<Option<SendOutcome>>>> =
                Arc::new(StdMutex::new(vec![None; n]));
            let workers: Vec<_> = (0..inner.gate.max.min(n))
                .map(|_| {
                    let (inner, letters, next, results) = (
                        inner.clone(),
                        letters.clone(),
                        next.clone(),
                        results.clone(),
                    );
                    tokio::spawn(async move {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(l) = letters.get(i) else { break };
                            let outcome = inner.send(l).await;
                            if let Ok(mut r) = results.lock() {
                                r[i] = Some(outcome);
                            }
                        }
                    })
                })
                .collect();
            for w in workers {
                let _ = w.await;
            }
            let mut results = results
                .lock()
                .map(|mut r| std::mem::take(&mut *r))
                .unwrap_or_default();
            results.resize(n, None);
            results
                .into_iter()
                .map(|o| {
                    o.unwrap_or_else(|| SendOutcome::Retry {
                        reason: "internal: the send task ended abnormally".into(),
                        after: None,
                    })
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_else(|| {
            vec![
                SendOutcome::Retry {
                    reason: "internal: the client's runtime is gone".into(),
                    after: None,
                };
                n
            ]
        })
    }

    /// The correspondence created with `key`, if any (`GET /correspondence?
    /// resourceId=..&role=Sender&idempotentKey=..`).
    pub fn find(&self, resource_id: &str, key: Uuid) -> Result<Option<Uuid>, CallError> {
        let inner = self.inner.clone();
        let resource = resource_id.to_string();
        self.run(async move { inner.find(&resource, key).await })
            .unwrap_or_else(|| Err(gone()))
    }

    /// A sent letter's state; `None` when Altinn no longer knows it (404).
    pub fn overview(&self, id: Uuid) -> Result<Option<Overview>, CallError> {
        let inner = self.inner.clone();
        self.run(async move { inner.overview(id).await })
            .unwrap_or_else(|| Err(gone()))
    }

    /// Token, exchange, and one harmless read; the failed step in words.
    pub fn check_connection(&self) -> Result<(), ConnectError> {
        let inner = self.inner.clone();
        self.run(async move { inner.check_connection().await })
            .unwrap_or_else(|| {
                Err(ConnectError {
                    step: Step::Api,
                    message: "internal: the client's runtime is gone".into(),
                })
            })
    }

    /// Whether Altinn is throttling us, in words (for `status`).
    pub fn throttled(&self) -> Option<String> {
        self.inner.gate.throttled()
    }

    /// The calls allowed in flight now (adaptive; for tests and `status`).
    pub fn concurrency_now(&self) -> usize {
        self.inner.gate.limit()
    }
}

fn gone() -> CallError {
    CallError::Retry {
        reason: "internal: the client's runtime is gone".into(),
        after: None,
    }
}

/// One answer, read.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    latency: Duration,
}

/// What to do with an answer that is not a success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    AlreadyExists,
    Refused(Problem),
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// The token was refused: refresh once, then Stop.
    Unauthorized(Problem),
    Stop(String),
}

/// The one place that decides what an HTTP answer means.
pub fn classify(status: u16, headers: &HeaderMap, body: &[u8]) -> Verdict {
    let problem = problem_of(status, body);
    let after = retry_after(headers);
    match (status, problem.error_code) {
        (409, _) | (_, Some(1034)) => Verdict::AlreadyExists,
        (_, Some(4001)) => Verdict::Stop(format!(
            "Altinn says this client has no access to the resource: {problem} (give the \
             organisation access to the resource, or check transport.altinn3.resources)"
        )),
        (401, _) => Verdict::Unauthorized(problem),
        (403, _) => Verdict::Stop(format!(
            "Altinn refused the token: {problem} (a Maskinporten token where an Altinn token \
             is needed? check exchange_url and scopes)"
        )),
        (406, _) => Verdict::Stop(format!("Altinn refused our Accept header: {problem}")),
        (451, _) | (_, Some(2014)) => Verdict::Stop(format!(
            "Altinn says the service owner is not set up for Correspondence: {problem}"
        )),
        (408 | 429, _) | (500..=599, _) => Verdict::Retry {
            reason: format!("Altinn answered {problem}"),
            after,
        },
        (400..=499, _) => Verdict::Refused(problem),
        _ => Verdict::Retry {
            reason: format!("Altinn answered an unexpected {problem}"),
            after,
        },
    }
}

/// ProblemDetails from a body (JSON or not).
fn problem_of(status: u16, body: &[u8]) -> Problem {
    match serde_json::from_slice::<ProblemDetails>(body) {
        Ok(p) => Problem {
            http: status,
            error_code: p.error_code,
            code: p.code.as_deref().map(|c| auth::printable(c, 40)),
            detail: auth::printable(&p.summary(), 1000),
            trace_id: p.trace_id.as_deref().map(|t| auth::printable(t, 100)),
        },
        Err(_) => Problem {
            http: status,
            error_code: None,
            code: None,
            detail: auth::printable(&String::from_utf8_lossy(body), 300),
            trace_id: None,
        },
    }
}

/// `Retry-After` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(3600)));
    }
    let fmt = time::format_description::well_known::Rfc2822;
    let at = time::OffsetDateTime::parse(v, &fmt).ok()?;
    let secs = (at - time::OffsetDateTime::now_utc()).whole_seconds();
    Some(Duration::from_secs(secs.clamp(0, 3600) as u64))
}

fn network_verdict(e: &reqwest::Error) -> Verdict {
    Verdict::Retry {
        reason: format!("no answer from Altinn: {}", auth::describe(e)),
        after: None,
    }
}

/// The wait before retry `try_no` (0: the first): 0.5 s, 1 s, 2 s ...
/// with jitter, at most 2 min ([`crate::backoff`]).
fn backoff(try_no: u32) -> Duration {
    crate::backoff::delay(Duration::from_millis(500), Duration::from_secs(128), try_no)
}

impl Inner {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    /// One API call with a token (refreshed once on 401), the gate and pace.
    /// `build` makes the request afresh for each try (bodies are streams).
    async fn call(
        &self,
        build: &(dyn Fn() -> Result<reqwest::RequestBuilder, String> + Sync),
    ) -> Result<Answer, Verdict> {
        self.call_timed(build, true).await
    }

    /// `call`, saying whether the answer's latency tells how loaded Altinn
    /// is (not for uploads, whose time grows with their size).
    async fn call_timed(
        &self,
        build: &(dyn Fn() -> Result<reqwest::RequestBuilder, String> + Sync),
        judge_latency: bool,
    ) -> Result<Answer, Verdict> {
        let mut refreshed = false;
        loop {
            let token = self.auth.token().await.map_err(auth_verdict)?;
            let _permit = self.gate.acquire().await;
            self.pace.wait().await;
            let req = build()
                .map_err(Verdict::Stop)?
                .bearer_auth(token.secret.expose())
                .header(ACCEPT, "application/json");
            let started = Instant::now();
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    self.gate.failed();
                    return Err(network_verdict(&e));
                }
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = match auth::read_capped(resp, MAX_ANSWER).await {
                Ok(b) => b,
                Err(e) => {
                    self.gate.failed();
                    return Err(network_verdict(&e));
                }
            };
            let latency = started.elapsed();
            if status.as_u16() == 429 || status.as_u16() == 503 {
                let after = retry_after(&headers);
                self.gate.throttle(status.as_u16(), after);
            } else {
                self.gate.succeeded(judge_latency.then_some(latency));
            }
            if status.as_u16() == 401 && !refreshed {
                // The token may have expired early or been revoked: once more
                // with a new one.
                self.auth.invalidate(token.generation).await;
                refreshed = true;
                continue;
            }
            return Ok(Answer {
                status,
                headers,
                body,
                latency,
            });
        }
    }

    /// A call whose success is JSON of type `T`.
    async fn call_json<T: DeserializeOwned>(
        &self,
        build: &(dyn Fn() -> Result<reqwest::RequestBuilder, String> + Sync),
    ) -> Result<(StatusCode, T), Verdict> {
        self.upload_json(build, false).await
    }

    /// `call_json` for a request whose body is a file (`upload`: its
    /// latency says nothing about Altinn's load).
    async fn upload_json<T: DeserializeOwned>(
        &self,
        build: &(dyn Fn() -> Result<reqwest::RequestBuilder, String> + Sync),
        upload: bool,
    ) -> Result<(StatusCode, T), Verdict> {
        let a = self.call_timed(build, !upload).await?;
        if !a.status.is_success() {
            return Err(verdict_of(&a));
        }
        tracing::debug!(status = %a.status, ms = a.latency.as_millis() as u64, "altinn3 call");
        serde_json::from_slice(&a.body)
            .map(|t| (a.status, t))
            .map_err(|e| Verdict::Retry {
                reason: format!(
                    "Altinn answered HTTP {} with JSON we cannot read ({e}); it may be another \
                     API version",
                    a.status
                ),
                after: None,
            })
    }

    async fn send(&self, l: &LetterMeta) -> SendOutcome {
        if let Some(first) = l.refused.first() {
            // Altinn would refuse it: never sent (the A3 rules said why).
            return SendOutcome::Refused(Problem {
                http: 0,
                error_code: None,
                code: Some(first.code.clone()),
                detail: l
                    .refused
                    .iter()
                    .map(|f| format!("{}: {}", f.code, f.message))
                    .collect::<Vec<_>>()
                    .join("; "),
                trace_id: None,
            });
        }
        let mut request: InitializeCorrespondences = match std::fs::read(l.request_path())
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(r) => r,
            Err(e) => {
                return SendOutcome::Stop(format!(
                    "letter {} ({}): {} cannot be read: {e}",
                    l.index,
                    l.senders_reference,
                    l.request_path().display()
                ))
            }
        };
        if request.correspondence.content.attachments.len() != l.attachments.len() {
            return SendOutcome::Stop(format!(
                "letter {}: letter.json and the attachment files disagree",
                l.index
            ));
        }
        let large = l.attachments.iter().any(|a| a.bytes > self.threshold);
        let mut last = None;
        for try_no in 0..SEND_TRIES {
            let verdict = if large {
                self.send_with_attachment_api(l, &mut request).await
            } else {
                self.send_once(l, &request).await
            };
            let verdict = match verdict {
                Ok(outcome) => return outcome,
                Err(v) => v,
            };
            match verdict {
                Verdict::AlreadyExists => return SendOutcome::AlreadyExists,
                Verdict::Refused(p) => {
                    tracing::info!(letter = l.index, senders_reference = %l.senders_reference,
                        problem = %p, "altinn3 refused a letter");
                    return SendOutcome::Refused(p);
                }
                Verdict::Stop(m) => return SendOutcome::Stop(m),
                Verdict::Unauthorized(p) => {
                    return SendOutcome::Stop(format!(
                        "Altinn refused a fresh token too: {p} (check scopes, exchange_url and \
                         the client's access to the resource)"
                    ))
                }
                Verdict::Retry { reason, after } => {
                    let wait = after.unwrap_or_else(|| backoff(try_no));
                    if try_no + 1 == SEND_TRIES || wait > MAX_INNER_WAIT {
                        return SendOutcome::Retry { reason, after };
                    }
                    tracing::debug!(letter = l.index, %reason, wait_ms = wait.as_millis() as u64,
                        "altinn3 send will be retried");
                    tokio::time::sleep(wait).await;
                    last = Some((reason, after));
                }
            }
        }
        let (reason, after) = last.unwrap_or_default();
        SendOutcome::Retry { reason, after }
    }

    /// `POST /correspondence` (no attachments) or the multipart upload.
    async fn send_once(
        &self,
        l: &LetterMeta,
        request: &InitializeCorrespondences,
    ) -> Result<SendOutcome, Verdict> {
        let r = if l.attachments.is_empty() {
            let body = serde_json::to_vec(request).map_err(|e| Verdict::Stop(e.to_string()))?;
            let url = self.url("/correspondence");
            self.call_json::<InitializeResponse>(&|| {
                Ok(self
                    .http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone()))
            })
            .await?
        } else {
            let fields = flatten(request);
            let url = self.url("/correspondence/upload");
            let bytes = l.attachment_bytes();
            let timeout = upload_timeout(self.request_timeout, bytes);
            let files: Vec<(String, std::path::PathBuf, u64)> = l
                .attachments
                .iter()
                .map(|a| (a.file_name.clone(), a.path.clone(), a.bytes))
                .collect();
            // Files are opened synchronously inside `build` (a small, local
            // operation) and streamed by the runtime.
            self.upload_json::<InitializeResponse>(
                &|| {
                    let mut form = reqwest::multipart::Form::new();
                    for (k, v) in &fields {
                        form = form.text(k.clone(), v.clone());
                    }
                    for (name, path, len) in &files {
                        let part = reqwest::multipart::Part::stream_with_length(
                            file_body(path).map_err(|e| {
                                format!("attachment file {} cannot be read: {e}", path.display())
                            })?,
                            *len,
                        )
                        .file_name(name.clone())
                        .mime_str("application/octet-stream")
                        .map_err(|e| e.to_string())?;
                        form = form.part("attachments", part);
                    }
                    Ok(self.http.post(&url).multipart(form).timeout(timeout))
                },
                true,
            )
            .await?
        };
        Ok(created(l, r.1))
    }

    /// Large attachments: each through `POST /attachment` + upload, wait
    /// for Published, then `POST /correspondence` with existingAttachments.
    /// Ids already uploaded are kept in `request` across tries.
    async fn send_with_attachment_api(
        &self,
        l: &LetterMeta,
        request: &mut InitializeCorrespondences,
    ) -> Result<SendOutcome, Verdict> {
        let metas = std::mem::take(&mut request.correspondence.content.attachments);
        let already = request.existing_attachments.len();
        for (i, (meta, file)) in metas.iter().zip(&l.attachments).enumerate().skip(already) {
            let init = InitializeAttachment {
                resource_id: request.correspondence.resource_id.clone(),
                file_name: meta.file_name.clone(),
                display_name: meta.display_name.clone(),
                is_encrypted: meta.is_encrypted,
                checksum: meta.checksum.clone(),
                senders_reference: meta.senders_reference.clone(),
            };
            let id = match self.init_attachment(&init).await {
                Ok(id) => id,
                Err(v) => {
                    request.correspondence.content.attachments = metas;
                    return Err(v);
                }
            };
            let uploaded = self.upload_attachment(id, &file.path, file.bytes).await;
            let published = match uploaded {
                Ok(()) => self.wait_published(id).await,
                Err(v) => Err(v),
            };
            if let Err(v) = published {
                request.correspondence.content.attachments = metas;
                return Err(v);
            }
            tracing::info!(letter = l.index, attachment = i + 1, %id, bytes = file.bytes,
                "altinn3 attachment published");
            request.existing_attachments.push(id);
        }
        let body = serde_json::to_vec(&*request).map_err(|e| Verdict::Stop(e.to_string()));
        request.correspondence.content.attachments = metas;
        let body = body?;
        let url = self.url("/correspondence");
        let mut try_no = 0;
        loop {
            let r = self
                .call_json::<InitializeResponse>(&|| {
                    Ok(self
                        .http
                        .post(&url)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone()))
                })
                .await;
            match r {
                Ok((_, resp)) => return Ok(created(l, resp)),
                // 1018: an attachment is not Published yet after all.
                Err(Verdict::Refused(p))
                    if p.error_code == Some(1018) && try_no < UNPUBLISHED_TRIES =>
                {
                    try_no += 1;
                    let wait =
                        Duration::from_secs_f64((2.0 * 1.2f64.powi(try_no as i32)).min(60.0));
                    tokio::time::sleep(wait).await;
                }
                Err(v) => return Err(v),
            }
        }
    }

    async fn init_attachment(&self, init: &InitializeAttachment) -> Result<Uuid, Verdict> {
        let body = serde_json::to_vec(init).map_err(|e| Verdict::Stop(e.to_string()))?;
        let url = self.url("/attachment");
        let a = self
            .call(&|| {
                Ok(self
                    .http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone()))
            })
            .await?;
        if !a.status.is_success() {
            return Err(verdict_of(&a));
        }
        // The answer is the id as a JSON string (or bare).
        let text = String::from_utf8_lossy(&a.body);
        Uuid::parse_str(text.trim().trim_matches('"')).map_err(|_| Verdict::Retry {
            reason: format!(
                "Altinn answered POST /attachment with something that is not an id ({} bytes)",
                a.body.len()
            ),
            after: None,
        })
    }

    async fn upload_attachment(&self, id: Uuid, path: &Path, len: u64) -> Result<(), Verdict> {
        let url = self.url(&format!("/attachment/{id}/upload"));
        let timeout = upload_timeout(self.request_timeout, len);
        self.upload_json::<AttachmentOverview>(
            &|| {
                let body = file_body(path).map_err(|e| {
                    format!("attachment file {} cannot be read: {e}", path.display())
                })?;
                Ok(self
                    .http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .header(reqwest::header::CONTENT_LENGTH, len)
                    .body(body)
                    .timeout(timeout))
            },
            true,
        )
        .await
        .map(|_| ())
    }

    async fn wait_published(&self, id: Uuid) -> Result<(), Verdict> {
        let url = self.url(&format!("/attachment/{id}"));
        let started = Instant::now();
        let mut wait = Duration::from_millis(250);
        loop {
            let (_, o) = self
                .call_json::<AttachmentOverview>(&|| Ok(self.http.get(&url)))
                .await?;
            match o.status.as_str() {
                "Published" => return Ok(()),
                "Failed" | "Purged" | "Expired" => {
                    return Err(Verdict::Refused(Problem {
                        http: 200,
                        error_code: None,
                        code: None,
                        detail: format!(
                            "attachment {id} is {} in Altinn: {}",
                            o.status,
                            o.status_text.as_deref().unwrap_or("no reason given")
                        ),
                        trace_id: None,
                    }))
                }
                _ => {}
            }
            if started.elapsed() > ATTACHMENT_PUBLISH_WAIT {
                return Err(Verdict::Retry {
                    reason: format!("attachment {id} is still {} after upload", o.status),
                    after: None,
                });
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(10));
        }
    }

    async fn find(&self, resource: &str, key: Uuid) -> Result<Option<Uuid>, CallError> {
        let url = self.url("/correspondence");
        let query = [
            ("resourceId", resource.to_string()),
            ("role", "Sender".to_string()),
            ("idempotentKey", key.to_string()),
        ];
        let r = self
            .call_json::<SearchResult>(&|| Ok(self.http.get(&url).query(&query)))
            .await;
        match r {
            Ok((_, s)) => Ok(s.ids.first().copied()),
            Err(v) => Err(call_error(v)),
        }
    }

    async fn overview(&self, id: Uuid) -> Result<Option<Overview>, CallError> {
        let url = self.url(&format!("/correspondence/{id}"));
        let a = self
            .call(&|| Ok(self.http.get(&url)))
            .await
            .map_err(call_error)?;
        if a.status.as_u16() == 404 {
            return Ok(None);
        }
        if !a.status.is_success() {
            return Err(call_error(verdict_of(&a)));
        }
        let o: CorrespondenceOverview =
            serde_json::from_slice(&a.body).map_err(|e| CallError::Retry {
                reason: format!("Altinn's overview cannot be read: {e}"),
                after: None,
            })?;
        Ok(Some(Overview {
            status: o.status,
            status_text: o.status_text,
            published: o.published,
            read: o.read,
        }))
    }

    async fn check_connection(&self) -> Result<(), ConnectError> {
        self.auth.token().await?;
        let Some(resource) = self.probe_resource.clone() else {
            return Err(ConnectError {
                step: Step::Api,
                message: "no resource is configured to read from ([transport.altinn3.resources])"
                    .into(),
            });
        };
        // A search for a key nobody has: harmless, and it needs the same
        // access to the resource as sending.
        let key = Uuid::new_v4();
        let url = self.url("/correspondence");
        let query = [
            ("resourceId", resource.clone()),
            ("role", "Sender".to_string()),
            ("idempotentKey", key.to_string()),
        ];
        match self
            .call_json::<SearchResult>(&|| Ok(self.http.get(&url).query(&query)))
            .await
        {
            Ok(_) => Ok(()),
            Err(v) => Err(ConnectError {
                step: Step::Api,
                message: match v {
                    Verdict::Unauthorized(p) => format!(
                        "Altinn ({}) refused the token even after a refresh: {p}",
                        self.api
                    ),
                    Verdict::Refused(p) => format!(
                        "Altinn ({}) refused a search on resource {resource}: {p}",
                        self.api
                    ),
                    Verdict::Stop(m) => m,
                    Verdict::Retry { reason, .. } => format!("{} : {reason}", self.api),
                    Verdict::AlreadyExists => "unexpected 409 on a search".into(),
                },
            }),
        }
    }
}

fn created(l: &LetterMeta, r: InitializeResponse) -> SendOutcome {
    match r.correspondences.first() {
        Some(c) if c.correspondence_id.is_some() => {
            let id = c.correspondence_id.unwrap_or_default();
            tracing::info!(letter = l.index, senders_reference = %l.senders_reference,
                correspondence_id = %id, status = %c.status, "altinn3 created a correspondence");
            SendOutcome::Created {
                correspondence_id: id,
                status: c.status.clone(),
            }
        }
        // A success without an id: the letter exists; find() settles it.
        _ => SendOutcome::AlreadyExists,
    }
}

fn verdict_of(a: &Answer) -> Verdict {
    // A 401 here comes after the one refresh `call` makes.
    classify(a.status.as_u16(), &a.headers, &a.body)
}

fn call_error(v: Verdict) -> CallError {
    match v {
        Verdict::Retry { reason, after } => CallError::Retry { reason, after },
        Verdict::Refused(p) => CallError::Refused(p),
        Verdict::Stop(m) => CallError::Stop(m),
        Verdict::Unauthorized(p) => {
            CallError::Stop(format!("Altinn refused a fresh token too: {p}"))
        }
        Verdict::AlreadyExists => CallError::Retry {
            reason: "unexpected 409".into(),
            after: None,
        },
    }
}

fn auth_verdict(e: AuthError) -> Verdict {
    if e.transient {
        Verdict::Retry {
            reason: format!("no token: {e}"),
            after: e.retry_after,
        }
    } else {
        Verdict::Stop(format!("no token: {e}"))
    }
}

/// Enough time for an upload of `bytes` at a slow 512 KiB/s, on top of the
/// ordinary timeout.
fn upload_timeout(base: Duration, bytes: u64) -> Duration {
    base + Duration::from_secs(bytes / (512 * 1024))
}

/// A file as a streamed request body (never read whole into memory).
fn file_body(path: &Path) -> std::io::Result<reqwest::Body> {
    let f = std::fs::File::open(path)?;
    let stream =
        tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(f), 256 * 1024);
    Ok(reqwest::Body::wrap_stream(stream))
}

/// The request as multipart form fields: the JSON model flattened with dots
/// and `[i]` (what Altinn's model binder reads; reference §1.5).
pub fn flatten(request: &InitializeCorrespondences) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let value = serde_json::to_value(request).unwrap_or_default();
    flatten_into(&mut out, String::new(), &value);
    out
}

fn flatten_into(out: &mut Vec<(String, String)>, prefix: String, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Null => {}
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_into(out, key, v);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten_into(out, format!("{prefix}[{i}]"), v);
            }
        }
        Value::String(s) => out.push((prefix, s.clone())),
        Value::Bool(b) => out.push((prefix, b.to_string())),
        Value::Number(n) => out.push((prefix, n.to_string())),
    }
}

// ---- pacing and adaptive concurrency ----------------------------------------

/// Our own limit of calls per second (0: none).
struct Pace {
    interval: Option<Duration>,
    next: tokio::sync::Mutex<Instant>,
}

impl Pace {
    fn new(per_second: u32) -> Pace {
        Pace {
            interval: (per_second > 0).then(|| Duration::from_secs(1) / per_second),
            next: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    async fn wait(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + interval;
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }
}

/// The calls in flight, with a limit that adapts (AIMD): halved on a 429 or
/// 503 (at most once a second), lowered by one on a slow answer, raised by
/// one after `limit` quick successes, never above `max` or below 1. A
/// Retry-After pauses every new call until it has passed.
struct Gate {
    max: usize,
    state: StdMutex<GateState>,
    wake: Notify,
}

struct GateState {
    limit: usize,
    in_flight: usize,
    successes: usize,
    last_cut: Option<Instant>,
    paused_until: Option<Instant>,
    /// Fastest answer seen: what "slow" is measured against.
    fastest: Option<Duration>,
    /// 429/503 answers in the current minute, and when it started.
    throttles: u32,
    window: Instant,
    last_throttle: Option<Instant>,
}

/// An answer this many times slower than the fastest (and over a second)
/// counts as a sign of overload.
const SLOW_FACTOR: u32 = 8;

struct Permit<'a>(&'a Gate);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.state.lock() {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
        self.0.wake.notify_waiters();
    }
}

impl Gate {
    fn new(max: usize) -> Gate {
        Gate {
            max,
            state: StdMutex::new(GateState {
                limit: max,
                in_flight: 0,
                successes: 0,
                last_cut: None,
                paused_until: None,
                fastest: None,
                throttles: 0,
                window: Instant::now(),
                last_throttle: None,
            }),
            wake: Notify::new(),
        }
    }

    fn limit(&self) -> usize {
        self.state.lock().map(|s| s.limit).unwrap_or(1)
    }

    async fn acquire(&self) -> Permit<'_> {
        loop {
            let notified = self.wake.notified();
            let pause = {
                let Ok(mut s) = self.state.lock() else {
                    return Permit(self);
                };
                let now = Instant::now();
                match s.paused_until {
                    Some(until) if until > now => Some(until),
                    _ => {
                        s.paused_until = None;
                        if s.in_flight < s.limit {
                            s.in_flight += 1;
                            return Permit(self);
                        }
                        None
                    }
                }
            };
            match pause {
                Some(until) => tokio::time::sleep_until(until.into()).await,
                None => {
                    // Woken by a permit's release, or re-check after a while
                    // (a pause may end, the limit may grow).
                    let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
                }
            }
        }
    }

    /// A call succeeded; `latency` when it says something about load.
    fn succeeded(&self, latency: Option<Duration>) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        let slow = match latency {
            Some(latency) => {
                let fastest = *s.fastest.get_or_insert(latency);
                if latency < fastest {
                    s.fastest = Some(latency);
                }
                latency > Duration::from_secs(1) && latency > fastest * SLOW_FACTOR
            }
            None => false,
        };
        if slow {
            if s.limit > 1 {
                s.limit -= 1;
            }
            s.successes = 0;
            return;
        }
        s.successes += 1;
        if s.successes >= s.limit && s.limit < self.max {
            s.limit += 1;
            s.successes = 0;
            drop(s);
            self.wake.notify_waiters();
        }
    }

    fn failed(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.successes = 0;
        }
    }

    fn throttle(&self, status: u16, after: Option<Duration>) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        let now = Instant::now();
        if now.duration_since(s.window) > Duration::from_secs(60) {
            s.window = now;
            s.throttles = 0;
        }
        s.throttles += 1;
        s.last_throttle = Some(now);
        s.successes = 0;
        if s.last_cut
            .is_none_or(|t| now.duration_since(t) > Duration::from_secs(1))
        {
            s.limit = (s.limit / 2).max(1);
            s.last_cut = Some(now);
        }
        if let Some(after) = after {
            let until = now + after.min(MAX_INNER_WAIT);
            if s.paused_until.is_none_or(|p| p < until) {
                s.paused_until = Some(until);
            }
        }
        tracing::warn!(
            status,
            limit = s.limit,
            retry_after_s = after.map(|a| a.as_secs()),
            "altinn3 is throttling us"
        );
    }

    fn throttled(&self) -> Option<String> {
        let s = self.state.lock().ok()?;
        let now = Instant::now();
        let recent = s
            .last_throttle
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(60));
        if !recent && s.limit == self.max {
            return None;
        }
        let mut text = format!(
            "Altinn is throttling us: {} answer(s) 429/503 in the last minute, {} of {} calls \
             in flight allowed",
            if recent { s.throttles } else { 0 },
            s.limit,
            self.max
        );
        if let Some(until) = s.paused_until.filter(|u| *u > now) {
            text.push_str(&format!(
                ", paused for {} s (Retry-After)",
                (until - now).as_secs() + 1
            ));
        }
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(retry: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(r) = retry {
            h.insert(RETRY_AFTER, r.parse().unwrap());
        }
        h
    }

    #[test]
    fn classification() {
        let h = headers(None);
        let dup = br#"{"status":409,"code":"CORR-01034","errorCode":1034,"detail":"dup"}"#;
        assert_eq!(classify(409, &h, dup), Verdict::AlreadyExists);
        let bad = br#"{"status":400,"code":"CORR-01002","errorCode":1002,"detail":"Message title must be plain text","traceId":"00-ab"}"#;
        match classify(400, &h, bad) {
            Verdict::Refused(p) => {
                assert_eq!(p.error_code, Some(1002));
                assert_eq!(p.code.as_deref(), Some("CORR-01002"));
                assert_eq!(p.trace_id.as_deref(), Some("00-ab"));
                assert!(p.to_string().contains("plain text"));
            }
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            classify(404, &h, br#"{"errorCode":1029}"#),
            Verdict::Refused(_)
        ));
        assert!(matches!(classify(401, &h, b""), Verdict::Unauthorized(_)));
        assert!(matches!(
            classify(401, &h, br#"{"errorCode":4001}"#),
            Verdict::Stop(_)
        ));
        assert!(matches!(classify(403, &h, b"IDX10205"), Verdict::Stop(_)));
        let h = headers(Some("7"));
        match classify(429, &h, b"slow down") {
            Verdict::Retry { after, .. } => assert_eq!(after, Some(Duration::from_secs(7))),
            v => panic!("{v:?}"),
        }
        assert!(matches!(classify(503, &h, b""), Verdict::Retry { .. }));
        assert!(matches!(classify(408, &h, b""), Verdict::Retry { .. }));
        assert!(matches!(
            classify(502, &h, b"<html>"),
            Verdict::Retry { .. }
        ));
    }

    #[test]
    fn flattening_matches_altinns_form_keys() {
        let json = r#"{"correspondence":{"resourceId":"r","sendersReference":"s",
            "content":{"language":"nb","messageTitle":"t","messageBody":"b",
              "attachments":[{"fileName":"a.pdf","isEncrypted":false,"senders_reference":"x","sendersReference":"x"}]},
            "propertyList":{"onBehalfOfOrgNr":"974760673"},
            "notification":{"notificationTemplate":"CustomMessage","notificationChannel":"Email",
              "customRecipients":[{"emailAddress":"a@b.no"}]}},
          "recipients":["urn:altinn:organization:identifier-no:974760673"],
          "idempotentKey":"6f1d8c1e-8a44-5d7e-9a8a-4b1c2d3e4f50"}"#;
        let r: InitializeCorrespondences = serde_json::from_str(json).unwrap();
        let f = flatten(&r);
        let get = |k: &str| f.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
        assert_eq!(get("correspondence.resourceId"), Some("r"));
        assert_eq!(
            get("correspondence.content.attachments[0].fileName"),
            Some("a.pdf")
        );
        assert_eq!(
            get("correspondence.content.attachments[0].isEncrypted"),
            Some("false")
        );
        assert_eq!(
            get("correspondence.propertyList.onBehalfOfOrgNr"),
            Some("974760673")
        );
        assert_eq!(
            get("correspondence.notification.customRecipients[0].emailAddress"),
            Some("a@b.no")
        );
        assert_eq!(
            get("recipients[0]"),
            Some("urn:altinn:organization:identifier-no:974760673")
        );
        assert_eq!(
            get("idempotentKey"),
            Some("6f1d8c1e-8a44-5d7e-9a8a-4b1c2d3e4f50")
        );
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            retry_after(&headers(Some("3"))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(&headers(Some("999999"))),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(retry_after(&headers(Some("soon"))), None);
        assert_eq!(retry_after(&headers(None)), None);
        let past = retry_after(&headers(Some("Wed, 21 Oct 2015 07:28:00 GMT")));
        assert_eq!(past, Some(Duration::ZERO));
    }

    #[test]
    fn gate_halves_on_throttle_and_grows_back() {
        let g = Gate::new(16);
        g.throttle(429, None);
        assert_eq!(g.limit(), 8);
        g.throttle(429, None); // within a second: one cut only
        assert_eq!(g.limit(), 8);
        assert!(g.throttled().unwrap().contains("8 of 16"));
        for _ in 0..8 {
            g.succeeded(Some(Duration::from_millis(20)));
        }
        assert_eq!(g.limit(), 9);
        g.succeeded(Some(Duration::from_secs(2))); // 100x the fastest: overload
        assert_eq!(g.limit(), 8);
        g.succeeded(None); // an upload: its time says nothing
        assert_eq!(g.limit(), 8);
    }
}
