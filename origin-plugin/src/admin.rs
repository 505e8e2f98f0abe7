//! The operator surface, kept away from the public listener that the edge forwards to.
//!
//! - [`BearerToken`]: a secret of at least [`MIN_TOKEN_LEN`] characters, kept only as its
//!   SHA-256 digest and compared in constant time without revealing its length.
//! - [`RequireBearerLayer`]: refuses every request without that token (401, JSON).
//! - [`AdminRouter`]: the operator routes (metrics, detailed health, profiler and query
//!   debug endpoints, your own) in one router, for a separate listener ([`AdminConfig`],
//!   `ADMIN_BIND`, loopback by default) or, guarded by a token, nested in the public app.
//!
//! The public app keeps only what the edge and load balancers need: its own pages and
//! `health.router()` (`/livez`, `/readyz`, `/startupz` without check names or errors).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use axum::Router;
use http::{header, HeaderMap, Request};
use pin_project_lite::pin_project;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower::{Layer, Service};

use crate::Error;

/// Shortest accepted token, in characters: 32 random hex characters carry 128 bits.
pub const MIN_TOKEN_LEN: usize = 32;

/// Where the admin listener binds when `ADMIN_BIND` is unset: loopback only.
pub const DEFAULT_ADMIN_BIND: &str = "127.0.0.1:9091";

/// A bearer token for operator endpoints.
///
/// Only the token's SHA-256 digest is kept. A presented token is hashed and the two
/// digests are compared with [`subtle`]: the work depends on the presented token's
/// length alone, so neither the expected token's content nor its length can be timed.
#[derive(Clone)]
pub struct BearerToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl BearerToken {
    /// A token from its text: at least [`MIN_TOKEN_LEN`] visible ASCII characters (what
    /// an `Authorization` header can carry without quoting or trimming).
    pub fn new(token: impl AsRef<str>) -> Result<Self, Error> {
        let token = token.as_ref();
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Config(
                "a bearer token may contain only visible ASCII characters (no spaces)".to_owned(),
            ));
        }
        if token.len() < MIN_TOKEN_LEN {
            return Err(Error::Config(format!(
                "a bearer token must be at least {MIN_TOKEN_LEN} characters long, got {}; \
                 generate one with `openssl rand -hex 32`",
                token.len()
            )));
        }
        Ok(Self {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// The token in environment variable `name`: `None` when unset or empty, an error
    /// naming the variable when it is too short or malformed.
    pub fn from_env(name: &str) -> Result<Option<Self>, Error> {
        Self::from_value(name, std::env::var(name).ok().as_deref())
    }

    /// [`from_env`](Self::from_env) over a value already read: `None` when absent or
    /// blank, errors prefixed with `name`.
    pub fn from_value(name: &str, value: Option<&str>) -> Result<Option<Self>, Error> {
        match value.map(str::trim) {
            None | Some("") => Ok(None),
            Some(token) => Self::new(token)
                .map(Some)
                .map_err(|e| Error::Config(format!("{name}: {}", config_message(e)))),
        }
    }

    /// Whether `presented` is this token.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented).into();
        presented.ct_eq(&self.digest).into()
    }

    /// Check a request's `Authorization: Bearer <token>` (one header, scheme
    /// case-insensitive, spaces around the token ignored). Every failure is the same
    /// [`Error::Unauthorized`], so a caller learns nothing about why.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Error> {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(Error::Unauthorized);
        };
        let value = value.as_bytes();
        let token = match value.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => value[7..].trim_ascii(),
            _ => return Err(Error::Unauthorized),
        };
        if self.matches(token) {
            Ok(())
        } else {
            Err(Error::Unauthorized)
        }
    }

    /// A layer that answers 401 to any request without this token.
    pub fn layer(&self) -> RequireBearerLayer {
        RequireBearerLayer {
            token: self.clone(),
        }
    }
}

/// Marks a request that passed a [`RequireBearer`] guard. Only the guard creates it (a
/// client cannot set extensions), so handlers behind it may trust it.
#[derive(Debug, Clone, Copy)]
pub struct OperatorAuthorized(());

/// The gate of a debug endpoint that has its own optional token: 404 when the endpoint
/// has none (it is off); otherwise the request must carry that token, or have passed the
/// admin guard already — one `Authorization` header cannot carry two tokens.
#[cfg_attr(
    not(any(feature = "profiling", feature = "db", feature = "memory")),
    allow(dead_code)
)]
pub(crate) fn authorize_debug(
    token: Option<&BearerToken>,
    headers: &HeaderMap,
    extensions: &http::Extensions,
) -> Result<(), Error> {
    match token {
        None => Err(Error::NotFound("debug endpoints are disabled".to_owned())),
        Some(_) if extensions.get::<OperatorAuthorized>().is_some() => Ok(()),
        Some(token) => token.check(headers),
    }
}

fn config_message(e: Error) -> String {
    match e {
        Error::Config(message) => message,
        other => other.to_string(),
    }
}

/// Layer of [`RequireBearer`]; from [`BearerToken::layer`].
#[derive(Debug, Clone)]
pub struct RequireBearerLayer {
    token: BearerToken,
}

impl<S> Layer<S> for RequireBearerLayer {
    type Service = RequireBearer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireBearer {
            inner,
            token: self.token.clone(),
        }
    }
}

/// Passes a request on only when it carries the token; otherwise answers
/// [`Error::Unauthorized`] (401, `{"error":"unauthorized",…}`, `WWW-Authenticate: Bearer`).
#[derive(Debug, Clone)]
pub struct RequireBearer<S> {
    inner: S,
    token: BearerToken,
}

impl<S, B> Service<Request<B>> for RequireBearer<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = RequireBearerFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match self.token.check(req.headers()) {
            Ok(()) => {
                req.extensions_mut().insert(OperatorAuthorized(()));
                RequireBearerFuture::Passed {
                    inner: self.inner.call(req),
                }
            }
            Err(e) => RequireBearerFuture::Refused {
                response: Some(e.into_response()),
            },
        }
    }
}

pin_project! {
    /// Future of [`RequireBearer`].
    #[project = RequireBearerProj]
    pub enum RequireBearerFuture<F> {
        /// The token matched: the inner service answers.
        Passed { #[pin] inner: F },
        /// The token was missing or wrong: the 401 answer.
        Refused { response: Option<Response> },
    }
}

impl<F, E> Future for RequireBearerFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RequireBearerProj::Passed { inner } => inner.poll(cx),
            RequireBearerProj::Refused { response } => match response.take() {
                Some(res) => Poll::Ready(Ok(res)),
                None => Poll::Pending,
            },
        }
    }
}

/// The operator routes in one router, separate from the public app.
///
/// ```no_run
/// # #[cfg(all(feature = "metrics", feature = "health", feature = "profiling"))]
/// # async fn run() -> Result<(), cachefront_origin::Error> {
/// use axum::{routing::get, Router};
/// use cachefront_origin::admin::{AdminConfig, AdminRouter};
/// use cachefront_origin::health::{GracefulShutdown, Health};
/// use cachefront_origin::metrics::Metrics;
/// use cachefront_origin::profiling::{Profiler, ProfilingConfig};
///
/// let metrics = Metrics::new();
/// let health = Health::builder().metrics(&metrics).build();
/// let profiler = Profiler::with_metrics(ProfilingConfig::default(), &metrics);
/// let app = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .merge(health.router()) // public probes: status only
///     .layer(profiler.layer())
///     .layer(metrics.layer());
///
/// let config = AdminConfig::from_env()?; // ADMIN_BIND (127.0.0.1:9091), ADMIN_TOKEN
/// let admin = AdminRouter::new()
///     .metrics(&metrics)
///     .health(&health)
///     .profiler(&profiler)
///     .token(config.token.clone())
///     .build();
/// let public = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
/// let admin_listener = tokio::net::TcpListener::bind(config.bind).await?;
/// GracefulShutdown::new(&health)
///     .serve_with_admin(public, app, admin_listener, admin)
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
#[must_use]
pub struct AdminRouter {
    router: Router,
    token: Option<BearerToken>,
}

impl AdminRouter {
    /// No routes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `GET /metrics`, `GET /metrics.json`.
    #[cfg(feature = "metrics")]
    pub fn metrics(mut self, metrics: &crate::metrics::Metrics) -> Self {
        self.router = self.router.merge(metrics.router());
        self
    }

    /// `/livez`, and `/readyz` and `/startupz` with every check's name, status and error.
    #[cfg(feature = "health")]
    pub fn health(mut self, health: &crate::health::Health) -> Self {
        self.router = self.router.merge(health.admin_router());
        self
    }

    /// `GET /debug/requests` and (feature `pprof`) `GET /debug/pprof/profile`. They stay
    /// off (404) without [`ProfilingConfig::debug_token`](crate::profiling::ProfilingConfig::debug_token);
    /// with it, they take either that token or, behind [`token`](Self::token), the admin one.
    #[cfg(feature = "profiling")]
    pub fn profiler(mut self, profiler: &crate::profiling::Profiler) -> Self {
        self.router = self.router.merge(profiler.router());
        self
    }

    /// `GET /debug/queries`, gated like [`profiler`](Self::profiler) by
    /// [`DbCaptureConfig::debug_token`](crate::db::DbCaptureConfig::debug_token).
    #[cfg(feature = "db")]
    pub fn db_capture(mut self, capture: &crate::db::DbCapture) -> Self {
        self.router = self.router.merge(capture.router());
        self
    }

    /// `GET /debug/memory` and `GET /debug/pprof/heap`, gated like
    /// [`profiler`](Self::profiler) by
    /// [`MemoryConfig::debug_token`](crate::memory::MemoryConfig::debug_token).
    #[cfg(feature = "memory")]
    pub fn memory(mut self, monitor: &crate::memory::MemoryMonitor) -> Self {
        self.router = self.router.merge(monitor.router());
        self
    }

    /// Your own operator routes.
    pub fn merge(mut self, routes: Router) -> Self {
        self.router = self.router.merge(routes);
        self
    }

    /// Require this bearer token on every admin request, unknown paths included (so the
    /// routes cannot be listed without it). `None` leaves the router open, for a
    /// loopback or otherwise private listener.
    pub fn token(mut self, token: Option<BearerToken>) -> Self {
        self.token = token;
        self
    }

    /// The router: serve it on the admin listener, or `nest` it under a prefix of the
    /// public app when it has a token.
    pub fn build(self) -> Router {
        match self.token {
            Some(token) => self.router.layer(token.layer()),
            None => self.router,
        }
    }
}

/// Where the admin listener binds and which token, if any, guards it.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// `ADMIN_BIND`; [`DEFAULT_ADMIN_BIND`] when unset.
    pub bind: SocketAddr,
    /// `ADMIN_TOKEN`; `None` when unset or empty.
    pub token: Option<BearerToken>,
}

impl AdminConfig {
    /// From `ADMIN_BIND` and `ADMIN_TOKEN`.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_values(
            std::env::var("ADMIN_BIND").ok().as_deref(),
            std::env::var("ADMIN_TOKEN").ok().as_deref(),
        )
    }

    /// From the two values, as read from the environment.
    pub fn from_values(bind: Option<&str>, token: Option<&str>) -> Result<Self, Error> {
        let raw = bind
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .unwrap_or(DEFAULT_ADMIN_BIND);
        let bind = raw.parse().map_err(|_| {
            Error::Config(format!(
                "ADMIN_BIND must be IP:PORT (e.g. {DEFAULT_ADMIN_BIND}), got {:?}",
                raw.chars().take(64).collect::<String>()
            ))
        })?;
        Ok(Self {
            bind,
            token: BearerToken::from_value("ADMIN_TOKEN", token)?,
        })
    }

    /// A warning to log when the admin routes would be reachable from other machines
    /// without a token; `None` when the listener is loopback or guarded.
    pub fn exposure_warning(&self) -> Option<String> {
        (!self.bind.ip().is_loopback() && self.token.is_none()).then(|| {
            format!(
                "admin listener {} is not loopback and has no ADMIN_TOKEN: metrics, detailed \
                 health and debug routes are open to anyone who can reach it",
                self.bind
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("header value"),
        );
        h
    }

    #[test]
    fn only_the_exact_token_matches() {
        let token = BearerToken::new(TOKEN).expect("long enough");
        assert!(token.matches(TOKEN.as_bytes()));
        assert!(!token.matches(&TOKEN.as_bytes()[..31]), "a prefix");
        assert!(
            !token.matches(format!("{TOKEN}0").as_bytes()),
            "an extension"
        );
        assert!(!token.matches(b""));
        assert!(!token.matches(TOKEN.to_uppercase().as_bytes()));
    }

    #[test]
    fn bearer_header_is_parsed_strictly() {
        let token = BearerToken::new(TOKEN).expect("long enough");
        assert!(token.check(&auth(&format!("Bearer {TOKEN}"))).is_ok());
        assert!(token.check(&auth(&format!("bearer  {TOKEN} "))).is_ok());
        assert!(token.check(&HeaderMap::new()).is_err(), "missing");
        assert!(token.check(&auth(&format!("Basic {TOKEN}"))).is_err());
        assert!(token.check(&auth(TOKEN)).is_err(), "no scheme");
        let mut twice = auth(&format!("Bearer {TOKEN}"));
        twice.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer other"),
        );
        assert!(token.check(&twice).is_err(), "two Authorization headers");
    }

    #[test]
    fn tokens_shorter_than_the_minimum_or_with_spaces_are_refused() {
        let short = "a".repeat(MIN_TOKEN_LEN - 1);
        let err = BearerToken::new(&short).expect_err("too short").to_string();
        assert!(err.contains("at least 32 characters"), "{err}");
        assert!(BearerToken::new("a".repeat(MIN_TOKEN_LEN)).is_ok());
        assert!(BearerToken::new(format!("{} {}", &TOKEN[..16], &TOKEN[16..])).is_err());
        let err = BearerToken::from_value("CACHEFRONT_DEBUG_TOKEN", Some("s3cret"))
            .expect_err("too short")
            .to_string();
        assert!(
            err.contains("CACHEFRONT_DEBUG_TOKEN: a bearer token must be at least 32"),
            "{err}"
        );
        assert!(BearerToken::from_value("X", Some("  "))
            .expect("blank")
            .is_none());
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let token = BearerToken::new(TOKEN).expect("long enough");
        assert!(!format!("{token:?}").contains(&TOKEN[..8]));
    }

    #[test]
    fn admin_bind_defaults_to_loopback_and_bad_values_name_the_variable() {
        let config = AdminConfig::from_values(None, None).expect("defaults");
        assert_eq!(config.bind.to_string(), DEFAULT_ADMIN_BIND);
        assert!(config.bind.ip().is_loopback());
        assert!(config.token.is_none());
        assert!(config.exposure_warning().is_none());

        let err = AdminConfig::from_values(Some("localhost"), None)
            .expect_err("not IP:PORT")
            .to_string();
        assert!(err.contains("ADMIN_BIND"), "{err}");
        let err = AdminConfig::from_values(None, Some("short"))
            .expect_err("short token")
            .to_string();
        assert!(err.contains("ADMIN_TOKEN"), "{err}");
    }

    #[test]
    fn a_public_admin_bind_without_token_is_warned_about() {
        let open = AdminConfig::from_values(Some("0.0.0.0:9091"), None).expect("valid");
        assert!(open.exposure_warning().is_some());
        let guarded = AdminConfig::from_values(Some("0.0.0.0:9091"), Some(TOKEN)).expect("valid");
        assert!(guarded.exposure_warning().is_none());
    }
}
