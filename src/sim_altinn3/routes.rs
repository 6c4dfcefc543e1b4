//! The HTTP surface: Altinn's routes, Maskinporten's, the exchange, the test
//! hook, and the faults in front of them.
//!
//! Every Correspondence route checks what ASP.NET checks before its handler,
//! in the same order: the Content-Type the action consumes (415, decided while
//! the endpoint is chosen), authentication and policy (401/403), the Accept
//! header (406), then binding and validation (400), then the handler.

// A handler step fails with the response to send; boxing it would only add
// noise to code that is nowhere near a hot path.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State,
};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Form, Json, Router};
use futures_util::StreamExt;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use super::auth::{Auth, Policy};
use super::conn::Peer;
use super::model::{self, FormNode, InitRequest, CORRESPONDENCE_STATUS, ROLE};
use super::problem::{self, codes, AltinnError, ModelError};
use super::state::{status_name, AttRecord};
use super::store::{
    CreateRequest, NewAttachment, NewCorrespondence, Search, Store, StoreError, Views,
};
use super::validate::{self, Refusal, Registry, UploadedFile};

/// Largest JSON body read into memory (Altinn sets no limit of its own; the
/// simulator must protect itself).
const JSON_LIMIT: usize = 64 * 1024 * 1024;
/// Largest single text field of a multipart form.
const FORM_VALUE_LIMIT: usize = 4 * 1024 * 1024;
/// ASP.NET's `FormOptions.ValueCountLimit` (Altinn does not change it).
const FORM_VALUE_COUNT_LIMIT: usize = 1024;

/// Fault injection, from the command line.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub latency: Duration,
    pub rate_429: f64,
    pub rate_5xx: f64,
    pub drop_after_commit: f64,
}

/// Everything the handlers share.
pub struct Sim {
    pub store: Mutex<Store>,
    pub registry: Registry,
    pub auth: Auth,
    pub faults: Faults,
    pub tmp_dir: PathBuf,
    pub views: Views,
    /// Wakes the ticker when a new publish job is scheduled.
    pub wake: tokio::sync::Notify,
}

pub type Shared = Arc<Sim>;

pub fn router(sim: Shared) -> Router {
    const API: &str = "/correspondence/api/v1";
    let api = Router::new()
        .route(
            &format!("{API}/correspondence"),
            post(create_json).get(search),
        )
        .route(
            &format!("{API}/correspondence/upload"),
            post(create_multipart),
        )
        .route(&format!("{API}/correspondence/{{id}}"), get(overview))
        .route(
            &format!("{API}/correspondence/{{id}}/details"),
            get(details),
        )
        .route(&format!("{API}/correspondence/{{id}}/purge"), delete(purge))
        .route(&format!("{API}/attachment"), post(init_attachment))
        .route(
            &format!("{API}/attachment/{{id}}"),
            get(attachment_overview).delete(purge_attachment),
        )
        .route(
            &format!("{API}/attachment/{{id}}/upload"),
            post(upload_attachment),
        )
        .layer(middleware::from_fn_with_state(sim.clone(), faults));
    let auth = Router::new()
        .route("/maskinporten/token", post(token))
        .route(
            "/authentication/api/v1/exchange/maskinporten",
            get(exchange),
        )
        .layer(middleware::from_fn_with_state(sim.clone(), latency));
    let hooks = Router::new().route("/_sim/correspondence/{id}/read", post(mark_read));
    api.merge(auth)
        .merge(hooks)
        // Our own limits apply per route; files stream to disk.
        .layer(DefaultBodyLimit::disable())
        .with_state(sim)
}

// ---------------------------------------------------------------------------
// Faults.

async fn latency(State(sim): State<Shared>, req: Request, next: Next) -> Response {
    if !sim.faults.latency.is_zero() {
        tokio::time::sleep(sim.faults.latency).await;
    }
    next.run(req).await
}

/// Latency, then maybe a 429 (with Retry-After) or a 5xx instead of the answer.
async fn faults(State(sim): State<Shared>, req: Request, next: Next) -> Response {
    let f = &sim.faults;
    if !f.latency.is_zero() {
        tokio::time::sleep(f.latency).await;
    }
    if f.rate_429 > 0.0 || f.rate_5xx > 0.0 {
        let draw = fastrand::f64();
        if draw < f.rate_429 {
            tracing::info!(fault = "429", path = %req.uri().path());
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({"statusCode": 429, "message": "Rate limit is exceeded. Try again in 1 seconds."})),
            )
                .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
        if draw < f.rate_429 + f.rate_5xx {
            tracing::info!(fault = "5xx", path = %req.uri().path());
            return match fastrand::u8(0..3) {
                0 => internal_error(),
                1 => (StatusCode::BAD_GATEWAY, "Bad Gateway").into_response(),
                _ => (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response(),
            };
        }
    }
    next.run(req).await
}

/// What ASP.NET's exception handler answers.
fn internal_error() -> Response {
    let mut r = (
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({
            "type": "https://tools.ietf.org/html/rfc9110#section-15.6.1",
            "title": "An error occurred while processing your request.",
            "status": 500,
            "traceId": problem::trace_id(),
        })
        .to_string(),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    r
}

/// Maybe drop the connection of a request that has just been committed.
fn maybe_drop(sim: &Sim, peer: &Peer, what: &str) -> Option<Response> {
    let p = sim.faults.drop_after_commit;
    if p > 0.0 && fastrand::f64() < p {
        tracing::info!(fault = "drop-after-commit", committed = what, peer = %peer.addr);
        peer.drop_connection();
        return Some(StatusCode::OK.into_response());
    }
    None
}

// ---------------------------------------------------------------------------
// Gates shared by the routes.

/// The media type of the request, lower case, without parameters.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// `AcceptHeaderValidationMiddleware`: without an Accept header anything
/// goes; with one, some entry must be `application/json` or `*/*`.
fn accept_ok(headers: &HeaderMap) -> bool {
    let values: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .map(|v| v.to_str().unwrap_or(""))
        .collect();
    values.is_empty()
        || values.iter().any(|h| {
            h.split(',')
                .map(|x| {
                    x.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                })
                .any(|m| m == "application/json" || m == "*/*")
        })
}

/// Content-Type (415), then auth (401/403), then Accept (406).
fn gate(
    sim: &Sim,
    headers: &HeaderMap,
    consumes: Option<&str>,
    policy: Policy,
) -> Result<(), Response> {
    if let Some(expected) = consumes {
        if media_type(headers) != expected {
            return Err(problem::unsupported_media_type());
        }
    }
    sim.auth.authorize(headers, policy)?;
    if !accept_ok(headers) {
        return Err(problem::not_acceptable());
    }
    Ok(())
}

/// A route's `Guid` parameter; a bad one is a model-binding 400.
fn parse_id(raw: &str, name: &str) -> Result<Uuid, Response> {
    Uuid::parse_str(raw.trim()).map_err(|_| {
        problem::validation_problem(&[ModelError::new(
            name,
            format!("The value '{raw}' is not valid."),
        )])
    })
}

/// Run `f` on the store, on the blocking pool, after the clock has moved the
/// status machine on; then, with the lock released, write the contract views
/// that changed (before the answer goes out).
async fn with_store<T, F>(sim: &Shared, f: F) -> Result<T, Response>
where
    F: FnOnce(&mut Store, &Registry, OffsetDateTime) -> T + Send + 'static,
    T: Send + 'static,
{
    let sim = sim.clone();
    tokio::task::spawn_blocking(move || {
        let now = OffsetDateTime::now_utc();
        let (out, views) = {
            let mut store = sim.store.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(e) = store.advance(now, &sim.registry) {
                tracing::warn!(error = %e, "cannot journal a status change");
            }
            let out = f(&mut store, &sim.registry, now);
            (out, store.take_views())
        };
        for v in &views {
            if let Err(e) = sim.views.write(v) {
                tracing::warn!(error = %e, "cannot write a contract view");
            }
        }
        out
    })
    .await
    .map_err(|_| internal_error())
}

fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::Altinn(e) => sim_or_altinn(e),
        StoreError::Io(e) => {
            tracing::error!(error = %e, "the simulator's store failed");
            internal_error()
        }
    }
}

/// Altinn's errors as ProblemDetails; the simulator's own (code 0) as text.
fn sim_or_altinn(e: AltinnError) -> Response {
    if e.code == 0 {
        (e.status, e.message).into_response()
    } else {
        e.into_response()
    }
}

fn refusal(r: Refusal) -> Response {
    match r {
        Refusal::Model(errors) => problem::validation_problem(&errors),
        Refusal::Plain(msg) => problem::bad_request_string(msg),
        Refusal::Altinn(e) => e.into_response(),
    }
}

fn json_ok(v: Value) -> Response {
    Json(v).into_response()
}

// ---------------------------------------------------------------------------
// Initialize correspondences.

/// `POST /correspondence` (JSON).
async fn create_json(
    State(sim): State<Shared>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(r) = gate(&sim, &headers, Some("application/json"), Policy::Sender) {
        return r;
    }
    let bytes = match read_limited(body, JSON_LIMIT).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if bytes.is_empty() {
        return problem::validation_problem(&[ModelError::new(
            "",
            "A non-empty request body is required.",
        )]);
    }
    match model::bind_json(&bytes) {
        Ok(req) => create(sim, peer, req, vec![]).await,
        Err(errors) => problem::validation_problem(&errors),
    }
}

/// Read a body of at most `limit` bytes. A larger one is read to its end
/// (and thrown away, up to 1 GiB) before the 413, so the client, still
/// sending, gets the answer instead of a broken pipe.
async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, Response> {
    const DRAIN: u64 = 1 << 30;
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    let mut seen = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| StatusCode::BAD_REQUEST.into_response())?;
        seen += chunk.len() as u64;
        if seen > limit as u64 {
            bytes = Vec::new(); // too big: only count from here on
            if seen > DRAIN {
                break;
            }
        } else {
            bytes.extend_from_slice(&chunk);
        }
    }
    if seen > limit as u64 {
        return Err(StatusCode::PAYLOAD_TOO_LARGE.into_response());
    }
    Ok(bytes)
}

/// Deletes the multipart temp files of a request when it is done with them
/// (the kept ones have been renamed away by then).
struct TempFiles(Vec<PathBuf>);

impl Drop for TempFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `POST /correspondence/upload` (multipart): fields bound as the MVC form
/// binder does, `attachments` file parts streamed to disk.
async fn create_multipart(
    State(sim): State<Shared>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    request: Request,
) -> Response {
    let headers = request.headers();
    if let Err(r) = gate(&sim, headers, Some("multipart/form-data"), Policy::Sender) {
        return r;
    }
    let multipart = match Multipart::from_request(request, &()).await {
        Ok(m) => m,
        Err(e) => return form_error(&e.body_text()),
    };
    // `temps` deletes, when dropped, every file the create did not keep.
    let mut temps = TempFiles(Vec::new());
    let (form, files) = match read_form(multipart, &sim.tmp_dir, &mut temps).await {
        Ok(read) => read,
        Err(r) => return r,
    };
    match model::bind_form(&form) {
        Ok(req) => create(sim, peer, req, files).await,
        Err(errors) => problem::validation_problem(&errors),
    }
}

/// Read a multipart body part by part: text fields into the key tree, file
/// parts named `attachments` chunk by chunk into `tmp_dir` (any other file
/// part is read and dropped, as ASP.NET ignores it). Memory holds one chunk
/// of a file at a time, whatever its size.
async fn read_form(
    mut multipart: Multipart,
    tmp_dir: &std::path::Path,
    temps: &mut TempFiles,
) -> Result<(FormNode, Vec<UploadedFile>), Response> {
    let mut form = FormNode::default();
    let mut files = Vec::new();
    let mut values = 0;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| form_error(&e.body_text()))?
    {
        let name = field.name().unwrap_or("").to_string();
        let file_name = field
            .file_name()
            .filter(|f| !f.is_empty())
            .map(str::to_string);
        let Some(file_name) = file_name else {
            values += 1;
            if values > FORM_VALUE_COUNT_LIMIT {
                // Read the rest before answering, as Kestrel drains a body
                // it refused: a client still sending would otherwise see
                // the connection drop instead of the answer.
                drop(field);
                while let Ok(Some(mut rest)) = multipart.next_field().await {
                    while let Ok(Some(_)) = rest.chunk().await {}
                }
                return Err(form_error(&format!(
                    "Form value count limit {FORM_VALUE_COUNT_LIMIT} exceeded."
                )));
            }
            let mut text = Vec::new();
            while let Some(chunk) = field
                .chunk()
                .await
                .map_err(|e| form_error(&e.body_text()))?
            {
                if text.len() + chunk.len() > FORM_VALUE_LIMIT {
                    let why = "a form field is larger than the simulator's 4 MiB limit";
                    return Err((StatusCode::PAYLOAD_TOO_LARGE, why).into_response());
                }
                text.extend_from_slice(&chunk);
            }
            form.insert(&name, String::from_utf8_lossy(&text).into_owned());
            continue;
        };
        let keep = name.eq_ignore_ascii_case("attachments")
            || name.eq_ignore_ascii_case("request.attachments");
        let path = tmp_dir.join(format!("{}.part", Uuid::new_v4()));
        let mut out = None;
        if keep {
            let f = tokio::fs::File::create(&path)
                .await
                .map_err(|e| store_error(StoreError::Io(e)))?;
            temps.0.push(path.clone());
            out = Some(f);
        }
        let mut size = 0u64;
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| form_error(&e.body_text()))?
        {
            size += chunk.len() as u64;
            if let Some(f) = out.as_mut() {
                f.write_all(&chunk)
                    .await
                    .map_err(|e| store_error(StoreError::Io(e)))?;
            }
        }
        if let Some(mut f) = out {
            f.flush()
                .await
                .map_err(|e| store_error(StoreError::Io(e)))?;
            files.push(UploadedFile {
                file_name,
                size,
                path,
            });
        }
    }
    Ok((form, files))
}

fn form_error(detail: &str) -> Response {
    problem::validation_problem(&[ModelError::new(
        "",
        format!("Failed to read the request form. {detail}"),
    )])
}

/// Gates 1–3 of [`validate`], then the commit.
async fn create(sim: Shared, peer: Peer, req: InitRequest, files: Vec<UploadedFile>) -> Response {
    if let Err(r) = validate::model(&req) {
        return refusal(r);
    }
    if req.idempotent_key.is_some() && req.recipients.as_ref().map_or(0, Vec::len) > 1 {
        return codes::key_with_many_recipients().into_response();
    }
    let result = with_store(&sim, move |store, registry, now| {
        if req.idempotent_key.is_some_and(|k| store.key_used(k)) {
            return Err(codes::duplicate_idempotent_key().into_response());
        }
        let existing = store.existing(&req.existing_attachments, now);
        let v = validate::handler(&req, &files, registry, &existing, now)
            .map_err(IntoResponse::into_response)?;
        let c = req.correspondence.as_ref();
        let metas = c
            .and_then(|c| c.content.as_ref())
            .map(|c| c.attachments.clone())
            .unwrap_or_default();
        let new_files = metas
            .iter()
            .zip(&v.file_for_attachment)
            .map(|(m, &j)| NewAttachment {
                meta: serde_json::to_value(m).unwrap_or(Value::Null),
                temp: files[j].path.clone(),
                size: files[j].size,
            })
            .collect();
        let recipients = v
            .recipients
            .iter()
            .zip(&v.reserved)
            .map(|(r, &reserved)| NewCorrespondence {
                recipient: r.clone(),
                reserved,
            })
            .collect();
        let create = CreateRequest {
            request: serde_json::to_value(&req).unwrap_or(Value::Null),
            resource_id: v.resource_id.clone(),
            senders_reference: c
                .and_then(|c| c.senders_reference.clone())
                .unwrap_or_default(),
            idempotent_key: req.idempotent_key,
            ignore_reservation: c.and_then(|c| c.ignore_reservation).unwrap_or(false),
            requested_publish_time: v.requested_publish_time,
            existing_attachments: req.existing_attachments.clone(),
        };
        store
            .create(create, recipients, new_files, now)
            .map_err(store_error)
    })
    .await;
    let (records, attachment_ids) = match result {
        Ok(Ok(r)) => r,
        Ok(Err(r)) | Err(r) => return r,
    };
    sim.wake.notify_one();
    for r in &records {
        tracing::info!(
            created = %r.id,
            status = r.highest().status,
            sendersReference = %r.senders_reference,
            recipient = %r.recipient
        );
    }
    if let Some(r) = maybe_drop(&sim, &peer, "correspondence") {
        return r;
    }
    json_ok(json!({
        "correspondences": records.iter().map(|r| json!({
            "correspondenceId": r.id,
            "status": status_name(r.highest().status),
            "recipient": r.recipient,
            "notifications": null,
        })).collect::<Vec<_>>(),
        "attachmentIds": attachment_ids,
    }))
}

// ---------------------------------------------------------------------------
// Reading correspondences.

async fn overview(
    State(sim): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    read_one(sim, id, headers, false).await
}

async fn details(
    State(sim): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    read_one(sim, id, headers, true).await
}

async fn read_one(sim: Shared, id: String, headers: HeaderMap, details: bool) -> Response {
    if let Err(r) = gate(&sim, &headers, None, Policy::SenderOrRecipient) {
        return r;
    }
    let id = match parse_id(&id, "correspondenceId") {
        Ok(id) => id,
        Err(r) => return r,
    };
    let found = with_store(&sim, move |store, _, _| {
        store.get(id).map(|r| {
            if details {
                r.details(store.attachments())
            } else {
                r.overview(store.attachments())
            }
        })
    })
    .await;
    match found {
        Ok(Some(v)) => json_ok(v),
        Ok(None) => codes::not_found().into_response(),
        Err(r) => r,
    }
}

/// `GET /correspondence?resourceId=&role=&…`: ids only.
async fn search(
    State(sim): State<Shared>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = gate(&sim, &headers, None, Policy::SenderOrRecipient) {
        return r;
    }
    let q = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let mut errors = Vec::new();
    let mut bad = |name: &str, v: &str| {
        errors.push(ModelError::new(
            name,
            format!("The value '{v}' is not valid."),
        ))
    };
    let resource_id = q("resourceId").map(str::to_string);
    let role = q("role").and_then(|r| model::parse_enum(r, ROLE).filter(|e| e.is_defined()));
    let mut parse_time = |name: &str| {
        q(name).and_then(|v| {
            model::parse_time(v, true).or_else(|| {
                bad(name, v);
                None
            })
        })
    };
    let from = parse_time("from");
    let to = parse_time("to");
    let status = match q("status") {
        Some(s) => match model::parse_enum(s, CORRESPONDENCE_STATUS) {
            Some(e) if e.is_defined() => Some(e.value as u8),
            _ => {
                errors.push(ModelError::new(
                    "status",
                    format!("The value '{s}' is not valid."),
                ));
                None
            }
        },
        None => None,
    };
    let idempotent_key = match q("idempotentKey") {
        Some(k) => match Uuid::parse_str(k.trim()) {
            Ok(u) => Some(u),
            Err(_) => {
                errors.push(ModelError::new(
                    "idempotentKey",
                    format!("The value '{k}' is not valid."),
                ));
                None
            }
        },
        None => None,
    };
    if resource_id.is_none() {
        errors.push(ModelError::new(
            "resourceId",
            "The resourceId field is required.",
        ));
    }
    if role.is_none() {
        errors.push(ModelError::new(
            "role",
            "The role field must be a defined value.",
        ));
    }
    let (Some(resource_id), Some(role)) = (resource_id, role) else {
        return problem::validation_problem(&errors);
    };
    if !errors.is_empty() {
        return problem::validation_problem(&errors);
    }
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return codes::invalid_date_range().into_response();
        }
    }
    let s = Search {
        resource_id,
        role: role.value,
        from,
        to,
        status,
        senders_reference: q("sendersReference").map(str::to_string),
        idempotent_key,
    };
    match with_store(&sim, move |store, _, _| store.search(&s)).await {
        Ok(ids) => json_ok(json!({ "ids": ids })),
        Err(r) => r,
    }
}

/// `DELETE /correspondence/{id}/purge`: the id as a JSON string.
async fn purge(State(sim): State<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&sim, &headers, None, Policy::SenderOrRecipient) {
        return r;
    }
    let id = match parse_id(&id, "correspondenceId") {
        Ok(id) => id,
        Err(r) => return r,
    };
    match with_store(&sim, move |store, _, now| store.purge(id, now)).await {
        Ok(Ok(())) => json_ok(json!(id)),
        Ok(Err(e)) => store_error(e),
        Err(r) => r,
    }
}

// ---------------------------------------------------------------------------
// Attachments.

/// `POST /attachment`: the new id as a JSON string.
async fn init_attachment(
    State(sim): State<Shared>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(r) = gate(&sim, &headers, Some("application/json"), Policy::Sender) {
        return r;
    }
    let bytes = match read_limited(body, JSON_LIMIT).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let meta = match model::bind_attachment_json(&bytes) {
        Ok(m) => m,
        Err(errors) => return problem::validation_problem(&errors),
    };
    let resource_id = match validate::attachment_request(&meta, &sim.registry) {
        Ok(r) => r,
        Err(r) => return refusal(r),
    };
    let mut stored = meta;
    stored.resource_id = None;
    let meta_json = serde_json::to_value(&stored).unwrap_or(Value::Null);
    match with_store(&sim, move |store, _, now| {
        store.init_attachment(resource_id, meta_json, now)
    })
    .await
    {
        Ok(Ok(id)) => {
            if let Some(r) = maybe_drop(&sim, &peer, "attachment") {
                return r;
            }
            json_ok(json!(id))
        }
        Ok(Err(e)) => store_error(StoreError::Io(e)),
        Err(r) => r,
    }
}

/// `POST /attachment/{id}/upload`: the raw body, streamed to disk.
async fn upload_attachment(
    State(sim): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(r) = gate(
        &sim,
        &headers,
        Some("application/octet-stream"),
        Policy::Sender,
    ) {
        return r;
    }
    let id = match parse_id(&id, "attachmentId") {
        Ok(id) => id,
        Err(r) => return r,
    };
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match with_store(&sim, move |store, _, _| store.check_upload(id, length)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return e.into_response(),
        Err(r) => return r,
    }
    let path = sim.tmp_dir.join(format!("{}.part", Uuid::new_v4()));
    let temps = TempFiles(vec![path.clone()]);
    let mut file = match tokio::fs::File::create(&path).await {
        Ok(f) => f,
        Err(e) => return store_error(StoreError::Io(e)),
    };
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let written = match chunk {
            Ok(c) => {
                size += c.len() as u64;
                file.write_all(&c).await.map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(why) = written {
            tracing::info!(attachment = %id, error = %why, "upload interrupted");
            let _ = with_store(&sim, move |store, _, now| store.fail_upload(id, now)).await;
            return codes::upload_failed().into_response();
        }
    }
    if let Err(e) = file.flush().await {
        return store_error(StoreError::Io(e));
    }
    drop(file);
    if size == 0 {
        return codes::invalid_file_size("50GB").into_response();
    }
    let result = with_store(&sim, move |store, _, now| {
        store
            .finish_upload(id, &path, size, now)
            .map(|a| a.overview())
    })
    .await;
    drop(temps);
    match result {
        Ok(Ok(v)) => json_ok(v),
        Ok(Err(e)) => store_error(e),
        Err(r) => r,
    }
}

async fn attachment_overview(
    State(sim): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = gate(&sim, &headers, None, Policy::Sender) {
        return r;
    }
    let id = match parse_id(&id, "attachmentId") {
        Ok(id) => id,
        Err(r) => return r,
    };
    match with_store(&sim, move |store, _, now| {
        store.attachment(id, now).map(AttRecord::overview)
    })
    .await
    {
        Ok(Some(v)) => json_ok(v),
        Ok(None) => codes::attachment_not_found().into_response(),
        Err(r) => r,
    }
}

/// `DELETE /attachment/{id}`: `Ok(null)`, which ASP.NET sends as 204.
async fn purge_attachment(
    State(sim): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = gate(&sim, &headers, None, Policy::Sender) {
        return r;
    }
    let id = match parse_id(&id, "attachmentId") {
        Ok(id) => id,
        Err(r) => return r,
    };
    match with_store(&sim, move |store, _, now| store.purge_attachment(id, now)).await {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => store_error(e),
        Err(r) => r,
    }
}

// ---------------------------------------------------------------------------
// Maskinporten, the exchange, the test hook.

async fn token(State(sim): State<Shared>, request: Request) -> Response {
    match Form::<HashMap<String, String>>::from_request(request, &()).await {
        Ok(Form(form)) => sim.auth.token_endpoint(&form),
        Err(e) => super::auth::oauth_error("invalid_request", &e.body_text()),
    }
}

async fn exchange(State(sim): State<Shared>, headers: HeaderMap) -> Response {
    sim.auth.exchange(&headers)
}

/// `POST /_sim/correspondence/{id}/read`: the recipient reads the letter.
async fn mark_read(State(sim): State<Shared>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id, "correspondenceId") {
        Ok(id) => id,
        Err(r) => return r,
    };
    let result = with_store(&sim, move |store, _, now| {
        store.mark_read(id, now)?;
        Ok::<_, StoreError>(
            store
                .get(id)
                .map(|r| r.overview(store.attachments()))
                .unwrap_or_default(),
        )
    })
    .await;
    match result {
        Ok(Ok(v)) => {
            tracing::info!(read = %id);
            json_ok(v)
        }
        Ok(Err(e)) => store_error(e),
        Err(r) => r,
    }
}

/// The ticker: run publish jobs when they fall due, so the files on disk
/// follow the clock even when nobody asks. It sleeps until the next job (at
/// most a minute); a create wakes it to look again.
pub async fn tick(sim: Shared) {
    loop {
        let next = with_store(&sim, |store, _, now| store.next_due().map(|due| due - now))
            .await
            .ok()
            .flatten();
        let wait = next
            .map(|d| Duration::try_from(d).unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(60))
            .min(Duration::from_secs(60));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = sim.wake.notified() => {}
        }
    }
}
