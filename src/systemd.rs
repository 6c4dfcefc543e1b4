//! Talking to systemd (`Type=notify`): READY, STATUS, STOPPING and the
//! watchdog. Everything here is a no-op when `NOTIFY_SOCKET` is not set
//! (a terminal, cron, a container), so the daemon calls it unconditionally.
//!
//! The protocol is a datagram of `KEY=VALUE` lines to the socket systemd
//! names in `NOTIFY_SOCKET`; the `sd-notify` crate does exactly that (and
//! handles abstract socket names), so we do not write socket code here.
//!
//! # The watchdog and long ticks
//!
//! With `WatchdogSec=` systemd sets `WATCHDOG_USEC` and kills the service
//! when no `WATCHDOG=1` arrives for that long. The daemon pings every half
//! of it from its async loop. Between ticks the loop being alive is the
//! proof of health, so it pings unconditionally. During a tick (which runs
//! on a blocking thread and may validate a 2 GB file or upload it for
//! minutes) the loop is alive anyway, so pinging blindly would never catch
//! a tick stuck for ever on a socket without a timeout. Instead a ping
//! during a tick needs *progress*: the process used CPU since the last look
//! (validating, packaging, encrypting an upload all do). A healthy tick can
//! still be silent for a while (waiting for Altinn's answer, a backoff
//! sleep), but never longer than the transport's own timeouts; the daemon
//! passes that bound as `silence_limit`. A tick silent for longer stops the
//! pings, and systemd restarts the service one `WatchdogSec` later. Every
//! step is journalled, so that restart loses nothing.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// CPU time (in clock ticks, normally 10 ms) a tick must use between two
/// looks to count as progress. Our own wake-ups cost microseconds, so a
/// hung process never reaches it; a busy one uses thousands.
const PROGRESS_TICKS: u64 = 2;

/// The daemon's line to systemd.
pub struct Notifier {
    /// How often to ping: half of `WATCHDOG_USEC`; `None` without a watchdog.
    ping_every: Option<Duration>,
    /// The longest a healthy tick goes without using CPU.
    silence_limit: Duration,
    /// The process's CPU time at the last look, and when the running tick
    /// last showed progress.
    cpu_seen: u64,
    progress_at: Instant,
    /// A stalled tick is logged once, not at every withheld ping.
    stall_logged: bool,
    /// The last STATUS sent: a tick every poll must not send the same line
    /// to PID 1 twice a second.
    last_status: String,
}

impl Notifier {
    /// Reads `WATCHDOG_USEC` (and `WATCHDOG_PID`, which must be ours).
    pub fn from_env(silence_limit: Duration) -> Notifier {
        let ping_every = sd_notify::watchdog_enabled()
            .filter(|d| !d.is_zero())
            .map(|d| d / 2);
        Notifier {
            ping_every,
            silence_limit,
            cpu_seen: 0,
            progress_at: Instant::now(),
            stall_logged: false,
            last_status: String::new(),
        }
    }

    /// How often the daemon should call [`Notifier::ping_idle`] or
    /// [`Notifier::ping_busy`]; `None`: no watchdog, never.
    pub fn ping_every(&self) -> Option<Duration> {
        self.ping_every
    }

    /// The pipeline is open (journal checked): `systemctl start` returns.
    pub fn ready(&self, status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// One short line for `systemctl status`, sent when it changes.
    pub fn status(&mut self, status: &str) {
        if status != self.last_status {
            send(&[NotifyState::Status(status)]);
            self.last_status = status.to_owned();
        }
    }

    /// A signal asked us to stop; the current step finishes first.
    pub fn stopping(&self) {
        send(&[
            NotifyState::Stopping,
            NotifyState::Status("stopping after the current step"),
        ]);
    }

    /// Between ticks: the loop runs, so we are alive.
    pub fn ping_idle(&mut self) {
        send(&[NotifyState::Watchdog]);
    }

    /// A tick begins: its silence is counted from now.
    pub fn tick_started(&mut self) {
        self.cpu_seen = process_cpu_ticks().unwrap_or(0);
        self.progress_at = Instant::now();
        self.stall_logged = false;
    }

    /// While a tick runs: ping only if it is making progress, or has been
    /// silent for less than `silence_limit`.
    pub fn ping_busy(&mut self) {
        let cpu = process_cpu_ticks();
        let now = Instant::now();
        if alive(
            cpu,
            &mut self.cpu_seen,
            &mut self.progress_at,
            now,
            self.silence_limit,
        ) {
            send(&[NotifyState::Watchdog]);
        } else if !self.stall_logged {
            self.stall_logged = true;
            tracing::error!(
                silent_s = now.duration_since(self.progress_at).as_secs(),
                "the current tick has made no progress for longer than any transport timeout; \
                 withholding the watchdog ping so systemd restarts the service"
            );
        }
    }
}

/// The watchdog's decision during a tick, kept apart so it can be tested:
/// progress (CPU used since `seen`) moves `progress_at` to `now`; the tick is
/// alive while its silence is shorter than `limit`. Without a CPU reading
/// (no /proc) we cannot judge, and never withhold a ping.
fn alive(
    cpu: Option<u64>,
    seen: &mut u64,
    progress_at: &mut Instant,
    now: Instant,
    limit: Duration,
) -> bool {
    let Some(cpu) = cpu else { return true };
    if cpu >= seen.saturating_add(PROGRESS_TICKS) {
        *seen = cpu;
        *progress_at = now;
    }
    now.duration_since(*progress_at) < limit
}

/// utime + stime of the whole process (all threads), in clock ticks, from
/// `/proc/self/stat` (fields 14 and 15; the name in field 2 may hold spaces
/// and parentheses, so fields are counted from its closing one).
fn process_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Failing to reach systemd is not a reason to stop sending letters: it is
/// logged, and systemd itself notices a missing READY or watchdog ping.
fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_using_cpu_is_alive_however_long_it_runs() {
        let start = Instant::now();
        let (mut seen, mut at) = (100, start);
        let limit = Duration::from_secs(600);
        for minute in 1..=60u64 {
            let now = start + Duration::from_secs(60 * minute);
            assert!(alive(
                Some(100 + 3000 * minute),
                &mut seen,
                &mut at,
                now,
                limit
            ));
        }
    }

    #[test]
    fn a_silent_tick_is_alive_until_the_limit_then_not() {
        let start = Instant::now();
        let (mut seen, mut at) = (100, start);
        let limit = Duration::from_secs(600);
        // One clock tick of our own wake-ups is not progress.
        let at_min = |m: u64| start + Duration::from_secs(60 * m);
        assert!(alive(Some(101), &mut seen, &mut at, at_min(5), limit));
        assert!(alive(Some(101), &mut seen, &mut at, at_min(9), limit));
        assert!(!alive(Some(101), &mut seen, &mut at, at_min(10), limit));
        // Progress again: alive again.
        assert!(alive(Some(500), &mut seen, &mut at, at_min(11), limit));
        assert_eq!(at, at_min(11));
    }

    #[test]
    fn without_a_cpu_reading_a_ping_is_never_withheld() {
        let start = Instant::now();
        let (mut seen, mut at) = (0, start);
        let late = start + Duration::from_secs(86_400);
        assert!(alive(
            None,
            &mut seen,
            &mut at,
            late,
            Duration::from_secs(1)
        ));
    }

    #[test]
    fn this_process_cpu_time_is_readable() {
        assert!(process_cpu_ticks().is_some());
    }
}
