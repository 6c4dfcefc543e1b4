//! The SFTP transport: Altinn's batch area on an SFTP server.
//!
//! Built on libssh2 (the `ssh2` crate) because it is the SSH implementation
//! with a blocking SFTP client that has run against Altinn-style servers
//! for years, and SFTP write pipelining, which a large batch needs to get
//! near the line speed.
//!
//! # What makes it safe
//! - **Pinned host key.** The server's key must match a known_hosts entry
//!   for `host:port` or a configured SHA256 fingerprint before the client
//!   authenticates ([`super::hostkey`]). A mismatch is a
//!   [`ErrorKind::Permanent`] error naming both fingerprints.
//! - **Never a half file under its final name.** An upload is written to
//!   `upload_dir/.NAME.part` (hidden: Altinn and the simulator ignore it),
//!   its remote size checked, and only then renamed to `NAME`. OpenSSH's
//!   SFTP rename (protocol version 3) refuses to replace an existing file
//!   and libssh2's `posix-rename@openssh.com` is not reachable through the
//!   `ssh2` crate, so an existing final name is handled by hand: the same
//!   size means an earlier try already delivered it (upload names are
//!   unique per batch part); another size is a stale file, removed before
//!   the complete temporary file is renamed. At no instant does the final
//!   name hold an incomplete file.
//! - **`delivered`** looks at the final name and at the receipt (also in
//!   `processed_receipt_dir` when that is used), so an upload whose outcome
//!   was lost (crash, dropped connection after the rename) is not sent twice.
//!
//! # Connections and retries
//! One SSH session is kept and reused. Before an operation on a session
//! that was idle for a while, a cheap `stat .` checks it; a dead session is
//! dropped and a new one made. Transient failures (refused, reset, timeout,
//! EOF, a full remote disk) are retried *within one call* a few times
//! (`tries`, exponential backoff with jitter, capped): enough to ride over
//! a server restart, short enough that the pipeline — which does the
//! long-term retrying — is not blocked. What is left is returned as
//! [`ErrorKind::Transient`]. Authentication, host key, permission and
//! missing-folder errors are [`ErrorKind::Permanent`]: an operator must act.
//!
//! # Memory and speed
//! Uploads stream: a fixed ring buffer ([`IN_FLIGHT`] bytes of unacknowledged
//! SFTP writes plus one read chunk) whatever the file size. libssh2 sends
//! up to the whole unacknowledged part as pipelined WRITE requests and
//! returns as acknowledgements arrive, so the line stays busy like
//! OpenSSH's `sftp` (which keeps 64 requests of 32 KiB in flight).

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ssh2::{ErrorCode, MethodType, OpenFlags, OpenType, Session};

use super::hostkey::{Pins, Verdict};
use super::{
    is_temporary, receipt_name, ErrorKind, FileTransport, Inbound, Result, TransportError,
};
use crate::config::SftpTransport;
use crate::durable;

/// Bytes read from the local file at a time.
pub const READ_CHUNK: usize = 256 * 1024;
/// Most unacknowledged bytes in flight during an upload (libssh2's channel
/// window is 2 MiB; OpenSSH's sftp keeps 64 x 32 KiB).
pub const IN_FLIGHT: usize = 2 * 1024 * 1024;
/// A session idle this long is checked (`stat .`) before it is used.
const CHECK_IDLE: Duration = Duration::from_secs(5);

/// Ciphers, cheapest for libssh2 first (measured on a bulk upload: its
/// chacha20-poly1305 encrypts whole packets, while its AES modes call
/// OpenSSL once per 16-byte block, which costs 10-30% more CPU). No CBC.
const CIPHERS: &str = "chacha20-poly1305@openssh.com,aes128-ctr,aes256-ctr,\
aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes192-ctr";

/// The environment variable a key passphrase may come from.
pub const PASSPHRASE_ENV: &str = "DPV_SFTP_PASSPHRASE";

// libssh2 codes (see libssh2.h / libssh2_sftp.h).
const FX_NO_SUCH_FILE: i32 = 2;
const FX_PERMISSION_DENIED: i32 = 3;
const FX_OP_UNSUPPORTED: i32 = 8;
const FX_NO_SUCH_PATH: i32 = 10;
const FX_WRITE_PROTECT: i32 = 12;
const FX_NOT_A_DIRECTORY: i32 = 19;
const FX_INVALID_FILENAME: i32 = 20;
const ERR_FILE: i32 = -16;
const ERR_METHOD_NONE: i32 = -17;
const ERR_AUTHENTICATION_FAILED: i32 = -18;
const ERR_PUBLICKEY_UNVERIFIED: i32 = -19;
const ERR_METHOD_NOT_SUPPORTED: i32 = -33;
const ERR_KEYFILE_AUTH_FAILED: i32 = -48;
const ERR_ALGO_UNSUPPORTED: i32 = -51;

/// The steps of a login, in order: what `check-config --connect` names
/// when one fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Resolving the host and opening the TCP connection.
    Tcp,
    /// The SSH handshake (key exchange, ciphers).
    Handshake,
    /// The server's host key against the pinned ones.
    HostKey,
    /// Key authentication of the account.
    Auth,
    /// Starting SFTP on the session.
    Subsystem,
    /// The configured remote folders.
    Folders,
}

impl Step {
    pub fn describe(self) -> &'static str {
        match self {
            Step::Tcp => "TCP connection",
            Step::Handshake => "SSH handshake",
            Step::HostKey => "host key",
            Step::Auth => "authentication",
            Step::Subsystem => "SFTP subsystem",
            Step::Folders => "remote folders",
        }
    }
}

/// An SFTP account as a [`Transport`].
pub struct Sftp {
    settings: Settings,
    conn: Option<Conn>,
}

struct Settings {
    cfg: SftpTransport,
    passphrase: Option<String>,
    pins: Pins,
    /// `user@host:port` for messages.
    target: String,
}

struct Conn {
    // `sftp` before `session`: fields drop in order.
    sftp: ssh2::Sftp,
    session: Session,
    last_used: Instant,
}

fn permanent(message: String) -> TransportError {
    TransportError {
        kind: ErrorKind::Permanent,
        message,
    }
}

fn transient(message: String) -> TransportError {
    TransportError {
        kind: ErrorKind::Transient,
        message,
    }
}

/// Whether an ssh2 error can heal by itself.
fn classify(e: &ssh2::Error) -> ErrorKind {
    match e.code() {
        ErrorCode::SFTP(
            FX_NO_SUCH_FILE | FX_NO_SUCH_PATH | FX_PERMISSION_DENIED | FX_WRITE_PROTECT
            | FX_NOT_A_DIRECTORY | FX_INVALID_FILENAME | FX_OP_UNSUPPORTED,
        ) => ErrorKind::Permanent,
        ErrorCode::Session(
            ERR_FILE
            | ERR_METHOD_NONE
            | ERR_AUTHENTICATION_FAILED
            | ERR_PUBLICKEY_UNVERIFIED
            | ERR_METHOD_NOT_SUPPORTED
            | ERR_KEYFILE_AUTH_FAILED
            | ERR_ALGO_UNSUPPORTED,
        ) => ErrorKind::Permanent,
        // Socket errors, timeouts, EOF, channel closed, generic SFTP failure
        // (OpenSSH reports e.g. a full disk so), key exchange cut short.
        _ => ErrorKind::Transient,
    }
}

fn is_not_found(e: &ssh2::Error) -> bool {
    matches!(
        e.code(),
        ErrorCode::SFTP(FX_NO_SUCH_FILE) | ErrorCode::SFTP(FX_NO_SUCH_PATH)
    )
}

fn local_err(what: &str, path: &Path, e: io::Error) -> TransportError {
    let kind = match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => ErrorKind::Permanent,
        _ => ErrorKind::Transient,
    };
    TransportError {
        kind,
        message: format!("{what} {}: {e}", path.display()),
    }
}

impl Settings {
    /// An error from an SFTP operation on a remote path.
    fn remote_err(&self, what: &str, path: &Path, e: &ssh2::Error) -> TransportError {
        let kind = classify(e);
        let hint = match e.code() {
            ErrorCode::SFTP(FX_PERMISSION_DENIED | FX_WRITE_PROTECT) => {
                format!(" (the account {} may not do this there)", self.cfg.user)
            }
            ErrorCode::SFTP(FX_NO_SUCH_FILE | FX_NO_SUCH_PATH) => {
                " (check the folder names in [transport.sftp])".to_string()
            }
            _ => String::new(),
        };
        TransportError {
            kind,
            message: format!(
                "sftp {}: cannot {what} {}: {e}{hint}",
                self.target,
                path.display()
            ),
        }
    }

    fn remote(&self, dir: &str, name: &str) -> PathBuf {
        Path::new(dir).join(name)
    }

    fn inbound_dir(&self, folder: Inbound) -> &str {
        match folder {
            Inbound::Receipts => &self.cfg.receipt_dir,
            Inbound::Confirmations => &self.cfg.confirmation_dir,
        }
    }

    fn ms(ms: u64) -> u32 {
        u32::try_from(ms).unwrap_or(u32::MAX)
    }

    /// TCP connect, SSH handshake, host key check, key authentication, SFTP.
    fn connect(&self) -> Result<Conn> {
        self.connect_steps().map_err(|(_, e)| e)
    }

    /// [`Settings::connect`], telling which step failed.
    fn connect_steps(&self) -> std::result::Result<Conn, (Step, TransportError)> {
        let at = |step: Step| move |e: TransportError| (step, e);
        let cfg = &self.cfg;
        let connect_timeout = Duration::from_millis(cfg.connect_timeout_ms.max(1));
        let addrs: Vec<_> = (cfg.host.as_str(), cfg.port)
            .to_socket_addrs()
            .map_err(|e| {
                transient(format!(
                    "sftp {}: cannot resolve {}: {e}",
                    self.target, cfg.host
                ))
            })
            .map_err(at(Step::Tcp))?
            .collect();
        let mut last = None;
        let mut tcp = None;
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, connect_timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = tcp.ok_or_else(|| {
            let why = last.map_or_else(|| "no address".to_string(), |e| e.to_string());
            (
                Step::Tcp,
                transient(format!("sftp {}: cannot connect: {why}", self.target)),
            )
        })?;
        let _ = tcp.set_nodelay(true);

        let handshake_err = |e: ssh2::Error| {
            (
                Step::Handshake,
                TransportError {
                    kind: classify(&e),
                    message: format!("sftp {}: SSH handshake failed: {e}", self.target),
                },
            )
        };
        let mut session = Session::new().map_err(handshake_err)?;
        session.set_tcp_stream(tcp);
        session.set_timeout(Self::ms(cfg.connect_timeout_ms));
        for dir in [MethodType::CryptCs, MethodType::CryptSc] {
            session.method_pref(dir, CIPHERS).map_err(handshake_err)?;
        }
        let algos = self.pins.algorithms();
        if !algos.is_empty() {
            session
                .method_pref(MethodType::HostKey, &algos)
                .map_err(handshake_err)?;
        }
        session.handshake().map_err(|e| {
            let mut err = handshake_err(e);
            if !algos.is_empty() {
                err.1
                    .message
                    .push_str(&format!(" (host key types pinned: {algos})"));
            }
            err
        })?;

        let (offered, _) = session.host_key().ok_or_else(|| {
            (
                Step::HostKey,
                transient(format!("sftp {}: the server sent no host key", self.target)),
            )
        })?;
        let offered_fp = super::hostkey::fingerprint(offered);
        let offered_algo = ssh_key_algo(offered);
        match self.pins.verdict(offered) {
            Verdict::Trusted => {}
            Verdict::Revoked => {
                return Err((
                    Step::HostKey,
                    permanent(format!(
                    "sftp {}: the server's host key {offered_algo} {offered_fp} is marked @revoked \
                     in known_hosts; not connecting",
                    self.target
                )),
                ))
            }
            Verdict::Mismatch => {
                return Err((
                    Step::HostKey,
                    permanent(format!(
                    "sftp {}: host key mismatch: expected {}, the server offered {offered_algo} \
                     {offered_fp}. Not connecting: someone may be posing as the server. If the \
                     server's key was changed on purpose, pin the new key (known_hosts or \
                     host_key_fingerprints) after checking it with the server's operator",
                    self.target,
                    self.pins.describe_expected()
                )),
                ))
            }
        }

        session.set_timeout(Self::ms(cfg.io_timeout_ms));
        if let Err(e) = session.userauth_pubkey_file(
            &cfg.user,
            None,
            &cfg.private_key,
            self.passphrase.as_deref(),
        ) {
            let kind = classify(&e);
            let message = if kind == ErrorKind::Permanent {
                format!(
                    "sftp {}: authentication refused for user {} with key {}: {e} (is the \
                     public key installed for this account, and the passphrase right?)",
                    self.target,
                    cfg.user,
                    cfg.private_key.display()
                )
            } else {
                format!("sftp {}: authentication failed: {e}", self.target)
            };
            return Err((Step::Auth, TransportError { kind, message }));
        }
        if !session.authenticated() {
            return Err((
                Step::Auth,
                permanent(format!(
                    "sftp {}: authentication refused for user {} with key {}",
                    self.target,
                    cfg.user,
                    cfg.private_key.display()
                )),
            ));
        }
        if cfg.keepalive_ms > 0 {
            let secs = u32::try_from(cfg.keepalive_ms.div_ceil(1000)).unwrap_or(u32::MAX);
            session.set_keepalive(true, secs);
        }
        let sftp = session.sftp().map_err(|e| {
            (
                Step::Subsystem,
                TransportError {
                    kind: classify(&e),
                    message: format!(
                        "sftp {}: the server did not start the SFTP subsystem: {e}",
                        self.target
                    ),
                },
            )
        })?;
        Ok(Conn {
            sftp,
            session,
            last_used: Instant::now(),
        })
    }

    /// The wait before try `attempt` (1: the first retry): from `retry_ms`,
    /// doubling, capped at `retry_max_ms` ([`crate::backoff`]).
    fn backoff(&self, attempt: u32) -> Duration {
        crate::backoff::delay(
            Duration::from_millis(self.cfg.retry_ms),
            Duration::from_millis(self.cfg.retry_max_ms),
            attempt.saturating_sub(1),
        )
    }
}

/// The algorithm name inside an SSH key blob (`string algo, ...`).
fn ssh_key_algo(blob: &[u8]) -> String {
    blob.get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(|b| u32::from_be_bytes(b) as usize)
        .and_then(|n| blob.get(4..4 + n))
        .and_then(|s| std::str::from_utf8(s).ok())
        .unwrap_or("unknown")
        .to_string()
}

/// A remote file name must be one plain name: no folders, nothing hidden
/// (hidden names are our temporary files).
fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.contains('/')
        || name.contains('\0')
        || name == "."
        || name == ".."
        || name.starts_with('.')
    {
        return Err(permanent(format!(
            "'{name}' cannot be a remote file name (one plain, non-hidden name is needed)"
        )));
    }
    Ok(())
}

impl Sftp {
    /// A transport for `cfg`. Reads the passphrase and the pinned keys now
    /// (so a config problem shows at start); connects on first use.
    pub fn new(cfg: &SftpTransport) -> Result<Sftp> {
        let problems = cfg.check();
        if !problems.is_empty() {
            return Err(permanent(format!(
                "[transport.sftp] cannot be used: {}",
                problems.join("; ")
            )));
        }
        let passphrase = match &cfg.private_key_passphrase_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| local_err("cannot read the passphrase file", path, e))?;
                Some(text.lines().next().unwrap_or("").to_string())
            }
            None => std::env::var(PASSPHRASE_ENV).ok(),
        };
        let pins = Pins::load(
            cfg.known_hosts.as_deref(),
            &cfg.host_key_fingerprints,
            &cfg.host,
            cfg.port,
        )
        .map_err(|e| permanent(format!("transport.sftp: {e}")))?;
        if pins.is_empty() {
            return Err(permanent(format!(
                "transport.sftp: no pinned host key for {}:{}; refusing to connect",
                cfg.host, cfg.port
            )));
        }
        Ok(Sftp {
            settings: Settings {
                target: format!("{}@{}:{}", cfg.user, cfg.host, cfg.port),
                cfg: cfg.clone(),
                passphrase,
                pins,
            },
            conn: None,
        })
    }

    /// `check-config --connect`: log in once (no retries) and look at every
    /// configured folder; an upload folder must take a (hidden, removed)
    /// file. Says what was reached, or which [`Step`] failed and why.
    pub fn check_steps(&mut self) -> std::result::Result<String, (Step, String)> {
        let s = &self.settings;
        let c = s.connect_steps().map_err(|(step, e)| (step, e.message))?;
        let folder = |e: TransportError| (Step::Folders, e.message);
        let cfg = &s.cfg;
        let mut dirs = vec![
            ("upload_dir", &cfg.upload_dir),
            ("receipt_dir", &cfg.receipt_dir),
            ("confirmation_dir", &cfg.confirmation_dir),
        ];
        if let Some(p) = &cfg.processed_receipt_dir {
            dirs.push(("processed_receipt_dir", p));
        }
        for (key, dir) in &dirs {
            let path = Path::new(dir.as_str());
            match c.sftp.stat(path) {
                Ok(st) if st.is_dir() => {}
                Ok(_) => {
                    return Err((
                        Step::Folders,
                        format!("transport.sftp.{key} ({dir}) is not a folder on the server"),
                    ))
                }
                Err(e) => {
                    let err = s.remote_err("look at", path, &e);
                    return Err((
                        Step::Folders,
                        format!("transport.sftp.{key} ({dir}): {}", err.message),
                    ));
                }
            }
        }
        let probe = s.remote(&cfg.upload_dir, ".dpv-batch-check.part");
        c.sftp
            .create(&probe)
            .map_err(|e| folder(s.remote_err("create a file in", &probe, &e)))?;
        c.sftp
            .unlink(&probe)
            .map_err(|e| folder(s.remote_err("remove", &probe, &e)))?;
        let names: Vec<&str> = dirs.iter().map(|(_, d)| d.as_str()).collect();
        Ok(format!(
            "{}: TCP, host key, authentication, folders {}",
            s.target,
            names.join(", ")
        ))
    }

    /// The negotiated cipher (client to server) of the current session,
    /// e.g. `aes256-gcm@openssh.com`; `None` when not connected.
    pub fn cipher(&self) -> Option<String> {
        let c = self.conn.as_ref()?;
        c.session.methods(MethodType::CryptCs).map(str::to_string)
    }

    /// The session to use: the kept one when it still works, else a new one.
    fn ensure(conn: &mut Option<Conn>, settings: &Settings) -> Result<()> {
        if let Some(c) = conn {
            let _ = c.session.keepalive_send();
            if c.last_used.elapsed() >= CHECK_IDLE && c.sftp.stat(Path::new(".")).is_err() {
                *conn = None;
            }
        }
        if conn.is_none() {
            *conn = Some(settings.connect()?);
        }
        Ok(())
    }

    /// Run `op` with a working session; transient failures are retried up
    /// to `tries` times in all, on a fresh session each time.
    fn run<T>(
        &mut self,
        what: &str,
        mut op: impl FnMut(&Settings, &mut Conn) -> Result<T>,
    ) -> Result<T> {
        let tries = self.settings.cfg.tries.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result =
                Self::ensure(&mut self.conn, &self.settings).and_then(|()| match &mut self.conn {
                    Some(c) => {
                        let r = op(&self.settings, c);
                        c.last_used = Instant::now();
                        r
                    }
                    None => Err(transient(format!(
                        "sftp {}: not connected",
                        self.settings.target
                    ))),
                });
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e.kind == ErrorKind::Transient => {
                    // The session may be broken half way through a request.
                    self.conn = None;
                    if attempt >= tries {
                        let mut e = e;
                        if tries > 1 {
                            e.message
                                .push_str(&format!(" ({what}: gave up after {tries} tries)"));
                        }
                        return Err(e);
                    }
                    let pause = self.settings.backoff(attempt);
                    tracing::warn!(
                        server = %self.settings.target,
                        error = %e,
                        attempt,
                        pause_ms = pause.as_millis() as u64,
                        "sftp: transient error, trying again"
                    );
                    std::thread::sleep(pause);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Write all of `local` (of `size` bytes) to the open remote `file`,
/// keeping up to [`IN_FLIGHT`] bytes of pipelined writes outstanding.
fn stream_upload(
    s: &Settings,
    remote: &Path,
    local_path: &Path,
    local: &mut File,
    file: &mut ssh2::File,
    size: u64,
) -> Result<()> {
    // Twice the window plus a read: data is moved back to the start at most
    // once per IN_FLIGHT bytes sent, so the moves cost about one copy.
    let mut buf = vec![0u8; 2 * IN_FLIGHT + READ_CHUNK];
    let (mut start, mut end) = (0usize, 0usize);
    let mut eof = false;
    let mut read_total: u64 = 0;
    loop {
        // Top up: keep IN_FLIGHT bytes handed to libssh2.
        while !eof && end - start < IN_FLIGHT {
            if buf.len() - end < READ_CHUNK {
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            let n = local
                .read(&mut buf[end..end + READ_CHUNK])
                .map_err(|e| local_err("cannot read", local_path, e))?;
            if n == 0 {
                eof = true;
            }
            end += n;
            read_total += n as u64;
        }
        if start == end {
            break;
        }
        let n = file.write(&buf[start..end]).map_err(|e| {
            transient(format!(
                "sftp {}: writing {} failed: {e}",
                s.target,
                remote.display()
            ))
        })?;
        if n == 0 {
            return Err(transient(format!(
                "sftp {}: writing {} made no progress",
                s.target,
                remote.display()
            )));
        }
        start += n;
    }
    if read_total != size {
        return Err(transient(format!(
            "{} changed while it was uploaded ({size} bytes before, {read_total} read)",
            local_path.display()
        )));
    }
    Ok(())
}

impl Sftp {
    fn upload_once(s: &Settings, c: &mut Conn, local_path: &Path, name: &str) -> Result<()> {
        let size = Self::stage_once(s, c, local_path, name)?;
        let dir = &s.cfg.upload_dir;
        let tmp = s.remote(dir, &format!(".{name}.part"));
        let dest = s.remote(dir, name);
        Self::rename_into_place(s, c, &tmp, &dest, size)
    }

    /// Write the file under its temporary name, synced and size-checked;
    /// returns its size.
    fn stage_once(s: &Settings, c: &mut Conn, local_path: &Path, name: &str) -> Result<u64> {
        let dir = &s.cfg.upload_dir;
        let tmp = s.remote(dir, &format!(".{name}.part"));
        let mut local =
            File::open(local_path).map_err(|e| local_err("cannot open", local_path, e))?;
        let size = local
            .metadata()
            .map_err(|e| local_err("cannot look at", local_path, e))?
            .len();

        let mut file = c
            .sftp
            .open_mode(
                &tmp,
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
                0o644,
                OpenType::File,
            )
            .map_err(|e| s.remote_err("create", &tmp, &e))?;
        stream_upload(s, &tmp, local_path, &mut local, &mut file, size)?;
        // Durable on the server before it is visible (fsync@openssh.com);
        // servers without the extension just don't get asked.
        if s.cfg.fsync {
            if let Err(e) = file.fsync() {
                if classify(&e) == ErrorKind::Transient {
                    return Err(s.remote_err("sync", &tmp, &e));
                }
            }
        }
        file.close().map_err(|e| s.remote_err("close", &tmp, &e))?;
        drop(file);

        let stat = c
            .sftp
            .stat(&tmp)
            .map_err(|e| s.remote_err("look at", &tmp, &e))?;
        if stat.size != Some(size) {
            let _ = c.sftp.unlink(&tmp);
            return Err(transient(format!(
                "sftp {}: {} has {} bytes after the upload, expected {size}; removed, will send again",
                s.target,
                tmp.display(),
                stat.size.map_or("an unknown number of".into(), |n| n.to_string())
            )));
        }
        Ok(size)
    }

    /// Rename the complete `tmp` to `dest`, handling an existing `dest`
    /// (OpenSSH's rename does not replace).
    fn rename_into_place(
        s: &Settings,
        c: &mut Conn,
        tmp: &Path,
        dest: &Path,
        size: u64,
    ) -> Result<()> {
        let first = match c.sftp.rename(tmp, dest, None) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        match c.sftp.stat(dest) {
            Ok(st) if st.size == Some(size) => {
                // Delivered before (an earlier try whose answer was lost).
                tracing::info!(file = %dest.display(), "sftp: already delivered; temporary copy removed");
                let _ = c.sftp.unlink(tmp);
                Ok(())
            }
            Ok(st) => {
                tracing::warn!(
                    file = %dest.display(),
                    size = st.size.unwrap_or(0),
                    expected = size,
                    "sftp: replacing a stale file of another size"
                );
                match c.sftp.unlink(dest) {
                    Ok(()) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(s.remote_err("remove the stale", dest, &e)),
                }
                c.sftp
                    .rename(tmp, dest, None)
                    .map_err(|e| s.remote_err("rename into", dest, &e))
            }
            Err(e) if is_not_found(&e) => Err(s.remote_err("rename into", dest, &first)),
            Err(e) => Err(s.remote_err("look at", dest, &e)),
        }
    }

    /// The final name is there with the right size, or Altinn's receipt
    /// for it is (in the receipt folder or the processed one).
    fn delivered_now(s: &Settings, c: &Conn, remote_name: &str, size: u64) -> Result<bool> {
        let dest = s.remote(&s.cfg.upload_dir, remote_name);
        if let Some(n) = Self::size_of(s, c, &dest)? {
            return Ok(n == size);
        }
        let receipt = receipt_name(remote_name);
        let mut dirs = vec![s.cfg.receipt_dir.as_str()];
        if let Some(p) = &s.cfg.processed_receipt_dir {
            dirs.push(p);
        }
        for dir in dirs {
            if Self::size_of(s, c, &s.remote(dir, &receipt))?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Size of a remote file, `None` when it does not exist.
    fn size_of(s: &Settings, c: &Conn, path: &Path) -> Result<Option<u64>> {
        match c.sftp.stat(path) {
            Ok(st) => Ok(Some(st.size.unwrap_or(0))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(s.remote_err("look at", path, &e)),
        }
    }
}

impl FileTransport for Sftp {
    fn describe(&self) -> String {
        format!(
            "sftp {}/{}",
            self.settings.target, self.settings.cfg.upload_dir
        )
    }

    fn upload(&mut self, local: &Path, remote_name: &str) -> Result<()> {
        check_name(remote_name)?;
        let size = std::fs::metadata(local)
            .map_err(|e| local_err("cannot look at", local, e))?
            .len();
        let mut retry = false;
        self.run("upload", |s, c| {
            // A try whose answer was lost may have delivered it already, and
            // Altinn may even have taken it and answered: look as
            // `delivered` does before sending it again.
            if retry && Self::delivered_now(s, c, remote_name, size)? {
                return Ok(());
            }
            retry = true;
            Self::upload_once(s, c, local, remote_name)
        })
    }

    fn delivered(&mut self, remote_name: &str, size: u64) -> Result<bool> {
        check_name(remote_name)?;
        self.run("check delivery", |s, c| {
            Self::delivered_now(s, c, remote_name, size)
        })
    }

    fn stage(&mut self, local: &Path, remote_name: &str) -> Result<()> {
        check_name(remote_name)?;
        self.run("upload", |s, c| {
            Self::stage_once(s, c, local, remote_name).map(|_| ())
        })
    }

    fn commit(&mut self, remote_name: &str, size: u64) -> Result<()> {
        check_name(remote_name)?;
        self.run("commit", |s, c| {
            if Self::delivered_now(s, c, remote_name, size)? {
                return Ok(());
            }
            let dir = &s.cfg.upload_dir;
            let tmp = s.remote(dir, &format!(".{remote_name}.part"));
            if Self::size_of(s, c, &tmp)? != Some(size) {
                return Err(transient(format!(
                    "sftp {}: {} is not complete; it will be sent again",
                    s.target,
                    tmp.display()
                )));
            }
            Self::rename_into_place(s, c, &tmp, &s.remote(dir, remote_name), size)
        })
    }

    fn discard(&mut self, remote_name: &str) -> Result<()> {
        check_name(remote_name)?;
        self.run("discard", |s, c| {
            let tmp = s.remote(&s.cfg.upload_dir, &format!(".{remote_name}.part"));
            match c.sftp.unlink(&tmp) {
                Ok(()) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(s.remote_err("remove", &tmp, &e)),
            }
        })
    }

    fn list(&mut self, folder: Inbound) -> Result<Vec<String>> {
        self.run("list", |s, c| {
            let dir = Path::new(s.inbound_dir(folder));
            let entries = c
                .sftp
                .readdir(dir)
                .map_err(|e| s.remote_err("list", dir, &e))?;
            let mut names: Vec<String> = entries
                .into_iter()
                .filter(|(_, st)| st.is_file())
                .filter_map(|(p, _)| p.file_name()?.to_str().map(str::to_string))
                .filter(|n| !is_temporary(n) && n.ends_with(".xml"))
                .collect();
            names.sort();
            Ok(names)
        })
    }

    fn fetch(&mut self, folder: Inbound, name: &str, dest: &Path) -> Result<()> {
        check_name(name)?;
        self.run("fetch", |s, c| {
            let src = s.remote(s.inbound_dir(folder), name);
            let mut file = c
                .sftp
                .open(&src)
                .map_err(|e| s.remote_err("open", &src, &e))?;
            let expected = file.stat().ok().and_then(|st| st.size);
            let shown = || format!("sftp {}: {}", s.target, src.display());
            if let Some(size) = expected.filter(|&n| n > super::MAX_INBOUND_BYTES) {
                return Err(super::too_large(&shown(), size));
            }
            let mut remote_failure: Option<TransportError> = None;
            let written = durable::write_atomic_with(dest, |out| {
                let mut buf = vec![0u8; READ_CHUNK];
                let mut total: u64 = 0;
                loop {
                    let n = match file.read(&mut buf) {
                        Ok(n) => n,
                        Err(e) => {
                            remote_failure = Some(transient(format!(
                                "sftp {}: reading {} failed: {e}",
                                s.target,
                                src.display()
                            )));
                            return Err(io::Error::other("remote read failed"));
                        }
                    };
                    if n == 0 {
                        break;
                    }
                    out.write_all(&buf[..n])?;
                    total += n as u64;
                    if total > super::MAX_INBOUND_BYTES {
                        remote_failure = Some(super::too_large(&shown(), total));
                        return Err(io::Error::other("over the limit"));
                    }
                }
                if let Some(want) = expected {
                    if want != total {
                        remote_failure = Some(transient(format!(
                            "sftp {}: {} gave {total} bytes, its size is {want}",
                            s.target,
                            src.display()
                        )));
                        return Err(io::Error::other("short read"));
                    }
                }
                Ok(())
            });
            match (written, remote_failure) {
                (Ok(()), _) => Ok(()),
                (Err(_), Some(e)) => Err(e),
                (Err(e), None) => Err(local_err("cannot write", dest, e)),
            }
        })
    }

    fn remove(&mut self, folder: Inbound, name: &str) -> Result<()> {
        check_name(name)?;
        self.run("remove", |s, c| {
            let src = s.remote(s.inbound_dir(folder), name);
            let Some(done_dir) = &s.cfg.processed_receipt_dir else {
                return match c.sftp.unlink(&src) {
                    Ok(()) => Ok(()),
                    Err(e) if is_not_found(&e) => Ok(()),
                    Err(e) => Err(s.remote_err("remove", &src, &e)),
                };
            };
            let target = s.remote(done_dir, name);
            let first = match c.sftp.rename(&src, &target, None) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Self::size_of(s, c, &src)?.is_none() {
                return Ok(()); // moved by an earlier try
            }
            if Self::size_of(s, c, &target)?.is_none() {
                return Err(s.remote_err("move to", &target, &first));
            }
            // A repeat of a file moved before (Altinn may write one twice):
            // the newer copy replaces it.
            match c.sftp.unlink(&target) {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(s.remote_err("replace", &target, &e)),
            }
            c.sftp
                .rename(&src, &target, None)
                .map_err(|e| s.remote_err("move to", &target, &e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_algorithm_is_read_from_the_blob() {
        let mut blob = vec![0, 0, 0, 11];
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&[0, 0, 0, 1, 9]);
        assert_eq!(ssh_key_algo(&blob), "ssh-ed25519");
        assert_eq!(ssh_key_algo(&[0, 0, 0, 99]), "unknown");
        assert_eq!(ssh_key_algo(&[]), "unknown");
    }

    #[test]
    fn names_must_be_plain() {
        assert!(check_name("batch-1.xml").is_ok());
        for bad in ["", ".", "..", ".hidden", "a/b", "../x"] {
            assert_eq!(check_name(bad).unwrap_err().kind, ErrorKind::Permanent);
        }
    }

    #[test]
    fn error_classes() {
        let e = |c| ssh2::Error::new(c, "x");
        assert_eq!(
            classify(&e(ErrorCode::SFTP(FX_PERMISSION_DENIED))),
            ErrorKind::Permanent
        );
        assert_eq!(
            classify(&e(ErrorCode::Session(ERR_AUTHENTICATION_FAILED))),
            ErrorKind::Permanent
        );
        // socket send, timeout, socket disconnect, generic SFTP failure
        for c in [
            ErrorCode::Session(-7),
            ErrorCode::Session(-9),
            ErrorCode::Session(-13),
            ErrorCode::SFTP(4),
        ] {
            assert_eq!(classify(&e(c)), ErrorKind::Transient, "{c:?}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut cfg = SftpTransport::new("h", 22, "u", PathBuf::from("k"));
        cfg.retry_ms = 100;
        cfg.retry_max_ms = 1000;
        let s = Settings {
            cfg,
            passphrase: None,
            pins: Pins::default(),
            target: String::new(),
        };
        for attempt in 1..10 {
            let d = s.backoff(attempt).as_millis() as u64;
            let full = (100u64 << (attempt - 1)).min(1000);
            assert!(d >= full / 2 && d <= full, "try {attempt}: {d} ms");
        }
    }
}
