//! The Altinn 3 client against hostile or broken token endpoints, over real
//! HTTP: each failure is named by its step in plain words, no secret leaks
//! into a message, a 401 refreshes the token exactly once.
//!
//! The servers here stand in for *outside* services misbehaving (garbage,
//! errors, huge bodies); the well-behaved path runs against the simulator in
//! tests/altinn3_client.rs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use dpv_batch::altinn3::auth::Step;
use dpv_batch::altinn3::client::Client;
use dpv_batch::config::{Altinn3Config, Environment, ResourceEntry, Route};

/// What the hostile server answers, and what it saw.
#[derive(Default)]
struct Script {
    token: (u16, String),
    exchange: (u16, String),
    /// API answers in order; the last one repeats.
    api: Vec<(u16, String)>,
    token_calls: AtomicUsize,
    api_calls: AtomicUsize,
    seen_auth: Mutex<Vec<String>>,
    seen_accept: Mutex<Vec<String>>,
    seen_grant: Mutex<String>,
}

type S = Arc<Script>;

async fn token(State(s): State<S>, body: String) -> Response {
    s.token_calls.fetch_add(1, Ordering::SeqCst);
    *s.seen_grant.lock().unwrap() = body;
    (StatusCode::from_u16(s.token.0).unwrap(), s.token.1.clone()).into_response()
}

async fn exchange(State(s): State<S>) -> Response {
    (
        StatusCode::from_u16(s.exchange.0).unwrap(),
        s.exchange.1.clone(),
    )
        .into_response()
}

async fn api(State(s): State<S>, headers: HeaderMap) -> Response {
    let n = s.api_calls.fetch_add(1, Ordering::SeqCst);
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    s.seen_auth.lock().unwrap().push(h("authorization"));
    s.seen_accept.lock().unwrap().push(h("accept"));
    let (status, body) = s.api[n.min(s.api.len() - 1)].clone();
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body,
    )
        .into_response()
}

/// Serve `script` on a free port; the config pointing at it.
fn serve(script: S, dir: &std::path::Path) -> Altinn3Config {
    let app = Router::new()
        .route("/token", post(token))
        .route("/exchange", get(exchange))
        .route("/api/correspondence", get(api))
        .with_state(script);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    use std::os::unix::fs::PermissionsExt;
    let key = dir.join("client.pem");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/altinn3/client.pem"
        ),
        &key,
    )
    .unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cfg = Altinn3Config::new("hostile-test-client", key);
    cfg.environment = Environment::Custom;
    cfg.route = Route::EformidlingProxy;
    cfg.key_id = Some("k".into());
    cfg.api_base = format!("http://{addr}/api");
    cfg.token_url = format!("http://{addr}/token");
    cfg.audience = "http://sim/".into();
    cfg.exchange_url = Some(format!("http://{addr}/exchange"));
    cfg.resources.insert(
        "4255/10".into(),
        ResourceEntry::Id("eformidling-dpv-administrasjon".into()),
    );
    cfg.fill_defaults();
    cfg
}

const MP_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzY29wZSI6ImVmb3JtaWRsaW5nOmRwdiJ9.bXAtc2VjcmV0";
/// An exchanged token as it may come: JSON-quoted, with a newline.
const ALTINN_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJhbHRpbm4ifQ.YWx0aW5uLXNlY3JldA";

fn ok_token() -> (u16, String) {
    (
        200,
        format!(
            r#"{{"access_token":"{MP_TOKEN}","token_type":"Bearer","expires_in":119,"scope":"eformidling:dpv"}}"#
        ),
    )
}

fn script(token: (u16, String), exchange: (u16, String), api: Vec<(u16, String)>) -> S {
    Arc::new(Script {
        token,
        exchange,
        api,
        ..Default::default()
    })
}

fn connect(s: &S) -> Result<(), (Step, String)> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = serve(s.clone(), dir.path());
    let client = Client::new(&cfg).unwrap();
    client
        .check_connection()
        .map_err(|e| (e.step, e.to_string()))
}

fn assert_no_secret(message: &str, s: &Script) {
    let grant = s.seen_grant.lock().unwrap().clone();
    let assertion = grant.split("assertion=").nth(1).unwrap_or("").to_string();
    for secret in [MP_TOKEN, ALTINN_TOKEN, "bXAtc2VjcmV0", "YWx0aW5uLXNlY3JldA"] {
        assert!(!message.contains(secret), "secret in {message}");
    }
    if !assertion.is_empty() {
        assert!(!message.contains(&assertion[..40.min(assertion.len())]));
    }
}

#[test]
fn a_token_endpoint_that_answers_html_is_named() {
    let s = script(
        (200, "<html><body>Maintenance</body></html>".into()),
        (200, String::new()),
        vec![(200, "{}".into())],
    );
    let (step, m) = connect(&s).unwrap_err();
    assert_eq!(step, Step::Client);
    assert!(m.contains("not a token response"), "{m}");
    assert!(m.contains("is token_url right?"), "{m}");
    assert_no_secret(&m, &s);
    // The grant went as the JWT-bearer form.
    let grant = s.seen_grant.lock().unwrap().clone();
    assert!(
        grant.starts_with(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=ey"
        ),
        "{grant}"
    );
}

#[test]
fn maskinporten_refusals_name_key_client_or_scope() {
    for (body, step, words) in [
        (
            r#"{"error":"invalid_scope","error_description":"Scope eformidling:dpv not allowed"}"#,
            Step::Scope,
            "invalid_scope",
        ),
        (
            r#"{"error":"invalid_client","error_description":"Unknown client"}"#,
            Step::Client,
            "Unknown client",
        ),
        (
            r#"{"error":"invalid_grant","error_description":"Invalid assertion. Client authentication failed."}"#,
            Step::Key,
            "registered with the client",
        ),
    ] {
        let s = script(
            (400, body.into()),
            (200, String::new()),
            vec![(200, "{}".into())],
        );
        let (got, m) = connect(&s).unwrap_err();
        assert_eq!(got, step, "{m}");
        assert!(m.contains(words), "{m}");
        assert_no_secret(&m, &s);
    }
}

#[test]
fn a_huge_answer_is_not_read_whole() {
    let s = script(
        (200, "a".repeat(20 * 1024 * 1024)),
        (200, String::new()),
        vec![(200, "{}".into())],
    );
    let (step, m) = connect(&s).unwrap_err();
    assert_eq!(step, Step::Client);
    assert!(m.contains("65536 bytes"), "read at most 64 KiB: {m}");
}

#[test]
fn an_exchange_that_answers_garbage_or_refuses_is_named() {
    let s = script(
        ok_token(),
        (200, "hello, world".into()),
        vec![(200, "{}".into())],
    );
    let (step, m) = connect(&s).unwrap_err();
    assert_eq!(step, Step::Exchange);
    assert!(m.contains("not a token"), "{m}");
    assert_no_secret(&m, &s);

    let s = script(ok_token(), (401, String::new()), vec![(200, "{}".into())]);
    let (step, m) = connect(&s).unwrap_err();
    assert_eq!(step, Step::Exchange);
    assert!(m.contains("401"), "{m}");
}

#[test]
fn the_api_step_uses_the_exchanged_token_and_accept_json_and_refreshes_once_on_401() {
    // 401, then success: one refresh, two token fetches, then connected.
    let quoted = (200, format!("\"{ALTINN_TOKEN}\"\n"));
    let s = script(
        ok_token(),
        quoted.clone(),
        vec![(401, String::new()), (200, r#"{"ids":[]}"#.into())],
    );
    connect(&s).unwrap();
    assert_eq!(s.token_calls.load(Ordering::SeqCst), 2);
    assert_eq!(s.api_calls.load(Ordering::SeqCst), 2);
    let auth = s.seen_auth.lock().unwrap().clone();
    assert_eq!(auth[1], format!("Bearer {ALTINN_TOKEN}"));
    assert!(s
        .seen_accept
        .lock()
        .unwrap()
        .iter()
        .all(|a| a == "application/json"));

    // 401 twice: the API step fails, refreshed exactly once.
    let s = script(ok_token(), quoted.clone(), vec![(401, String::new())]);
    let (step, m) = connect(&s).unwrap_err();
    assert_eq!(step, Step::Api);
    assert!(m.contains("even after a refresh"), "{m}");
    assert_eq!(s.api_calls.load(Ordering::SeqCst), 2);
    assert_eq!(s.token_calls.load(Ordering::SeqCst), 2);
    assert_no_secret(&m, &s);

    // 403 (a Maskinporten token where an Altinn token is needed): named.
    let s = script(
        ok_token(),
        quoted,
        vec![(
            403,
            r#"{"title":"Forbidden","detail":"IDX10205: Issuer validation failed"}"#.into(),
        )],
    );
    let (step, m) = connect(&s).unwrap_err();
    assert_eq!(step, Step::Api);
    assert!(m.contains("IDX10205"), "{m}");
}
