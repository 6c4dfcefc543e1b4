//! How dpv-batch logs: the one place that sets up `tracing`.
//!
//! Every line goes to standard error, one event per line, whatever a file
//! name or a server's message holds (control characters are escaped, see
//! `names`). Two formats:
//! - `text` (the default): `2026-11-29T01:02:03Z  INFO file{id=42 file=a.xml}: taken in bytes=123`,
//!   lines an operator can grep (`grep 'id=42 '` finds every line of file 42);
//! - `json` (`[log] format = "json"` or `--log-format json`): one object per
//!   line with `timestamp`, `level`, `message`, the event's fields flattened
//!   beside them and the file's span as `span` (`{"name":"file","id":42,…}`),
//!   for log shippers.
//!
//! Under systemd, standard error is the journal's stream. systemd.exec(5)
//! sets `JOURNAL_STREAM=DEV:INODE` for it; as sd-daemon(3) says, we trust it
//! only when it names the stream standard error really is (a child that
//! inherited the variable but writes elsewhere must not get prefixes). Then
//! each line starts with its syslog priority (`<3>` error, `<4>` warning,
//! `<6>` info, `<7>` debug), which journald strips and keeps as the entry's
//! priority, so `journalctl -p warning` works; and the line has no timestamp,
//! because journald stamps every entry itself.
//!
//! `RUST_LOG` chooses what is logged (`info` by default). A value that does
//! not parse is an error, not a silent fallback: an operator who asked for
//! `debug` to chase a problem must not get `info` and think nothing happened.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tracing::Level;
use tracing_subscriber::filter::{filter_fn, EnvFilter, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::LogFormat;

/// The variable that chooses what is logged.
pub const FILTER_VAR: &str = "RUST_LOG";

/// How to log, decided from the command line and the config.
#[derive(Debug, Clone, Copy, Default)]
pub struct Setup {
    pub format: LogFormat,
    /// Show only warnings and errors on standard error; the whole log goes
    /// to the file given to [`also_to_file`] (the demo on a terminal, whose
    /// table must not scroll away under INFO lines).
    pub quiet_terminal: bool,
}

/// `RUST_LOG`'s directives, checked: `Ok(None)` when it is unset or empty
/// (log at `info`), an error naming the variable when it does not parse.
pub fn directives() -> Result<Option<String>, String> {
    let value = match std::env::var(FILTER_VAR) {
        Ok(v) if v.trim().is_empty() => return Ok(None),
        Ok(v) => v,
        Err(std::env::VarError::NotPresent) => return Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(format!("{FILTER_VAR} is not valid UTF-8"))
        }
    };
    parse_filter(&value).map_err(|e| {
        format!("{FILTER_VAR}='{value}' is not a log filter ({e}); use e.g. RUST_LOG=info or RUST_LOG=dpv_batch=debug")
    })?;
    Ok(Some(value))
}

fn parse_filter(directives: &str) -> Result<EnvFilter, String> {
    EnvFilter::builder()
        .with_default_directive(LevelFilter::ERROR.into())
        .parse(directives)
        .map_err(|e| e.to_string())
}

/// Is standard error the journal's stream (see the module docs)?
pub fn journald() -> bool {
    std::env::var(JOURNAL_STREAM)
        .ok()
        .is_some_and(|v| stream_matches(&v, stderr_id()))
}

const JOURNAL_STREAM: &str = "JOURNAL_STREAM";

/// Does `JOURNAL_STREAM`'s `DEV:INODE` name the stream `(dev, ino)`?
fn stream_matches(value: &str, stderr: Option<(u64, u64)>) -> bool {
    let Some((dev, ino)) = value.trim().split_once(':') else {
        return false;
    };
    match (dev.parse::<u64>(), ino.parse::<u64>(), stderr) {
        (Ok(dev), Ok(ino), Some(id)) => (dev, ino) == id,
        _ => false,
    }
}

/// Standard error's device and inode (fstat on a duplicate of fd 2).
fn stderr_id() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    let fd = io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Set up logging for this process. `directives` comes from [`directives`].
pub fn init(setup: Setup, directives: Option<&str>) -> Result<(), String> {
    let journald = journald();
    let full = || match directives {
        Some(d) => parse_filter(d),
        None => Ok(EnvFilter::new("info")),
    };
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    let terminal = Lines {
        json: setup.format == LogFormat::Json,
        journald,
        to: To::Stderr,
    };
    if setup.quiet_terminal {
        WANTS_FILE.store(true, Ordering::Relaxed);
        // Warnings and errors, inside their spans (a file's id shows).
        let warnings = filter_fn(|meta| meta.is_span() || *meta.level() <= Level::WARN);
        layers.push(
            format_layer(setup.format, journald, terminal)
                .with_filter(warnings)
                .boxed(),
        );
        let file = Lines {
            json: setup.format == LogFormat::Json,
            journald: false,
            to: To::File,
        };
        layers.push(
            format_layer(setup.format, false, file)
                .with_filter(full()?)
                .boxed(),
        );
    } else {
        layers.push(
            format_layer(setup.format, journald, terminal)
                .with_filter(full()?)
                .boxed(),
        );
    }
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| e.to_string())
}

/// The formatting layer: text or JSON, with a timestamp unless journald
/// stamps the lines.
fn format_layer(
    format: LogFormat,
    journald: bool,
    lines: Lines,
) -> Box<dyn Layer<Registry> + Send + Sync> {
    let base = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_target(false)
        .with_writer(lines);
    match (format, journald) {
        (LogFormat::Text, false) => base.boxed(),
        (LogFormat::Text, true) => base.without_time().boxed(),
        (LogFormat::Json, journald) => {
            let json = base
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false);
            if journald {
                json.without_time().boxed()
            } else {
                json.boxed()
            }
        }
    }
}

/// The file the whole log also goes to (see [`Setup::quiet_terminal`]).
static FILE: Mutex<Option<File>> = Mutex::new(None);
/// Logging was set up with a quiet terminal: the log wants a file.
static WANTS_FILE: AtomicBool = AtomicBool::new(false);

/// With a quiet terminal, append the whole log to `path` from now on (the
/// demo's workspace is made after logging is set up) and say `true`;
/// otherwise do nothing (every line already goes to standard error).
pub fn also_to_file(path: &Path) -> io::Result<bool> {
    if !WANTS_FILE.load(Ordering::Relaxed) {
        return Ok(false);
    }
    let file = File::options().create(true).append(true).open(path)?;
    if let Ok(mut f) = FILE.lock() {
        *f = Some(file);
    }
    Ok(true)
}

#[derive(Clone, Copy)]
enum To {
    Stderr,
    File,
}

/// Makes one [`Line`] per event.
struct Lines {
    json: bool,
    journald: bool,
    to: To,
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            prefix: "",
            json: self.json,
            to: self.to,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line {
        let mut line = self.make_writer();
        if self.journald {
            line.prefix = priority(*meta.level());
        }
        line
    }
}

/// The syslog priority journald reads from the start of a line.
fn priority(level: Level) -> &'static str {
    match level {
        Level::ERROR => "<3>",
        Level::WARN => "<4>",
        Level::INFO => "<6>",
        Level::DEBUG | Level::TRACE => "<7>",
    }
}

/// One event: the formatter writes it whole in one `write`, so the prefix
/// goes in front and the escaping sees the whole line.
struct Line {
    prefix: &'static str,
    json: bool,
    to: To,
}

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut out = self.prefix.as_bytes().to_vec();
        // The text format pads the level (" INFO"); after a priority
        // prefix the line starts at the level.
        let buf_in = buf;
        let buf = if self.prefix.is_empty() {
            buf
        } else {
            buf.trim_ascii_start()
        };
        if self.json {
            json_safe(buf, &mut out);
        } else {
            crate::names::SafeLines(&mut out).write_all(buf)?;
        }
        match self.to {
            To::Stderr => crate::progress::suspend(|| io::stderr().lock().write_all(&out))?,
            To::File => {
                if let Ok(mut f) = FILE.lock() {
                    if let Some(f) = f.as_mut() {
                        f.write_all(&out)?;
                    }
                }
            }
        }
        Ok(buf_in.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A JSON line made safe like a text line, staying JSON: serde_json already
/// escapes control characters below U+0020; the others a terminal acts on
/// (C1 controls, bidirectional overrides, line separators: see `names`) are
/// written as `\uHHHH`, which is the same string to a JSON reader. They can
/// only occur inside strings, where that escape is valid.
fn json_safe(buf: &[u8], out: &mut Vec<u8>) {
    let (line, newline) = match buf.strip_suffix(b"\n") {
        Some(line) => (line, true),
        None => (buf, false),
    };
    for c in String::from_utf8_lossy(line).chars() {
        if crate::names::needs_escape(c) {
            out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
        } else {
            let mut b = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        }
    }
    if newline {
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_standard_error() {
        assert!(stream_matches("64769:12345", Some((64769, 12345))));
        assert!(!stream_matches("64769:12346", Some((64769, 12345))));
        assert!(!stream_matches("64769", Some((64769, 12345))));
        assert!(!stream_matches("a:b", Some((64769, 12345))));
        assert!(!stream_matches("64769:12345", None));
    }

    #[test]
    fn json_lines_stay_json_and_one_line() {
        let event = serde_json::json!({"message": "a\u{202e}b\nc\u{85}"}).to_string() + "\n";
        let mut out = Vec::new();
        json_safe(event.as_bytes(), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches('\n').count(), 1);
        assert!(
            text.contains(r"\u202e") && text.contains(r"\u0085"),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["message"], "a\u{202e}b\nc\u{85}");
    }

    #[test]
    fn a_filter_that_does_not_parse_is_refused() {
        assert!(parse_filter("dpv_batch=loud").is_err());
        assert!(parse_filter("info,dpv_batch::pipeline=debug").is_ok());
    }
}
