//! Amazon CloudFront's CreateInvalidation request, built and signed with AWS Signature
//! Version 4, with no HTTP client and no runtime: the origin plugin's CloudFront purge
//! provider (async, reqwest) and `cachefront purge --cloudfront` (blocking, ureq) send
//! exactly what [`create_invalidation`] returns.
//!
//! The signature is computed by AWS's own `aws-sigv4` crate (no SDK, no config loader)
//! with an explicit time, so the whole request is a pure function of its inputs.

use std::time::SystemTime;

/// CloudFront's API version in every path.
pub const API_VERSION: &str = "2020-05-31";
/// CloudFront's API endpoint (a global service).
pub const API_BASE: &str = "https://cloudfront.amazonaws.com";
/// CloudFront is a global service: SigV4 scopes it to `us-east-1`.
pub const SIGNING_REGION: &str = "us-east-1";
/// SigV4 service name.
pub const SIGNING_SERVICE: &str = "cloudfront";
/// Content type of the `InvalidationBatch` body.
pub const CONTENT_TYPE: &str = "text/xml";

/// AWS credentials for SigV4. The secret never appears in `Debug` output.
#[derive(Clone)]
pub struct AwsCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl AwsCredentials {
    /// Long-term keys, or temporary ones with their session token.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token,
        }
    }

    /// From `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and (optional) `AWS_SESSION_TOKEN`;
    /// `None` when either key is missing or empty.
    pub fn from_env() -> Option<Self> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// As [`from_env`](Self::from_env), from variables looked up by `get`.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let var = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        Some(Self::new(
            var("AWS_ACCESS_KEY_ID")?.trim(),
            var("AWS_SECRET_ACCESS_KEY")?.trim(),
            var("AWS_SESSION_TOKEN").map(|t| t.trim().to_owned()),
        ))
    }
}

/// Where and when a SigV4 signature applies.
#[derive(Debug, Clone, Copy)]
pub struct SigningScope<'a> {
    /// Region, e.g. `us-east-1`.
    pub region: &'a str,
    /// Service, e.g. `cloudfront`.
    pub service: &'a str,
    /// Signing time (`x-amz-date`).
    pub time: SystemTime,
}

/// SigV4 headers (`x-amz-date`, `authorization`, and `x-amz-security-token` with a session
/// token) for one request. `headers` must include `host`.
pub fn sigv4_headers(
    credentials: &AwsCredentials,
    scope: SigningScope<'_>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Vec<(String, String)>, String> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let identity = aws_credential_types::Credentials::new(
        &credentials.access_key_id,
        &credentials.secret_access_key,
        credentials.session_token.clone(),
        None,
        "cachefront",
    )
    .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(scope.region)
        .name(scope.service)
        .time(scope.time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// CloudFront paths for URLs, prefixes or everything: URLs become their paths (CloudFront
/// invalidates by path; query and fragment dropped), prefixes `prefix*` wildcards,
/// everything `/*`. Sorted, without duplicates.
pub fn invalidation_paths(urls: &[String], prefixes: &[String], everything: bool) -> Vec<String> {
    if everything {
        return vec!["/*".to_owned()];
    }
    let mut paths: Vec<String> = urls.iter().map(|u| url_path(u)).collect();
    for p in prefixes {
        let path = url_path(p);
        paths.push(if path.ends_with('*') {
            path
        } else {
            format!("{path}*")
        });
    }
    paths.sort();
    paths.dedup();
    paths
}

/// The path of an absolute URL or `host/path` prefix, query and fragment dropped.
fn url_path(s: &str) -> String {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    let path = match rest {
        Some(r) => r.find('/').map_or("/", |i| &r[i..]),
        None if s.starts_with('/') => s,
        None => s.find('/').map_or("/", |i| &s[i..]),
    };
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path[..end].to_owned()
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The `InvalidationBatch` document CloudFront expects.
pub fn invalidation_batch_xml(paths: &[String], caller_reference: &str) -> String {
    let mut items = String::new();
    for p in paths {
        items.push_str("<Path>");
        items.push_str(&xml_escape(p));
        items.push_str("</Path>");
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<InvalidationBatch xmlns=\"http://cloudfront.amazonaws.com/doc/{API_VERSION}/\">\
<CallerReference>{}</CallerReference>\
<Paths><Quantity>{}</Quantity><Items>{items}</Items></Paths>\
</InvalidationBatch>",
        xml_escape(caller_reference),
        paths.len()
    )
}

/// CloudFront's error code from an `ErrorResponse` body, if any.
pub fn error_code(body: &str) -> Option<&str> {
    let start = body.find("<Code>")? + "<Code>".len();
    let len = body[start..].find("</Code>")?;
    Some(&body[start..start + len])
}

/// Whether an answer is worth retrying: throttling codes, 408, 429, 5xx.
pub fn is_retryable(status: u16, body: &str) -> bool {
    matches!(
        error_code(body),
        Some("TooManyInvalidationsInProgress" | "Throttling")
    ) || status == 429
        || status == 408
        || status >= 500
}

/// The invalidation's id from CloudFront's `201 Created` body, if any.
pub fn invalidation_id(body: &str) -> Option<&str> {
    let start = body.find("<Id>")? + "<Id>".len();
    let len = body[start..].find("</Id>")?;
    Some(&body[start..start + len])
}

/// A request ready to send: `POST url`, these headers (including `host`), this body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// Full URL.
    pub url: String,
    /// `host`, `content-type` and the SigV4 headers.
    pub headers: Vec<(String, String)>,
    /// The XML `InvalidationBatch`.
    pub body: String,
}

/// `POST {api_base}/2020-05-31/distribution/{id}/invalidation` with the XML batch for
/// `paths`, signed at `time`. `caller_reference` must be unique per new invalidation (a
/// reused one with the same paths returns the earlier invalidation).
pub fn create_invalidation(
    api_base: &str,
    distribution_id: &str,
    credentials: &AwsCredentials,
    paths: &[String],
    caller_reference: &str,
    time: SystemTime,
) -> Result<SignedRequest, String> {
    if distribution_id.is_empty() || !distribution_id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "CloudFront distribution id {distribution_id:?} must be letters and digits (e.g. EDFDVBD6EXAMPLE)"
        ));
    }
    let base = api_base.trim().trim_end_matches('/');
    let (https, rest) = match (base.strip_prefix("https://"), base.strip_prefix("http://")) {
        (Some(r), _) => (true, r),
        (None, Some(r)) => (false, r),
        (None, None) => {
            return Err(format!(
                "CloudFront API base {api_base:?} must be an http(s) URL"
            ))
        }
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains(['@', '?', '#', ' ']) {
        return Err(format!(
            "CloudFront API base {api_base:?} has no usable host"
        ));
    }
    // What HTTP clients send as `Host`: the default port left out.
    let host = match (https, authority.rsplit_once(':')) {
        (true, Some((h, "443"))) | (false, Some((h, "80"))) => h,
        _ => authority,
    };
    let url = format!("{base}/{API_VERSION}/distribution/{distribution_id}/invalidation");
    let body = invalidation_batch_xml(paths, caller_reference);
    let signed = sigv4_headers(
        credentials,
        SigningScope {
            region: SIGNING_REGION,
            service: SIGNING_SERVICE,
            time,
        },
        "POST",
        &url,
        &[("host", host), ("content-type", CONTENT_TYPE)],
        body.as_bytes(),
    )?;
    let mut headers = vec![
        ("host".to_owned(), host.to_owned()),
        ("content-type".to_owned(), CONTENT_TYPE.to_owned()),
    ];
    headers.extend(signed);
    Ok(SignedRequest { url, headers, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn example_credentials() -> AwsCredentials {
        // The published SigV4 test suite's example keys.
        AwsCredentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
        )
    }

    fn vector_scope(time: SystemTime) -> SigningScope<'static> {
        SigningScope {
            region: "us-east-1",
            service: "service",
            time,
        }
    }

    fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
        h.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    // AWS's SigV4 test suite, case "get-vanilla": GET / on example.amazonaws.com at
    // 2015-08-30T12:36:00Z, region us-east-1, service "service".
    #[test]
    fn signature_matches_the_published_get_vanilla_vector() {
        let time = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let headers = sigv4_headers(
            &example_credentials(),
            vector_scope(time),
            "GET",
            "https://example.amazonaws.com/",
            &[("host", "example.amazonaws.com")],
            b"",
        )
        .unwrap_or_default();
        assert_eq!(header(&headers, "x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(
            header(&headers, "authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date, \
                 Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
    }

    // Same suite, case "post-x-www-form-urlencoded" without the content-sha256 header:
    // a signed body changes the signature.
    #[test]
    fn signature_covers_the_body() {
        let time = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let sign = |body: &[u8]| {
            sigv4_headers(
                &example_credentials(),
                vector_scope(time),
                "POST",
                "https://example.amazonaws.com/",
                &[("host", "example.amazonaws.com")],
                body,
            )
            .ok()
            .and_then(|h| header(&h, "authorization").map(str::to_owned))
        };
        assert!(sign(b"Param1=value1").is_some());
        assert_ne!(sign(b"Param1=value1"), sign(b"Param1=value2"));
    }

    #[test]
    fn urls_prefixes_and_everything_map_to_cloudfront_paths() {
        let urls = vec![
            "https://shop.example/products/1?page=2".to_owned(),
            "https://shop.example".to_owned(),
        ];
        let prefixes = vec!["shop.example/blog/".to_owned(), "/img/".to_owned()];
        assert_eq!(
            invalidation_paths(&urls, &prefixes, false),
            ["/", "/blog/*", "/img/*", "/products/1"]
        );
        assert_eq!(invalidation_paths(&urls, &prefixes, true), ["/*"]);
    }

    #[test]
    fn batch_xml_escapes_paths_and_counts_them() {
        let xml = invalidation_batch_xml(&["/a&b".to_owned(), "/c".to_owned()], "ref-1");
        assert!(xml.contains("<CallerReference>ref-1</CallerReference>"));
        assert!(xml.contains("<Quantity>2</Quantity>"));
        assert!(xml.contains("<Items><Path>/a&amp;b</Path><Path>/c</Path></Items>"));
    }

    #[test]
    fn throttling_codes_are_read_from_the_error_body_and_are_retryable() {
        let body = "<ErrorResponse><Error><Type>Sender</Type><Code>TooManyInvalidationsInProgress</Code></Error></ErrorResponse>";
        assert_eq!(error_code(body), Some("TooManyInvalidationsInProgress"));
        assert_eq!(error_code("<x/>"), None);
        assert!(is_retryable(400, body));
        assert!(is_retryable(503, ""));
        assert!(!is_retryable(403, "<Code>AccessDenied</Code>"));
    }

    #[test]
    fn the_request_targets_the_distribution_and_signs_host_and_content_type() {
        let time = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let req = create_invalidation(
            "http://127.0.0.1:8080/",
            "EDFDVBD6EXAMPLE",
            &example_credentials(),
            &["/a".to_owned()],
            "ref-1",
            time,
        )
        .expect("request");
        assert_eq!(
            req.url,
            "http://127.0.0.1:8080/2020-05-31/distribution/EDFDVBD6EXAMPLE/invalidation"
        );
        assert_eq!(header(&req.headers, "host"), Some("127.0.0.1:8080"));
        let auth = header(&req.headers, "authorization").unwrap_or_default();
        assert!(auth.contains("/20150830/us-east-1/cloudfront/aws4_request"));
        assert!(auth.contains("SignedHeaders=content-type;host;x-amz-date"));
        let default_port = create_invalidation(
            "https://cloudfront.amazonaws.com:443",
            "E1",
            &example_credentials(),
            &[],
            "r",
            time,
        )
        .expect("request");
        assert_eq!(
            header(&default_port.headers, "host"),
            Some("cloudfront.amazonaws.com")
        );
        for (base, id) in [
            ("ftp://x", "E1"),
            ("https://", "E1"),
            (API_BASE, "E1/../x"),
            (API_BASE, ""),
        ] {
            assert!(create_invalidation(base, id, &example_credentials(), &[], "r", time).is_err());
        }
    }
}
