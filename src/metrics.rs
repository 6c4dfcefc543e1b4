//! Monitoring over HTTP (`[metrics] listen`): `/metrics` in Prometheus'
//! text format and `/health` for probes and load balancers.
//!
//! The numbers are recorded where things happen with the `metrics` crate's
//! macros (the small functions below are all the pipeline calls), into the
//! recorder of `metrics-exporter-prometheus`, installed once by
//! [`install`]. We serve its handle's rendering ourselves, with axum on the
//! daemon's tokio runtime: ticks run in `spawn_blocking`, so a scrape is
//! answered while a long validation or upload goes on. Without `listen` no
//! recorder is installed and every record function is a no-op.
//!
//! A scrape only renders what is recorded: the gauges that come from the
//! journal (files by state, the oldest file's age, overdue receipts) are
//! refreshed once per tick from one cheap query ([`files`], [`overdue`]),
//! never by a scrape, so any number of scrapers cost the journal nothing.
//!
//! `/health` says 200 `ok` while the daemon ticks and the transport works;
//! otherwise 503 with one line saying why (see [`Health::verdict`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::journal::{FileState, StateCount};

// ---- the names -------------------------------------------------------------

pub const FILES: &str = "dpv_batch_files";
pub const FILE_OLDEST_AGE: &str = "dpv_batch_file_oldest_age_seconds";
pub const LETTERS_SENT: &str = "dpv_batch_letters_sent_total";
pub const LETTERS_ACCEPTED: &str = "dpv_batch_letters_accepted_total";
pub const LETTERS_REFUSED: &str = "dpv_batch_letters_refused_total";
pub const SENT_BYTES: &str = "dpv_batch_sent_bytes_total";
pub const RECEIPTS_OVERDUE: &str = "dpv_batch_receipts_overdue";
pub const TRANSPORT_UP: &str = "dpv_batch_transport_up";
pub const LAST_TICK: &str = "dpv_batch_last_successful_tick_timestamp_seconds";
pub const TICK_DURATION: &str = "dpv_batch_tick_duration_seconds";
pub const UPLOAD_DURATION: &str = "dpv_batch_upload_duration_seconds";
pub const BUILD_INFO: &str = "dpv_batch_build_info";

/// Every file state, so a state that empties shows 0 (not its last count).
const STATES: &[FileState] = FileState::ALL;

/// Histogram buckets (seconds). A tick is usually milliseconds; a large
/// batch or a slow SFTP server makes minutes.
const TICK_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
];
const UPLOAD_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0,
];

/// A recorder is installed: worth querying the journal for the gauges.
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn enabled() -> bool {
    ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The installed recorder's handle, for its upkeep (draining histogram
/// samples into their buckets), done once per tick.
static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();

/// Install the recorder (once per process) and describe the metrics.
/// `None` when a recorder is already installed (a second `run` in one
/// process, which only tests would do).
pub fn install() -> Option<PrometheusHandle> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(TICK_DURATION.into()), &TICK_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(UPLOAD_DURATION.into()), &UPLOAD_BUCKETS)
        })
        .ok()?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).ok()?;
    ENABLED.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = HANDLE.set(handle.clone());
    describe_gauge!(FILES, "Input files by state.");
    describe_gauge!(
        FILE_OLDEST_AGE,
        "Seconds since the oldest file in each state was taken in."
    );
    describe_counter!(LETTERS_SENT, "Letters handed to the transport.");
    describe_counter!(LETTERS_ACCEPTED, "Letters Altinn accepted.");
    describe_counter!(LETTERS_REFUSED, "Letters Altinn refused.");
    describe_counter!(SENT_BYTES, "Bytes of parts handed to the transport.");
    describe_gauge!(
        RECEIPTS_OVERDUE,
        "Parts without their receipt longer than run.receipt_deadline after they were handed over."
    );
    describe_gauge!(
        TRANSPORT_UP,
        "1 when the last transport operation worked, 0 while it fails."
    );
    describe_gauge!(
        LAST_TICK,
        "When the last tick ended without error (unix seconds)."
    );
    describe_histogram!(TICK_DURATION, "How long each pipeline pass took.");
    describe_histogram!(
        UPLOAD_DURATION,
        "How long each submit to the transport took (a part, or a batch of letters)."
    );
    describe_gauge!(BUILD_INFO, "The running version.");
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    // Until the first tick has looked, the transport is presumed up.
    gauge!(TRANSPORT_UP).set(1.0);
    for state in STATES.iter().copied() {
        gauge!(FILES, "state" => label(state)).set(0.0);
    }
    gauge!(RECEIPTS_OVERDUE).set(0.0);
    for name in [LETTERS_SENT, LETTERS_ACCEPTED, LETTERS_REFUSED, SENT_BYTES] {
        counter!(name).absolute(0);
    }
    Some(handle)
}

fn label(state: FileState) -> String {
    state.as_str().to_ascii_lowercase()
}

// ---- what the pipeline and the daemon record ---------------------------------

/// Parts handed to the transport: their letters and bytes.
pub fn sent(letters: i64, bytes: i64) {
    counter!(LETTERS_SENT).increment(letters.max(0) as u64);
    counter!(SENT_BYTES).increment(bytes.max(0) as u64);
}

/// Altinn's verdict on letters (a receipt, or Altinn 3's answer).
pub fn answered(accepted: u64, refused: u64) {
    counter!(LETTERS_ACCEPTED).increment(accepted);
    counter!(LETTERS_REFUSED).increment(refused);
}

/// One submit call to the transport.
pub fn upload_took(d: Duration) {
    histogram!(UPLOAD_DURATION).record(d.as_secs_f64());
}

/// The files per state, from the journal (once per tick).
pub fn files(overview: &[StateCount]) {
    for state in STATES.iter().copied() {
        let row = overview.iter().find(|r| r.state == state);
        let l = label(state);
        gauge!(FILES, "state" => l.clone()).set(row.map_or(0, |r| r.files) as f64);
        // Done files only grow older: their age says nothing.
        if state != FileState::Done {
            gauge!(FILE_OLDEST_AGE, "state" => l).set(row.map_or(0, |r| r.oldest_seconds) as f64);
        }
    }
}

/// Overdue receipts (parts), from the journal (once per tick).
pub fn overdue(parts: i64) {
    gauge!(RECEIPTS_OVERDUE).set(parts as f64);
}

/// A tick ended: how long it took, whether it worked, and the transport.
fn tick_ended(took: Duration, ok: bool, transport_up: bool) {
    histogram!(TICK_DURATION).record(took.as_secs_f64());
    if ok {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64().floor());
        gauge!(LAST_TICK).set(now);
    }
    gauge!(TRANSPORT_UP).set(if transport_up { 1.0 } else { 0.0 });
    if let Some(h) = HANDLE.get() {
        h.run_upkeep();
    }
}

// ---- health ----------------------------------------------------------------

/// What the transport went through on the last tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportHealth {
    Up,
    /// The last operation failed; it is retried with backoff.
    Down(String),
    /// It failed in a way retrying cannot fix: an operator must act.
    Stopped(String),
}

/// The daemon's liveness, kept by the daemon and read by `/health`.
pub struct Health {
    /// No tick ended this long ago (and none is running): unhealthy.
    stale_after: Duration,
    inner: Mutex<HealthInner>,
}

struct HealthInner {
    running_since: Option<Instant>,
    last_end: Option<Instant>,
    transport: TransportHealth,
}

/// A tick running longer than this is taken to be stuck (an upload that
/// hangs): validating a 2 GB batch takes well under a minute, and an SFTP
/// operation times out on its own (`io_timeout_ms`) long before.
pub const STUCK_AFTER: Duration = Duration::from_secs(15 * 60);

impl Health {
    /// Ticks are due at least every `poll`: stale after 3 polls, and never
    /// under a minute (a busy machine, a slow disk).
    pub fn new(poll: Duration) -> Health {
        Health {
            stale_after: (poll * 3).max(Duration::from_secs(60)),
            inner: Mutex::new(HealthInner {
                running_since: None,
                last_end: None,
                transport: TransportHealth::Up,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthInner> {
        // A panic while holding it cannot leave it half-written (plain
        // fields): use it anyway.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn tick_started(&self) {
        self.lock().running_since = Some(Instant::now());
    }

    /// A tick ended (`ok`: without a pipeline error) after `took`.
    pub fn tick_ended(&self, took: Duration, ok: bool, transport: TransportHealth) {
        tick_ended(took, ok, transport == TransportHealth::Up);
        let mut h = self.lock();
        h.running_since = None;
        if ok {
            h.last_end = Some(Instant::now());
        }
        h.transport = transport;
    }

    /// `Ok` when healthy; else the reason, one line. Healthy means: a tick
    /// is running and started less than [`STUCK_AFTER`] ago (a long
    /// validation is work, not trouble), or the last tick ended less than
    /// `stale_after` ago; and the transport is neither down nor stopped.
    /// Throttling (Altinn's Retry-After) is not unhealthy: it is Altinn
    /// pacing us, and `status` shows it.
    pub fn verdict(&self) -> Result<(), String> {
        let h = self.lock();
        match (h.running_since, h.last_end) {
            (Some(since), _) if since.elapsed() >= STUCK_AFTER => {
                return Err(format!(
                    "a tick has been running for {}s (stuck?)",
                    since.elapsed().as_secs()
                ))
            }
            (Some(_), _) => {}
            (None, Some(end)) if end.elapsed() < self.stale_after => {}
            (None, Some(end)) => {
                return Err(format!(
                    "no tick for {}s (expected every {}s at most)",
                    end.elapsed().as_secs(),
                    self.stale_after.as_secs()
                ))
            }
            (None, None) => return Err("no tick has ended yet".into()),
        }
        match &h.transport {
            TransportHealth::Up => Ok(()),
            TransportHealth::Down(why) => Err(one_line(&format!("transport down: {why}"))),
            TransportHealth::Stopped(why) => Err(one_line(&format!(
                "transport stopped, an operator must act: {why}"
            ))),
        }
    }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

// ---- the HTTP server ---------------------------------------------------------

#[derive(Clone)]
struct Shared {
    handle: Option<PrometheusHandle>,
    health: Arc<Health>,
}

/// Bind `addr` now (so a bad address or a port in use is a start-up error,
/// said plainly) and serve `/metrics` and `/health` on the current tokio
/// runtime until the process ends.
pub async fn serve(
    addr: SocketAddr,
    handle: Option<PrometheusHandle>,
    health: Arc<Health>,
) -> std::io::Result<()> {
    let listener = Capped {
        listener: tokio::net::TcpListener::bind(addr).await?,
        slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
    };
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/health", get(health_check))
        .with_state(Shared { handle, health });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok(())
}

/// At most this many connections are served at once; more wait in the
/// kernel's backlog, unaccepted. Each connection holds a file descriptor,
/// and the pipeline needs descriptors too (the inbox listing, the journal,
/// every file it reads): without a cap, clients that connect and say
/// nothing took every descriptor the process may have, and the next tick
/// failed with "Too many open files" and stopped the daemon.
const MAX_CONNECTIONS: usize = 16;

/// A connection is closed this long after it was accepted, whatever it is
/// doing: a scrape takes milliseconds, and a client that sends its request
/// a byte a minute (or never) must give its slot back. A scraper that keeps
/// its connection open simply connects again.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(10);

/// The listener axum serves from: takes a slot before it accepts, and
/// hands out connections that give the slot back when they close (or when
/// their [`CONNECTION_LIFETIME`] is over).
struct Capped {
    listener: tokio::net::TcpListener,
    slots: Arc<tokio::sync::Semaphore>,
}

impl axum::serve::Listener for Capped {
    type Io = Limited;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Limited, SocketAddr) {
        // The semaphore is never closed, so this always gets a slot.
        let slot = self.slots.clone().acquire_owned().await;
        let (io, addr) = axum::serve::Listener::accept(&mut self.listener).await;
        let conn = Limited {
            io,
            deadline: Box::pin(tokio::time::sleep(CONNECTION_LIFETIME)),
            _slot: slot.ok(),
        };
        (conn, addr)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A connection with a deadline and a slot (see [`Capped`]): once the
/// deadline passes, reads and writes fail, so hyper drops the connection
/// (and with it the slot and the descriptor) even while it waits for a
/// client that says nothing.
struct Limited {
    io: tokio::net::TcpStream,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Limited {
    fn expired(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn over() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the metrics connection's time is over",
    )
}

impl tokio::io::AsyncRead for Limited {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.expired(cx) {
            return std::task::Poll::Ready(Err(over()));
        }
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Limited {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.expired(cx) {
            return std::task::Poll::Ready(Err(over()));
        }
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

async fn render(State(s): State<Shared>) -> impl IntoResponse {
    let body = s.handle.as_ref().map(|h| h.render()).unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

async fn health_check(State(s): State<Shared>) -> impl IntoResponse {
    let (code, body) = match s.health.verdict() {
        Ok(()) => (StatusCode::OK, "ok\n".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    };
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_needs_a_recent_tick_and_a_working_transport() {
        let h = Health::new(Duration::from_millis(50));
        assert_eq!(h.verdict().unwrap_err(), "no tick has ended yet");
        h.tick_started();
        assert!(h.verdict().is_ok(), "a running tick is alive");
        h.tick_ended(Duration::ZERO, true, TransportHealth::Up);
        assert!(h.verdict().is_ok());
        h.tick_ended(
            Duration::ZERO,
            true,
            TransportHealth::Down("cannot list\nx".into()),
        );
        assert_eq!(h.verdict().unwrap_err(), "transport down: cannot list x");
        h.tick_ended(
            Duration::ZERO,
            true,
            TransportHealth::Stopped("host key".into()),
        );
        assert_eq!(
            h.verdict().unwrap_err(),
            "transport stopped, an operator must act: host key"
        );
    }

    #[test]
    fn health_goes_stale_without_ticks() {
        let h = Health {
            stale_after: Duration::from_millis(1),
            ..Health::new(Duration::from_millis(1))
        };
        h.tick_ended(Duration::ZERO, true, TransportHealth::Up);
        std::thread::sleep(Duration::from_millis(5));
        assert!(h.verdict().unwrap_err().starts_with("no tick for "));
    }
}
