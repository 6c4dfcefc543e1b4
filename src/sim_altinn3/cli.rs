//! `dpv-batch sim-altinn3`: the arguments, and running the server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::auth::Auth;
use super::conn::{Peer, SimListener};
use super::routes::{self, Faults, Sim};
use super::rules;
use super::store::{Store, Views};
use super::validate::Registry;

/// The resources every simulator knows (eFormidling's DPV resources).
pub const DEFAULT_RESOURCES: &[(&str, bool)] = &[
    ("eformidling-dpv-administrasjon", false),
    ("eformidling-dpv-taushetsbelagt", true),
];

/// Arguments of `dpv-batch sim-altinn3`.
#[derive(clap::Args, Debug, Clone)]
pub struct SimAltinn3Args {
    /// Address to listen on, e.g. 127.0.0.1:0 (0: any free port). Once
    /// listening, DIR/sim.toml says where everything is.
    #[arg(long, value_name = "ADDR", required_unless_present = "mark_read")]
    pub listen: Option<SocketAddr>,
    /// The simulator's state: sim.toml, correspondences/, attachments/, state/
    /// (created if missing; kept across restarts).
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// The Maskinporten client's public key (PEM): JWT grants must be signed
    /// with its private key.
    #[arg(long, value_name = "PUBLIC.pem", required_unless_present = "mark_read")]
    pub client_key: Option<PathBuf>,
    /// A further Correspondence resource, `ID` or `ID:confidential` (repeatable).
    #[arg(long = "resource", value_name = "ID[:confidential]")]
    pub resources: Vec<String>,
    /// A recipient the register does not know: 404/1029 at initialize (repeatable).
    #[arg(long = "unknown-recipient", value_name = "ID")]
    pub unknown_recipients: Vec<String>,
    /// A recipient whose correspondences fail at publication (repeatable).
    #[arg(long = "fail-at-publish", value_name = "ID")]
    pub fail_at_publish: Vec<String>,
    /// A recipient reserved in KRR (repeatable): alone in a request without
    /// ignoreReservation it is refused (422/1030); among several recipients its
    /// correspondence is Reserved, then Failed at publication.
    #[arg(long = "reserved", value_name = "ID")]
    pub reserved: Vec<String>,
    /// Added to every call, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub latency_ms: u64,
    /// Share of API calls answered 429 with Retry-After (0..1).
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    pub rate_429: f64,
    /// Share of API calls answered 500, 502 or 503 (0..1).
    #[arg(long = "rate-5xx", value_name = "P", default_value_t = 0.0, value_parser = probability)]
    pub rate_5xx: f64,
    /// Share of creating calls whose connection is dropped after the commit,
    /// without an answer (0..1).
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    pub drop_after_commit: f64,
    /// Publication happens this long after max(requestedPublishTime, creation).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub publish_delay_ms: u64,
    /// Do not serve: tell the simulator running on DIR that the recipient has
    /// read this correspondence, and exit (0: read; 1: refused; 2: unreachable).
    #[arg(long, value_name = "CORRESPONDENCE_ID", conflicts_with = "listen")]
    pub mark_read: Option<uuid::Uuid>,
}

fn probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("'{s}' is not a probability between 0 and 1")),
    }
}

impl SimAltinn3Args {
    /// The registries these arguments describe.
    pub fn registry(&self) -> Registry {
        let bare = |list: &[String]| {
            list.iter()
                .map(|id| rules::without_prefix(id.trim()).to_string())
                .collect()
        };
        let mut resources: std::collections::HashMap<String, bool> = DEFAULT_RESOURCES
            .iter()
            .map(|(id, c)| (id.to_string(), *c))
            .collect();
        for r in &self.resources {
            let (id, confidential) = match r.strip_suffix(":confidential") {
                Some(id) => (id, true),
                None => (r.as_str(), false),
            };
            resources.insert(rules::without_prefix(id).to_string(), confidential);
        }
        Registry {
            resources,
            unknown: bare(&self.unknown_recipients),
            reserved: bare(&self.reserved),
            fail_at_publish: bare(&self.fail_at_publish),
        }
    }

    fn faults(&self) -> Faults {
        Faults {
            latency: Duration::from_millis(self.latency_ms),
            rate_429: self.rate_429,
            rate_5xx: self.rate_5xx,
            drop_after_commit: self.drop_after_commit,
        }
    }
}

/// Run `dpv-batch sim-altinn3`. Exit 0 when stopped by a signal, 2 when it
/// cannot start (the message says why).
pub fn main(args: SimAltinn3Args) -> ExitCode {
    if let Some(id) = args.mark_read {
        return mark_read(&args.root, id);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("dpv-batch sim-altinn3: {msg}");
    ExitCode::from(2)
}

async fn serve(args: SimAltinn3Args) -> Result<(), String> {
    let (Some(listen), Some(key_path)) = (args.listen, args.client_key.as_ref()) else {
        return Err("--listen and --client-key are required".into());
    };
    let key = std::fs::read(key_path)
        .map_err(|e| format!("cannot read --client-key {}: {e}", key_path.display()))?;
    let root = &args.root;
    let store = Store::open(root, Duration::from_millis(args.publish_delay_ms))
        .map_err(|e| format!("cannot open the state in {}: {e}", root.display()))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let base = format!("http://{addr}");
    let audience = format!("{base}/maskinporten/");
    let auth = Auth::new(
        &key,
        &root.join("state"),
        audience.clone(),
        format!("{base}/authentication/api/v1/openid/"),
    )?;
    let sim = Arc::new(Sim {
        tmp_dir: store.tmp_dir(),
        views: Views::new(root),
        wake: tokio::sync::Notify::new(),
        store: Mutex::new(store),
        registry: args.registry(),
        auth,
        faults: args.faults(),
    });
    write_contract(root, &base, &audience, addr)
        .map_err(|e| format!("cannot write {}/sim.toml: {e}", root.display()))?;
    tracing::info!(listening = %base, root = %root.display(), "sim-altinn3 ready");
    tokio::spawn(routes::tick(sim.clone()));
    let app = routes::router(sim).into_make_service_with_connect_info::<Peer>();
    axum::serve(SimListener(listener), app)
        .with_graceful_shutdown(stop_signal())
        .await
        .map_err(|e| e.to_string())
}

/// `DIR/sim.toml`: the four lines a `[transport.altinn3]` section needs,
/// written (atomically) once the port is known; `DIR/state/listen` for
/// `--mark-read`. The values are plain URLs, so no TOML escaping is needed.
fn write_contract(
    root: &Path,
    base: &str,
    audience: &str,
    addr: SocketAddr,
) -> std::io::Result<()> {
    let toml = format!(
        "api_base = \"{base}/correspondence/api/v1\"\ntoken_url = \"{base}/maskinporten/token\"\naudience = \"{audience}\"\nexchange_url = \"{base}/authentication/api/v1/exchange/maskinporten\"\n"
    );
    crate::durable::write_atomic(&root.join("state/listen"), addr.to_string().as_bytes())?;
    crate::durable::write_atomic(&root.join("sim.toml"), toml.as_bytes())
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!("sim-altinn3 stopping");
}

/// `--mark-read ID`: ask the simulator serving `root` (its address is in
/// `root/state/listen`) to mark a correspondence Read.
fn mark_read(root: &Path, id: uuid::Uuid) -> ExitCode {
    let addr = match std::fs::read_to_string(root.join("state/listen")) {
        Ok(a) => a.trim().to_string(),
        Err(e) => return fail(&format!("no simulator has served {}: {e}", root.display())),
    };
    let url = format!("http://{addr}/_sim/correspondence/{id}/read");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let result = runtime.block_on(async {
        let response = reqwest::Client::new().post(&url).send().await?;
        let status = response.status();
        Ok::<_, reqwest::Error>((status, response.text().await.unwrap_or_default()))
    });
    match result {
        Ok((status, _)) if status.is_success() => {
            println!("{id}: Read");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("dpv-batch sim-altinn3: {id} not marked read ({status}): {body}");
            ExitCode::from(1)
        }
        Err(e) => fail(&format!("cannot reach the simulator at {addr}: {e}")),
    }
}
