//! Reading the config file so that *every* problem shows at once.
//!
//! serde stops at the first error, and an operator who fixes one typo only
//! to meet the next one at 02:00 deserves better. So the file goes through
//! these steps, each generic (a section added tomorrow gets all of it):
//!
//! 1. **Parse** the text to a TOML table, remembering the line of every key
//!    (a *syntax* error stops here: after one, TOML cannot tell reliably
//!    what the rest means, so only the first is reported);
//! 2. **environment overrides**: `DPV_BATCH__SECTION__KEY=value` (nested:
//!    `DPV_BATCH__TRANSPORT__SFTP__HOST`) sets `section.key` in the table.
//!    The value is read as a TOML value when it is one (`500`, `true`,
//!    `["a", "b"]`), otherwise it is the text itself;
//! 3. **systemd credentials**: a string starting `${CREDENTIALS_DIRECTORY}/`
//!    is taken relative to that variable (`LoadCredential=NAME:/path`);
//! 4. **durations**: the keys that count milliseconds (`poll_ms`) may be
//!    written as durations without the `_ms` (`poll = "500ms"`);
//! 5. **deserialize**, and on an error note it with its key path and line,
//!    take the offending key out (or put a stand-in where a key is missing)
//!    and go again, until the config goes through. On the way, an unknown
//!    key `X_file` means "the value of `X` is this file's content" (secrets
//!    kept out of the config), and a value from the environment that does
//!    not fit as a number or boolean is tried as the text it was.
//!
//! The config itself (`super::Config`) only sees a table that went through
//! all of this; it does not know where a value came from.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::{Table, Value};

/// The prefix of environment overrides: `DPV_BATCH__SECTION__KEY`.
pub const ENV_PREFIX: &str = "DPV_BATCH__";
/// systemd's credentials folder (`LoadCredential=`), in a path value.
pub const CREDENTIALS: &str = "${CREDENTIALS_DIRECTORY}/";
/// The environment variable systemd sets for a unit with credentials.
pub const CREDENTIALS_VAR: &str = "CREDENTIALS_DIRECTORY";

/// Rounds of "deserialize, note the error, take it out" before giving up
/// (a config has a few dozen keys; this is only a guard against a loop).
const MAX_ROUNDS: usize = 300;

/// What the loader found.
pub struct Loaded<T> {
    /// `None` only when the loader had to give up (see `problems`).
    pub value: Option<T>,
    /// Every problem, each naming its key and where it came from.
    pub problems: Vec<String>,
    /// Keys that were missing and got a stand-in value so the rest could be
    /// read: later checks about them would only repeat the problem.
    pub stand_ins: Vec<String>,
    /// `(key, variable)` for every value taken from the environment.
    pub from_env: Vec<(String, String)>,
    /// `(key, file)` for every value read from an `X_file`.
    pub from_files: Vec<(String, PathBuf)>,
    /// Values that must never be shown (in a problem, a log line), with
    /// what to show instead: every `X_file`'s content, and every value from
    /// the environment that spans lines (a key's text put where its file
    /// name belongs would otherwise be printed whole). See [`redact`].
    pub secrets: Vec<(String, String)>,
}

/// Values shorter than this are not secrets worth hiding (a folder name
/// like `in` from an `X_file`), and hiding them would garble messages.
const SECRET_MIN_LEN: usize = 8;

/// `text` with every secret replaced by its description.
pub fn redact(text: &str, secrets: &[(String, String)]) -> String {
    let mut out = text.to_string();
    for (secret, instead) in secrets {
        if secret.len() >= SECRET_MIN_LEN && out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), instead);
        }
    }
    out
}

/// Where the loader gets what is outside the file (the process's
/// environment; tests give their own).
pub struct Outside {
    /// `DPV_BATCH__*` variables, in any order.
    pub overrides: Vec<(String, String)>,
    /// `DPV_BATCH__*` variables whose value is not UTF-8 (a problem each).
    pub not_utf8: Vec<String>,
    /// `$CREDENTIALS_DIRECTORY`, when set.
    pub credentials: Option<PathBuf>,
    /// The config file's folder: relative `X_file` paths start there.
    pub base: PathBuf,
    /// Whether secrets are needed. `status` reads the journal, never a key:
    /// it must work for a monitor that cannot read the secrets and runs
    /// outside the unit (no `$CREDENTIALS_DIRECTORY`). Without: a credential
    /// path stays as written and an `X_file` that cannot be read gives an
    /// empty `X`, neither a problem.
    pub secrets_needed: bool,
}

impl Outside {
    /// The process's environment; `base` is the config file's folder.
    pub fn from_process(base: &Path) -> Outside {
        let mut overrides = Vec::new();
        let mut not_utf8 = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with(ENV_PREFIX) {
                continue;
            }
            match value.to_str() {
                Some(v) => overrides.push((name.to_string(), v.to_string())),
                None => not_utf8.push(name.to_string()),
            }
        }
        Outside {
            overrides,
            not_utf8,
            credentials: std::env::var_os(CREDENTIALS_VAR).map(PathBuf::from),
            base: base.to_path_buf(),
            secrets_needed: true,
        }
    }
}

/// Where a value came from, for messages.
#[derive(Clone)]
enum Origin {
    /// The config file, this line.
    Line(usize),
    /// An environment variable, with its text as given.
    Env { var: String, raw: String },
    /// The content of the file an `X_file` key named.
    File { key: String, path: PathBuf },
}

/// A key path: `transport.sftp.host` is `["transport", "sftp", "host"]`.
type KeyPath = Vec<String>;

/// `transport.sftp.host`; a key that is not a bare TOML key is quoted
/// (`transport.altinn3.resources."4255/10"`).
pub fn shown(path: &[String]) -> String {
    path.iter()
        .map(|k| {
            let bare = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if bare {
                k.clone()
            } else {
                format!("{k:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Read `text` into a `T`, with every problem (see the module docs).
/// `Err` is a TOML syntax error: the first, as only it can be trusted.
/// `millis` lists the keys counted in milliseconds (`run.poll_ms`) that may
/// also be written as durations (`run.poll = "500ms"`).
pub fn load<T: DeserializeOwned>(
    text: &str,
    outside: &Outside,
    millis: &[&str],
) -> Result<Loaded<T>, String> {
    let spans = toml::de::DeTable::parse(text).map_err(|e| e.to_string())?;
    let mut table: Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut l = Loader {
        origins: HashMap::new(),
        problems: Vec::new(),
        reported: HashSet::new(),
        stand_ins: Vec::new(),
        from_env: Vec::new(),
        from_files: Vec::new(),
        secrets: Vec::new(),
        secrets_needed: true,
    };
    let mut prefix = Vec::new();
    l.note_lines(spans.get_ref(), text, &mut prefix);
    for var in &outside.not_utf8 {
        l.problems.push(format!(
            "{var}: its value is not UTF-8 text; it is not used"
        ));
    }
    l.apply_env(&mut table, &outside.overrides, millis);
    if outside.secrets_needed || outside.credentials.is_some() {
        l.apply_credentials(&mut table, outside.credentials.as_deref(), &mut Vec::new());
    }
    l.secrets_needed = outside.secrets_needed;
    l.apply_millis(&mut table, millis);
    let value = l.deserialize(&mut table, &outside.base);
    l.from_env.sort();
    let problems = l.problems.iter().map(|p| redact(p, &l.secrets)).collect();
    Ok(Loaded {
        value,
        problems,
        stand_ins: l.stand_ins.iter().map(|p| shown(p)).collect(),
        from_env: l.from_env,
        from_files: l.from_files,
        secrets: l.secrets,
    })
}

struct Loader {
    origins: HashMap<KeyPath, Origin>,
    problems: Vec<String>,
    /// Keys already reported: a follow-on ("missing" after a bad value was
    /// taken out) is not reported again.
    reported: HashSet<KeyPath>,
    stand_ins: Vec<KeyPath>,
    from_env: Vec<(String, String)>,
    from_files: Vec<(String, PathBuf)>,
    secrets: Vec<(String, String)>,
    secrets_needed: bool,
}

impl Loader {
    fn note_lines(&mut self, table: &toml::de::DeTable<'_>, text: &str, prefix: &mut KeyPath) {
        for (key, value) in table.iter() {
            prefix.push(key.get_ref().to_string());
            let line = text[..key.span().start.min(text.len())]
                .matches('\n')
                .count()
                + 1;
            self.origins.insert(prefix.clone(), Origin::Line(line));
            if let toml::de::DeValue::Table(inner) = value.get_ref() {
                self.note_lines(inner, text, prefix);
            }
            prefix.pop();
        }
    }

    /// ` (line 7)`, ` (from DPV_BATCH__RUN__POLL)`, or `` when not known.
    fn source(&self, path: &[String]) -> String {
        match self.origins.get(path) {
            Some(Origin::Line(n)) => format!(" (line {n})"),
            Some(Origin::Env { var, .. }) => format!(" (from {var})"),
            Some(Origin::File { key, path }) => {
                format!(" (from {}, given as {key})", path.display())
            }
            None => String::new(),
        }
    }

    fn problem(&mut self, path: &[String], what: impl std::fmt::Display) {
        let key = if path.is_empty() {
            "the config".to_string()
        } else {
            shown(path)
        };
        self.problems
            .push(format!("{key}{}: {what}", self.source(path)));
        self.reported.insert(path.to_vec());
    }

    fn apply_env(&mut self, table: &mut Table, overrides: &[(String, String)], millis: &[&str]) {
        let mut overrides = overrides.to_vec();
        overrides.sort();
        for (var, raw) in overrides {
            let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: KeyPath = rest.split("__").map(str::to_ascii_lowercase).collect();
            if path.iter().any(|k| k.is_empty()) {
                self.problems.push(format!(
                    "{var}: not an override; name the key as DPV_BATCH__SECTION__KEY \
                     (two underscores between the parts)"
                ));
                continue;
            }
            // The variable overrides the file's key in either spelling
            // (`X` or `X_file`; `X` or `X_ms`), not only in its own.
            for other in other_spellings(&path, millis) {
                if matches!(self.origins.get(&other), Some(Origin::Line(_))) {
                    remove(table, &other);
                }
            }
            if raw.contains('\n') {
                self.secrets
                    .push((raw.clone(), format!("<the text of {var}>")));
            }
            match set(table, &path, parse_env_value(&raw)) {
                Ok(()) => {
                    self.origins.insert(
                        path.clone(),
                        Origin::Env {
                            var: var.clone(),
                            raw,
                        },
                    );
                    self.from_env.push((shown(&path), var));
                }
                Err(parent) => self.problems.push(format!(
                    "{var}: cannot set {}: {} is not a section",
                    shown(&path),
                    shown(&parent)
                )),
            }
        }
    }

    fn apply_credentials(&mut self, table: &mut Table, dir: Option<&Path>, prefix: &mut KeyPath) {
        let keys: Vec<String> = table.keys().cloned().collect();
        for key in keys {
            prefix.push(key.clone());
            match table.get_mut(&key) {
                Some(Value::Table(inner)) => self.apply_credentials(inner, dir, prefix),
                Some(Value::String(s)) if s.starts_with(CREDENTIALS) => {
                    let given = s.clone();
                    let name = &given[CREDENTIALS.len()..];
                    match dir {
                        Some(dir) => {
                            *s = dir.join(name).to_string_lossy().into_owned();
                        }
                        None => {
                            table.remove(&key);
                            // `X_file` taken out: `X` is missing because of it.
                            if let Some(name) = key.strip_suffix("_file") {
                                let mut base = prefix.clone();
                                base.pop();
                                base.push(name.to_string());
                                self.reported.insert(base);
                            }
                            self.problem(
                                prefix,
                                format!(
                                    "\"{given}\" names a systemd credential, but \
                                     ${CREDENTIALS_VAR} is not set: run dpv-batch from its \
                                     unit (LoadCredential={name}:/path/to/file), or give the \
                                     file's own path"
                                ),
                            );
                        }
                    }
                }
                _ => {}
            }
            prefix.pop();
        }
    }

    fn apply_millis(&mut self, table: &mut Table, millis: &[&str]) {
        for key in millis {
            let ms_path: KeyPath = key.split('.').map(str::to_string).collect();
            let Some((ms_name, parent)) = ms_path.split_last() else {
                continue;
            };
            let Some(name) = ms_name.strip_suffix("_ms") else {
                continue;
            };
            let mut path = parent.to_vec();
            path.push(name.to_string());
            let Some(Value::Table(section)) = get_mut(table, parent) else {
                continue;
            };
            let Some(value) = section.remove(name) else {
                continue;
            };
            if section.contains_key(ms_name.as_str()) {
                self.problem(
                    &path,
                    format!(
                        "given together with {}; give one ({} = \"2s\", or {} in milliseconds)",
                        shown(&ms_path),
                        shown(&path),
                        shown(&ms_path)
                    ),
                );
                continue;
            }
            let parsed = match &value {
                Value::String(s) => super::parse_duration(s),
                _ => Err(format!(
                    "{value} is not a duration like \"500ms\", \"2s\" or \"10m\" (a number of \
                     milliseconds goes in {})",
                    shown(&ms_path)
                )),
            };
            match parsed {
                Ok(d) => {
                    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                    section.insert(ms_name.clone(), Value::Integer(ms));
                    if let Some(origin) = self.origins.get(&path).cloned() {
                        self.origins.insert(ms_path.clone(), origin);
                    }
                }
                Err(e) => self.problem(&path, e),
            }
        }
    }

    /// Deserialize until it goes through, noting and taking out each error.
    fn deserialize<T: DeserializeOwned>(&mut self, table: &mut Table, base: &Path) -> Option<T> {
        // Stand-ins still being tried: the index of the next candidate.
        let mut trying: HashMap<KeyPath, usize> = HashMap::new();
        // Environment values already tried as plain text.
        let mut as_text: HashSet<KeyPath> = HashSet::new();
        for _ in 0..MAX_ROUNDS {
            let err = match serde_path_to_error::deserialize::<_, T>(Value::Table(table.clone())) {
                Ok(v) => return Some(v),
                Err(e) => e,
            };
            let path: KeyPath = err
                .path()
                .iter()
                .filter_map(|s| match s {
                    serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                    serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                    _ => None,
                })
                .collect();
            let message = err.inner().message().to_string();

            if let Some(field) = quoted_after(&message, "unknown field `") {
                let mut full = path.clone();
                if full.last() != Some(&field) {
                    full.push(field.clone());
                }
                if let Some(base_name) = field.strip_suffix("_file") {
                    if let Some(Value::String(file)) = get_mut(table, &full).cloned() {
                        self.secret_file(table, &full, base_name, &file, base);
                        continue;
                    }
                }
                let expected = message
                    .split_once(", ")
                    .map_or(String::new(), |(_, rest)| format!("; {rest}"));
                self.problem(&full, format!("unknown key{expected}"));
                if !remove(table, &full) {
                    break;
                }
                continue;
            }

            if let Some(field) = quoted_after(&message, "missing field `") {
                let mut full = path.clone();
                full.push(field);
                let implied = self.reported.contains(&full)
                    || self.stand_ins.iter().any(|s| full.starts_with(s));
                if !implied {
                    let parent = &full[..full.len() - 1];
                    let section = if parent.is_empty() {
                        String::new()
                    } else {
                        format!(" in [{}]{}", shown(parent), self.source(parent))
                    };
                    self.problems.push(format!(
                        "{}: missing{section}; this key has no default",
                        shown(&full)
                    ));
                }
                self.reported.insert(full.clone());
                self.stand_ins.push(full.clone());
                trying.insert(full.clone(), 1);
                if set(table, &full, STAND_INS[0].clone()).is_err() {
                    break;
                }
                continue;
            }

            // A value of the wrong type or form at `path`.
            if let Some(next) = trying.get_mut(&path) {
                // Our own stand-in did not fit: try the next kind of value
                // (an enum says which names it takes).
                let candidate = match quoted_after(&message, "expected one of `")
                    .or_else(|| quoted_after(&message, "expected `"))
                {
                    Some(variant) if message.starts_with("unknown variant") => {
                        Value::String(variant)
                    }
                    _ => match STAND_INS.get(*next) {
                        Some(v) => {
                            *next += 1;
                            v.clone()
                        }
                        None => break,
                    },
                };
                if set(table, &path, candidate).is_err() {
                    break;
                }
                continue;
            }
            if let Some(Origin::Env { raw, .. }) = self.origins.get(&path).cloned() {
                if as_text.insert(path.clone())
                    && !matches!(get_mut(table, &path), Some(Value::String(_)))
                {
                    // `HOST=10` read as a number; the key wants text.
                    if set(table, &path, Value::String(raw)).is_ok() {
                        continue;
                    }
                }
            }
            let key = deepest_key(table, &path);
            if key.is_empty() {
                self.problem(&path, &message);
                break;
            }
            self.problem(&key, &message);
            if !remove(table, &key) {
                break;
            }
        }
        self.problems
            .push("(reading stopped here: fix the problems above, then check again)".to_string());
        None
    }

    /// `X_file = "path"`: `X` is the file's content (a trailing newline
    /// taken off), so a secret need not be written in the config.
    fn secret_file(
        &mut self,
        table: &mut Table,
        full: &[String],
        name: &str,
        file: &str,
        base: &Path,
    ) {
        let mut target = full[..full.len() - 1].to_vec();
        target.push(name.to_string());
        remove(table, full);
        if get_mut(table, &target).is_some() {
            self.problem(
                full,
                format!("given together with {}; give one", shown(&target)),
            );
            return;
        }
        let path = base.join(file);
        // A secret is a line or a key, never more than this; a device or a
        // FIFO named by mistake would hang or fill memory.
        const MAX_SECRET_BYTES: u64 = 1024 * 1024;
        let read = std::fs::metadata(&path).and_then(|m| {
            if !m.is_file() {
                Err(std::io::Error::other("not a regular file"))
            } else if m.len() > MAX_SECRET_BYTES {
                Err(std::io::Error::other(format!(
                    "{} bytes, more than a secret's {MAX_SECRET_BYTES}",
                    m.len()
                )))
            } else {
                std::fs::read_to_string(&path)
            }
        });
        match read {
            Ok(text) => {
                let value = text
                    .strip_suffix('\n')
                    .map(|t| t.strip_suffix('\r').unwrap_or(t))
                    .unwrap_or(&text);
                let key = shown(full);
                self.origins.insert(
                    target.clone(),
                    Origin::File {
                        key,
                        path: path.clone(),
                    },
                );
                self.secrets.push((
                    value.to_string(),
                    format!("<the content of {}>", path.display()),
                ));
                let _ = set(table, &target, Value::String(value.to_string()));
                self.from_files.push((shown(&target), path));
            }
            Err(_) if !self.secrets_needed => {
                let _ = set(table, &target, Value::String(String::new()));
            }
            Err(e) => {
                self.problem(full, format!("cannot read {}: {e}", path.display()));
                self.reported.insert(target);
            }
        }
    }
}

/// What a missing key gets so the rest can be read; tried in order until
/// one fits its type.
static STAND_INS: std::sync::LazyLock<Vec<Value>> = std::sync::LazyLock::new(|| {
    vec![
        Value::String(String::new()),
        Value::Integer(0),
        Value::Boolean(false),
        Value::Array(Vec::new()),
        Value::Table(Table::new()),
    ]
});

/// The other names the key at `path` may be given by: `X_file` for `X` and
/// back, and for a key counted in milliseconds (`millis`), `X_ms` and `X`.
fn other_spellings(path: &[String], millis: &[&str]) -> Vec<KeyPath> {
    let Some((last, parents)) = path.split_last() else {
        return Vec::new();
    };
    let dotted = |name: &str| {
        let mut p = parents.to_vec();
        p.push(name.to_string());
        p
    };
    let is_millis = |name: &str| millis.contains(&shown(&dotted(name)).as_str());
    let mut names = vec![match last.strip_suffix("_file") {
        Some(base) => base.to_string(),
        None => format!("{last}_file"),
    }];
    if let Some(base) = last.strip_suffix("_ms").filter(|_| is_millis(last)) {
        names.push(base.to_string());
    } else if is_millis(&format!("{last}_ms")) {
        names.push(format!("{last}_ms"));
    }
    names.iter().map(|n| dotted(n)).collect()
}

/// An environment value: a TOML value when it reads as exactly one
/// (`500`, `true`, `["a"]`, `{ a = 1 }`), otherwise the text itself.
fn parse_env_value(raw: &str) -> Value {
    match format!("v = {raw}").parse::<Table>() {
        Ok(t) if t.len() == 1 => t.get("v").cloned().unwrap_or_else(|| raw.into()),
        _ => Value::String(raw.to_string()),
    }
}

/// The name between backticks after `marker` in a serde message.
fn quoted_after(message: &str, marker: &str) -> Option<String> {
    let rest = &message[message.find(marker)? + marker.len()..];
    Some(rest[..rest.find('`')?].to_string())
}

fn get_mut<'a>(table: &'a mut Table, path: &[String]) -> Option<&'a mut Value> {
    let (last, parents) = path.split_last()?;
    let mut t = table;
    for k in parents {
        t = match t.get_mut(k)? {
            Value::Table(inner) => inner,
            _ => return None,
        };
    }
    t.get_mut(last)
}

/// Set `path` to `value`, making sections on the way; `Err(parent)` when a
/// part of the way is a value, not a section.
fn set(table: &mut Table, path: &[String], value: Value) -> Result<(), KeyPath> {
    let Some((last, parents)) = path.split_last() else {
        return Err(Vec::new());
    };
    let mut t = table;
    for (i, k) in parents.iter().enumerate() {
        let entry = t
            .entry(k.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        t = match entry {
            Value::Table(inner) => inner,
            _ => return Err(path[..=i].to_vec()),
        };
    }
    t.insert(last.clone(), value);
    Ok(())
}

/// The longest prefix of `path` that names a key of a section (an error
/// inside an array or a value's own structure is the key's).
fn deepest_key(table: &Table, path: &[String]) -> KeyPath {
    let mut t = table;
    let mut key = Vec::new();
    for k in path {
        let Some(v) = t.get(k) else { break };
        key.push(k.clone());
        match v {
            Value::Table(inner) => t = inner,
            _ => break,
        }
    }
    key
}

fn remove(table: &mut Table, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut t = table;
    for k in parents {
        t = match t.get_mut(k) {
            Some(Value::Table(inner)) => inner,
            _ => return false,
        };
    }
    t.remove(last).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    // A config of its own: the loader knows no section by name.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        server: Server,
        #[serde(default)]
        limits: Limits,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Server {
        mode: Mode,
        name: String,
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        tags: Vec<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Fast,
        Slow,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Limits {
        wait_ms: u64,
        tries: u32,
    }

    fn outside(vars: &[(&str, &str)]) -> Outside {
        Outside {
            overrides: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            not_utf8: Vec::new(),
            credentials: None,
            base: PathBuf::from("/nonexistent"),
            secrets_needed: true,
        }
    }

    fn load_doc(text: &str, vars: &[(&str, &str)]) -> Loaded<Doc> {
        load::<Doc>(text, &outside(vars), &["limits.wait_ms"]).unwrap()
    }

    #[test]
    fn a_missing_section_is_one_problem_and_the_rest_is_still_read() {
        let l = load_doc("[limits]\ntries = \"x\"\nwait = \"2s\"\n", &[]);
        assert_eq!(
            l.problems,
            [
                "limits.tries (line 2): invalid type: string \"x\", expected u32",
                "server: missing; this key has no default",
            ]
        );
        // The enum inside got a stand-in of its own kind, quietly.
        let doc = l.value.unwrap();
        assert_eq!(doc.server.mode, Mode::Fast);
        assert_eq!(doc.limits.wait_ms, 2000);
        assert_eq!(l.stand_ins[0], "server");
    }

    #[test]
    fn environment_values_are_toml_when_they_read_as_toml() {
        let text = "[server]\nmode = \"slow\"\nname = \"a\"\n";
        let l = load_doc(
            text,
            &[
                ("DPV_BATCH__SERVER__NAME", "10"),
                ("DPV_BATCH__SERVER__TAGS", "[\"x\", \"y\"]"),
                ("DPV_BATCH__LIMITS__TRIES", "7"),
                ("DPV_BATCH__LIMITS__WAIT", "1m"),
            ],
        );
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        let doc = l.value.unwrap();
        assert_eq!(doc.server.name, "10");
        assert_eq!(doc.server.tags, ["x", "y"]);
        assert_eq!((doc.limits.tries, doc.limits.wait_ms), (7, 60_000));
        assert_eq!(l.from_env.len(), 4);

        let l = load_doc(
            text,
            &[
                ("DPV_BATCH__SERVER__NAME__FIRST", "x"),
                ("DPV_BATCH__SERVER____NAME", "z"),
                ("DPV_BATCH__SERVER__NAMES", "z"),
            ],
        );
        assert_eq!(
            l.problems,
            [
                "DPV_BATCH__SERVER__NAME__FIRST: cannot set server.name.first: server.name is \
                 not a section",
                "DPV_BATCH__SERVER____NAME: not an override; name the key as \
                 DPV_BATCH__SECTION__KEY (two underscores between the parts)",
                "server.names (from DPV_BATCH__SERVER__NAMES): unknown key; expected one of \
                 `mode`, `name`, `token`, `tags`",
            ]
        );
    }

    #[test]
    fn a_file_key_for_a_key_that_is_not_there_is_an_unknown_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t"), "secret\r\n").unwrap();
        let mut o = outside(&[]);
        o.base = dir.path().to_path_buf();
        let text =
            "[server]\nmode = \"fast\"\nname = \"a\"\ntoken_file = \"t\"\nmood_file = \"t\"\n";
        let l = load::<Doc>(text, &o, &[]).unwrap();
        let file = dir.path().join("t");
        assert_eq!(
            l.problems,
            [format!(
                "server.mood (from {}, given as server.mood_file): unknown key; expected one of \
                 `mode`, `name`, `token`, `tags`",
                file.display()
            )]
        );
        assert_eq!(l.value.unwrap().server.token.as_deref(), Some("secret"));
    }

    #[test]
    fn keys_are_shown_as_toml_writes_them() {
        assert_eq!(
            shown(&["transport".into(), "resources".into(), "4255/10".into()]),
            "transport.resources.\"4255/10\""
        );
        assert_eq!(parse_env_value("500"), Value::Integer(500));
        assert_eq!(parse_env_value("2s"), Value::String("2s".into()));
        assert_eq!(
            parse_env_value("1\nx = 2"),
            Value::String("1\nx = 2".into())
        );
    }
}
