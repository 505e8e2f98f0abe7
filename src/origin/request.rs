//! Building the request sent to an origin, and cleaning the origin's response.
//!
//! Request fields reach the origin through an allow-list
//! ([`shaping::FORWARDED_REQUEST_FIELDS`], `FORWARD_REQUEST_HEADERS` and the
//! keyed fields): anything else a client sends — `X-Forwarded-Host`,
//! `X-Original-URL`, `True-Client-IP`, a forged `X-Forwarded-For` — could steer
//! the origin without being part of the cache key, and never leaves the edge.
//! The forwarding fields are set from what the edge itself received.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Uri};

use crate::error::EdgeError;
use crate::origin::pool::OriginConfig;
use crate::origin::shaping;
use crate::semantics::surrogate_control;
use crate::Body;

/// Hop-by-hop fields (RFC 9110 §7.6.1) never forwarded in either direction.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The client address as the Workers runtime reports it (never client-sent).
const CONNECTING_IP: &str = "cf-connecting-ip";

/// Which request fields besides the built-in allow-list reach an origin.
#[derive(Debug, Clone, Copy)]
pub struct ForwardRules<'a> {
    /// Fields in the cache key (`CACHE_KEY_HEADERS`): forwarded as sent, and
    /// the edge does not overwrite them.
    pub keyed: &'a [String],
    /// `FORWARD_REQUEST_HEADERS`.
    pub extra: &'a [String],
    /// Fields the request's cache rule keys (`cache_key.headers`, the
    /// device class): forwarded as the edge set them.
    pub rule_keyed: &'a [String],
    /// Fields a stored answer for this URL varies on: the key holds their
    /// values, so the origin may see them (RFC 9111 §4.3.1 wants them in a
    /// revalidation).
    pub varied: &'a [String],
}

impl ForwardRules<'_> {
    /// Whether a client's request field reaches the origin.
    pub fn forwards(&self, name: &str) -> bool {
        !HOP_BY_HOP.contains(&name)
            && (shaping::is_forwarded_field(name, self.extra)
                || self.keyed.iter().any(|k| k == name)
                || self.rule_keyed.iter().any(|k| k == name)
                || self.varied.iter().any(|v| v == name))
    }
}

/// The client's request fields the origin will see (before the edge adds
/// its own forwarding fields).
pub fn forwarded_view(headers: &HeaderMap, rules: ForwardRules<'_>) -> HeaderMap {
    let mut seen = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if rules.forwards(name.as_str()) {
            seen.append(name.clone(), value.clone());
        }
    }
    seen
}

/// Removes hop-by-hop fields, including any the `Connection` field nominates.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let nominated: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in nominated {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// The client-facing host of a request: the URI authority, else `Host`.
pub fn request_host(request: &Request<Body>) -> Option<String> {
    if let Some(authority) = request.uri().authority() {
        return Some(authority.as_str().to_owned());
    }
    request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Builds the request to send to `origin` for a client request whose URI is
/// already shaped ([`shaping::shaped_uri`]). Only allow-listed and keyed
/// fields are copied; a client's `Connection` header cannot remove them, so
/// the origin sees the same values the cache key and `Vary` were built from.
pub fn origin_request(
    request: &Request<Body>,
    origin: &OriginConfig,
    rules: ForwardRules<'_>,
) -> Result<Request<Body>, EdgeError> {
    let mut url = origin.url.clone();
    let prefix = origin.url.path().trim_end_matches('/');
    url.set_path(&format!("{prefix}{}", request.uri().path()));
    url.set_query(request.uri().query());
    let uri: Uri = url
        .as_str()
        .parse()
        .map_err(|e| EdgeError::BadRequest(format!("cannot forward this URL: {e}")))?;

    let keyed = |name: &str| rules.keyed.iter().any(|k| k == name);
    let mut headers = forwarded_view(request.headers(), rules);
    // The key holds `Origin` normalised; the origin gets that same value, so
    // a reflected `Access-Control-Allow-Origin` matches what browsers send.
    if let Some(origin) = shaping::keyed_origin(request.headers()) {
        if let Ok(value) = HeaderValue::from_str(&origin) {
            headers.insert(header::ORIGIN, value);
        }
    }
    let forwarded_host = HeaderName::from_static("x-forwarded-host");
    if !keyed(forwarded_host.as_str()) {
        if let Some(host) = request_host(request) {
            if let Ok(value) = HeaderValue::from_str(&host) {
                headers.insert(forwarded_host, value);
            }
        }
    }
    let forwarded_proto = HeaderName::from_static("x-forwarded-proto");
    if !keyed(forwarded_proto.as_str()) {
        let scheme = request.uri().scheme_str().unwrap_or("https");
        if let Ok(value) = HeaderValue::from_str(scheme) {
            headers.insert(forwarded_proto, value);
        }
    }
    if let Some(ip) = request.headers().get(CONNECTING_IP) {
        for name in ["x-forwarded-for", "x-real-ip"] {
            if !keyed(name) {
                headers.insert(HeaderName::from_static(name), ip.clone());
            }
        }
    }

    if let Some(host) = origin
        .host
        .as_deref()
        .and_then(|h| HeaderValue::from_str(h).ok())
    {
        headers.insert(header::HOST, host);
    }
    // This cache understands `Surrogate-Control` (added to what a forwarded
    // downstream surrogate announced, as the Edge Architecture asks).
    headers.append(
        surrogate_control::SURROGATE_CAPABILITY,
        HeaderValue::from_static(surrogate_control::CAPABILITY),
    );

    let mut forwarded = Request::new(request.body().clone());
    *forwarded.method_mut() = request.method().clone();
    *forwarded.uri_mut() = uri;
    *forwarded.headers_mut() = headers;
    Ok(forwarded)
}

/// The active health check's request to an origin: `GET <base><path>`.
pub fn health_probe(origin: &OriginConfig, path: &str) -> Result<Request<Body>, EdgeError> {
    let prefix = origin.url.path().trim_end_matches('/');
    let mut url = origin.url.clone();
    let (path, query) = path
        .split_once('?')
        .map_or((path, None), |(p, q)| (p, Some(q)));
    url.set_path(&format!("{prefix}{path}"));
    url.set_query(query);
    let uri: Uri = url
        .as_str()
        .parse()
        .map_err(|e| EdgeError::BadRequest(format!("cannot build the health check URL: {e}")))?;
    let mut probe = Request::new(Body::new());
    *probe.uri_mut() = uri;
    probe.headers_mut().insert(
        header::USER_AGENT,
        HeaderValue::from_static("cachefront-health-check"),
    );
    if let Some(host) = origin
        .host
        .as_deref()
        .and_then(|h| HeaderValue::from_str(h).ok())
    {
        probe.headers_mut().insert(header::HOST, host);
    }
    Ok(probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: ForwardRules<'static> = ForwardRules {
        keyed: &[],
        extra: &[],
        rule_keyed: &[],
        varied: &[],
    };

    fn origin(url: &str) -> OriginConfig {
        OriginConfig {
            name: "primary".into(),
            url: url.parse().expect("url"),
            priority: 0,
            weight: 1,
            timeout_ms: 1000,
            health_path: None,
            health_status: 200,
            host: None,
        }
    }

    #[test]
    fn host_override_replaces_the_host_sent_to_the_origin() {
        let req = client_request("https://shop.example/p", &[("host", "shop.example")]);
        let mut o = origin("http://10.0.0.1:8080");
        o.host = Some("backend.internal".into());
        let out = origin_request(&req, &o, NONE).expect("forwarded");
        assert_eq!(out.headers()["host"], "backend.internal");
        assert_eq!(out.uri().to_string(), "http://10.0.0.1:8080/p");
    }

    #[test]
    fn health_probe_targets_the_health_path_under_the_base() {
        let probe =
            health_probe(&origin("http://127.0.0.1:3000/app/"), "/readyz?deep=1").expect("probe");
        assert_eq!(
            probe.uri().to_string(),
            "http://127.0.0.1:3000/app/readyz?deep=1"
        );
        assert_eq!(probe.method(), http::Method::GET);
    }

    fn client_request(uri: &str, headers: &[(&'static str, &'static str)]) -> Request<Body> {
        let mut builder = Request::builder().uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(Body::new()).expect("request")
    }

    #[test]
    fn path_and_query_are_appended_to_the_origin_base() {
        let req = client_request("https://shop.example/products/7?ref=home", &[]);
        let out =
            origin_request(&req, &origin("http://127.0.0.1:3000/app/"), NONE).expect("forwarded");
        assert_eq!(
            out.uri().to_string(),
            "http://127.0.0.1:3000/app/products/7?ref=home"
        );
        let out = origin_request(&req, &origin("http://127.0.0.1:3000"), NONE).expect("forwarded");
        assert_eq!(
            out.uri().to_string(),
            "http://127.0.0.1:3000/products/7?ref=home"
        );
    }

    #[test]
    fn unkeyed_override_headers_never_reach_the_origin() {
        let req = client_request(
            "https://shop.example/",
            &[
                ("x-forwarded-host", "evil.example"),
                ("x-original-url", "/admin"),
                ("x-http-method-override", "DELETE"),
                ("accept", "text/html"),
            ],
        );
        let out = origin_request(&req, &origin("http://127.0.0.1:3000"), NONE).expect("forwarded");
        assert_eq!(out.headers()["x-forwarded-host"], "shop.example");
        assert_eq!(out.headers()["x-forwarded-proto"], "https");
        assert!(out.headers().get("x-original-url").is_none());
        assert!(out.headers().get("x-http-method-override").is_none());
        assert_eq!(out.headers()["accept"], "text/html");
    }

    #[test]
    fn the_edge_announces_its_surrogate_capability_and_only_it() {
        let req = client_request(
            "https://shop.example/",
            &[("surrogate-capability", "evil=\"ESI/1.0\"")],
        );
        let out = origin_request(&req, &origin("http://127.0.0.1:3000"), NONE).expect("forwarded");
        let announced: Vec<_> = out
            .headers()
            .get_all("surrogate-capability")
            .iter()
            .collect();
        assert_eq!(announced, ["cachefront=\"Surrogate/1.0\""]);
        // A downstream surrogate the operator lets through keeps its line; ours follows.
        let extra = vec!["surrogate-capability".to_owned()];
        let rules = ForwardRules {
            extra: &extra,
            ..NONE
        };
        let out = origin_request(&req, &origin("http://127.0.0.1:3000"), rules).expect("forwarded");
        let announced: Vec<_> = out
            .headers()
            .get_all("surrogate-capability")
            .iter()
            .collect();
        assert_eq!(
            announced,
            ["evil=\"ESI/1.0\"", "cachefront=\"Surrogate/1.0\""]
        );
    }

    #[test]
    fn keyed_override_headers_are_forwarded() {
        let req = client_request(
            "https://shop.example/",
            &[("x-forwarded-host", "tenant.example")],
        );
        let keyed = vec!["x-forwarded-host".to_owned()];
        let rules = ForwardRules {
            keyed: &keyed,
            extra: &[],
            rule_keyed: &[],
            varied: &[],
        };
        let out = origin_request(&req, &origin("http://127.0.0.1:3000"), rules).expect("forwarded");
        assert_eq!(out.headers()["x-forwarded-host"], "tenant.example");
    }

    #[test]
    fn hop_by_hop_and_connection_nominated_fields_are_dropped() {
        let req = client_request(
            "https://shop.example/",
            &[
                ("connection", "x-secret, keep-alive"),
                ("x-secret", "1"),
                ("te", "trailers"),
                ("cf-ray", "abc"),
            ],
        );
        let out = origin_request(&req, &origin("http://127.0.0.1:3000"), NONE).expect("forwarded");
        for name in ["connection", "x-secret", "te", "cf-ray", "host"] {
            assert!(out.headers().get(name).is_none(), "{name} leaked");
        }
    }

    #[test]
    fn client_forwarding_fields_are_replaced_by_the_edge() {
        let req = client_request(
            "https://shop.example/",
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-real-ip", "6.6.6.6"),
                ("true-client-ip", "6.6.6.6"),
                ("x-forwarded-server", "evil"),
                ("x-forwarded-prefix", "/evil"),
                ("x-original-host", "evil.example"),
                ("front-end-https", "off"),
                ("cf-connecting-ip", "203.0.113.9"),
            ],
        );
        let out = origin_request(&req, &origin("http://127.0.0.1:3000"), NONE).expect("forwarded");
        assert_eq!(out.headers()["x-forwarded-for"], "203.0.113.9");
        assert_eq!(out.headers()["x-real-ip"], "203.0.113.9");
        for name in [
            "true-client-ip",
            "x-forwarded-server",
            "x-forwarded-prefix",
            "x-original-host",
            "front-end-https",
            "cf-connecting-ip",
        ] {
            assert!(out.headers().get(name).is_none(), "{name} leaked");
        }
        let anonymous = client_request("https://shop.example/", &[("x-forwarded-for", "6.6.6.6")]);
        let out =
            origin_request(&anonymous, &origin("http://127.0.0.1:3000"), NONE).expect("forwarded");
        assert!(
            out.headers().get("x-forwarded-for").is_none(),
            "without a runtime address nothing is claimed"
        );
    }

    #[test]
    fn connection_cannot_remove_allow_listed_or_keyed_fields() {
        let req = client_request(
            "https://shop.example/",
            &[
                ("connection", "accept-language, x-tenant"),
                ("accept-language", "de"),
                ("x-tenant", "t1"),
            ],
        );
        let keyed = vec!["x-tenant".to_owned()];
        let rules = ForwardRules {
            keyed: &keyed,
            extra: &[],
            rule_keyed: &[],
            varied: &[],
        };
        let out = origin_request(&req, &origin("http://127.0.0.1:3000"), rules).expect("forwarded");
        assert_eq!(out.headers()["accept-language"], "de");
        assert_eq!(out.headers()["x-tenant"], "t1");
        assert!(out.headers().get("connection").is_none());
    }

    #[test]
    fn extra_forwarded_headers_pass() {
        let req = client_request("https://shop.example/", &[("x-device", "mobile")]);
        let extra = vec!["x-device".to_owned()];
        let rules = ForwardRules {
            keyed: &[],
            extra: &extra,
            rule_keyed: &[],
            varied: &[],
        };
        let out = origin_request(&req, &origin("http://127.0.0.1:3000"), rules).expect("forwarded");
        assert_eq!(out.headers()["x-device"], "mobile");
    }

    #[test]
    fn origin_is_forwarded_as_it_is_keyed() {
        let req = client_request(
            "https://shop.example/",
            &[("origin", "HTTPS://Good.Example")],
        );
        let out = origin_request(&req, &origin("http://127.0.0.1:3000"), NONE).expect("forwarded");
        assert_eq!(out.headers()["origin"], "https://good.example");
    }
}
