//! The operator surface through the whole pipeline: the state endpoint with
//! bodies large enough to be streamed, its own token, the health endpoint,
//! and what a broken configuration tells the public and the operator.

mod common;

use cachefront::admin::auth::SecretToken;
use cachefront::config::{self, Config};
use cachefront::pipeline::{self, Handled};
use cachefront::Body;
use common::{reply, Harness};
use futures::executor::block_on;
use http::{Request, StatusCode};

const PURGE_TOKEN: &str = "operator-purge-token-0001";
const STATE_TOKEN: &str = "operator-state-token-0001";

fn json(h: &Handled) -> serde_json::Value {
    serde_json::from_slice(h.response.body()).expect("JSON body")
}

/// A request with `bytes` as a platform stream, as the Workers adapter hands
/// over a body above `STREAM_BODIES_ABOVE_BYTES`.
fn send_streamed_body(
    h: &Harness,
    method: &str,
    uri: &str,
    token: &str,
    bytes: Vec<u8>,
) -> Handled {
    let len = bytes.len() as u64;
    let stream = h.pipeline.platform().streams.start(bytes.into(), Some(len));
    let mut request = Request::builder()
        .method(method)
        .uri(format!("https://shop.example{uri}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::new())
        .expect("request");
    request.extensions_mut().insert(stream);
    block_on(h.pipeline.handle(request))
}

fn state_document(keys: usize) -> Vec<u8> {
    let tags: Vec<String> = (0..keys)
        .map(|i| format!(r#"{{"key":"product:{i}","hard_ms":1000,"soft_ms":0}}"#))
        .collect();
    format!(
        r#"{{"format":"cachefront-state","version":1,"exported_ms":1,"tags":[{}],"origin_health":[]}}"#,
        tags.join(",")
    )
    .into_bytes()
}

#[test]
fn a_state_import_above_the_stream_threshold_is_imported() {
    let h = Harness::with_vars(
        &[
            ("PURGE_TOKEN", PURGE_TOKEN),
            ("STREAM_BODIES_ABOVE_BYTES", "1024"),
        ],
        |_, _| reply(200, &[], "ok"),
    );
    let document = state_document(500);
    assert!(document.len() > 1024);
    let imported = send_streamed_body(&h, "PUT", "/__cachefront/state", PURGE_TOKEN, document);
    assert_eq!(
        imported.response.status(),
        StatusCode::OK,
        "{}",
        json(&imported)
    );
    assert_eq!(json(&imported)["imported"]["tags"], 500);
    assert_eq!(h.open_streams(), 0);

    let exported = h.get_with(
        "/__cachefront/state",
        &[("authorization", &format!("Bearer {PURGE_TOKEN}"))],
    );
    assert_eq!(json(&exported)["tags"].as_array().map(Vec::len), Some(500));
}

#[test]
fn state_token_guards_the_state_endpoint_instead_of_the_purge_token() {
    let h = Harness::with_vars(
        &[("PURGE_TOKEN", PURGE_TOKEN), ("STATE_TOKEN", STATE_TOKEN)],
        |_, _| reply(200, &[], "ok"),
    );
    let with = |token: &str| {
        h.get_with(
            "/__cachefront/state",
            &[("authorization", &format!("Bearer {token}"))],
        )
        .response
        .status()
    };
    assert_eq!(with(STATE_TOKEN), StatusCode::OK);
    assert_eq!(with(PURGE_TOKEN), StatusCode::UNAUTHORIZED);
}

#[test]
fn the_disabled_health_endpoint_says_which_secret_enables_it() {
    let h = Harness::with_vars(&[], |_, _| reply(200, &[], "ok"));
    let health = h.get("/__cachefront/health");
    assert_eq!(health.response.status(), StatusCode::NOT_FOUND);
    let message = json(&health)["message"].as_str().unwrap_or("").to_owned();
    assert!(
        message.starts_with("the health endpoint is disabled"),
        "{message}"
    );
    assert!(
        message.contains("operator token") && message.contains("PURGE_TOKEN"),
        "{message}"
    );
    let state = h.get("/__cachefront/state");
    let message = json(&state)["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        message.contains("STATE_TOKEN (or PURGE_TOKEN)"),
        "{message}"
    );
}

fn broken_vars(name: &str) -> Option<String> {
    match name {
        "ORIGINS" => {
            Some(r#"[{"name":"a","url":"http://deploy:hunter2-secret@origin.example"}]"#.into())
        }
        "PURGE_TOKEN" => Some(PURGE_TOKEN.into()),
        _ => None,
    }
}

fn request(path: &str, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder().uri(format!("https://shop.example{path}"));
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Body::new()).expect("request")
}

#[test]
fn a_broken_configuration_tells_the_public_nothing_and_the_operator_everything() {
    let err = Config::from_vars(broken_vars).expect_err("credentials in ORIGINS are refused");
    let token = config::operator_token(broken_vars);
    assert_eq!(
        token,
        Some(SecretToken::new(PURGE_TOKEN)),
        "read on its own"
    );

    for (path, presented) in [
        ("/", None),
        ("/products", Some(PURGE_TOKEN)),
        ("/__cachefront/health", None),
        ("/__cachefront/health", Some("not-the-token-at-all")),
        ("/__cachefront/state", Some(PURGE_TOKEN)),
    ] {
        let handled =
            pipeline::config_error_response(&err, &request(path, presented), token.as_ref());
        assert_eq!(handled.response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = String::from_utf8_lossy(handled.response.body()).into_owned();
        let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(answer["error"], "invalid_config", "{path}");
        assert!(answer.get("variable").is_none(), "{path}: {body}");
        for secret in ["ORIGINS", "origin.example", "deploy", "hunter2"] {
            assert!(!body.contains(secret), "{path}: {body}");
        }
        // The log line carries the details, without the password.
        let warnings = handled.log.warnings.join(" ");
        assert!(
            warnings.contains("ORIGINS") && !warnings.contains("hunter2"),
            "{warnings}"
        );
    }

    let operator = pipeline::config_error_response(
        &err,
        &request("/__cachefront/health", Some(PURGE_TOKEN)),
        token.as_ref(),
    );
    assert_eq!(
        operator.response.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let details = String::from_utf8_lossy(operator.response.body()).into_owned();
    let answer: serde_json::Value = serde_json::from_str(&details).expect("json");
    assert_eq!(answer["variable"], "ORIGINS");
    assert!(details.contains("must not carry credentials"), "{details}");
    assert!(!details.contains("hunter2"), "{details}");
}
