//! Amazon CloudFront's CreateInvalidation API, signed with AWS Signature Version 4.
//!
//! The signature is computed by AWS's own `aws-sigv4` crate (no SDK, no config loader): the
//! request is built here, its canonical parts handed to the signer with an explicit time,
//! and the signer's headers copied onto the outgoing call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{BoxFuture, PurgeError, PurgeProvider};
use crate::purge::PurgeRequest;

/// CloudFront's API version in every path.
const API_VERSION: &str = "2020-05-31";
/// CloudFront is a global service: SigV4 scopes it to `us-east-1`.
const SIGNING_REGION: &str = "us-east-1";
const SIGNING_SERVICE: &str = "cloudfront";

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
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Some(Self::new(
            var("AWS_ACCESS_KEY_ID")?.trim(),
            var("AWS_SECRET_ACCESS_KEY")?.trim(),
            var("AWS_SESSION_TOKEN").map(|t| t.trim().to_owned()),
        ))
    }
}

/// CloudFront invalidations: `POST {api}/2020-05-31/distribution/{id}/invalidation` with an
/// XML `InvalidationBatch` (`CallerReference`, `Paths` with `Quantity` and `Items`), signed
/// with SigV4 (service `cloudfront`, region `us-east-1`).
///
/// URLs become their paths (CloudFront invalidates by path; the query string is dropped),
/// prefixes become `prefix*` wildcards, everything becomes `/*`. CloudFront has no cache
/// tags, host purge or soft purge: tags and hosts are refused as
/// [`PurgeError::Unsupported`], soft purges are sent as invalidations.
/// `TooManyInvalidationsInProgress` and `Throttling` answers are retryable.
#[derive(Debug)]
pub struct CloudFrontPurge {
    api_base: String,
    distribution_id: String,
    credentials: AwsCredentials,
    max_batch: usize,
    sequence: AtomicU64,
}

impl CloudFrontPurge {
    /// Provider for one distribution.
    pub fn new(distribution_id: impl Into<String>, credentials: AwsCredentials) -> Self {
        Self {
            api_base: "https://cloudfront.amazonaws.com".to_owned(),
            distribution_id: distribution_id.into(),
            credentials,
            max_batch: 1000,
            sequence: AtomicU64::new(0),
        }
    }
    /// Override the API base URL (tests, proxies).
    pub fn api_base(mut self, base: &str) -> Self {
        self.api_base = base.trim_end_matches('/').to_owned();
        self
    }
    /// Paths per invalidation. Default 1000 (CloudFront allows 3000 in progress).
    pub fn max_batch(mut self, max: usize) -> Self {
        self.max_batch = max.max(1);
        self
    }
}

/// CloudFront paths for one request, or why it cannot be expressed.
pub(crate) fn invalidation_paths(req: &PurgeRequest) -> Result<Vec<String>, PurgeError> {
    let unsupported = |what| PurgeError::Unsupported {
        provider: "cloudfront",
        what,
    };
    if req.everything {
        return Ok(vec!["/*".to_owned()]);
    }
    if !req.tags.is_empty() {
        return Err(unsupported("tag purge (CloudFront has no cache tags)"));
    }
    if !req.hosts.is_empty() {
        return Err(unsupported("host purge"));
    }
    let mut paths: Vec<String> = req.urls.iter().map(|u| url_path(u)).collect();
    for p in &req.prefixes {
        let path = url_path(p);
        paths.push(if path.ends_with('*') {
            path
        } else {
            format!("{path}*")
        });
    }
    paths.sort();
    paths.dedup();
    Ok(paths)
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
pub(crate) fn invalidation_batch_xml(paths: &[String], caller_reference: &str) -> String {
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

/// Where and when a SigV4 signature applies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SigningScope<'a> {
    pub(crate) region: &'a str,
    pub(crate) service: &'a str,
    pub(crate) time: SystemTime,
}

/// SigV4 headers (`x-amz-date`, `authorization`, and `x-amz-security-token` with a session
/// token) for one request. `headers` must include `host`.
pub(crate) fn sigv4_headers(
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
        "cachefront-origin",
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

/// CloudFront's error code from an `ErrorResponse` body, if any.
fn error_code(body: &str) -> Option<&str> {
    let start = body.find("<Code>")? + "<Code>".len();
    let len = body[start..].find("</Code>")?;
    Some(&body[start..start + len])
}

impl PurgeProvider for CloudFrontPurge {
    fn name(&self) -> &'static str {
        "cloudfront"
    }
    fn max_batch(&self) -> usize {
        self.max_batch
    }
    fn mixed_kinds(&self) -> bool {
        false
    }
    fn send<'a>(
        &'a self,
        http: &'a reqwest::Client,
        req: &'a PurgeRequest,
    ) -> BoxFuture<'a, Result<(), PurgeError>> {
        Box::pin(async move {
            let paths = invalidation_paths(req)?;
            if paths.is_empty() {
                return Ok(());
            }
            let now = SystemTime::now();
            let millis = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
            // Unique per call: a reused reference with the same paths would make CloudFront
            // answer with the earlier invalidation instead of starting a new one.
            let reference = format!(
                "cachefront-{millis}-{}",
                self.sequence.fetch_add(1, Ordering::Relaxed)
            );
            let body = invalidation_batch_xml(&paths, &reference);
            let url = format!(
                "{}/{API_VERSION}/distribution/{}/invalidation",
                self.api_base, self.distribution_id
            );
            let parsed = reqwest::Url::parse(&url).map_err(|e| PurgeError::Rejected {
                status: 0,
                message: format!("bad CloudFront URL {url:?}: {e}"),
            })?;
            let host = match (parsed.host_str(), parsed.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_owned(),
                (None, _) => String::new(),
            };
            let content_type = "text/xml";
            let signed = sigv4_headers(
                &self.credentials,
                SigningScope {
                    region: SIGNING_REGION,
                    service: SIGNING_SERVICE,
                    time: now,
                },
                "POST",
                &url,
                &[("host", &host), ("content-type", content_type)],
                body.as_bytes(),
            )
            .map_err(|message| PurgeError::Rejected { status: 0, message })?;
            let mut call = http
                .post(parsed)
                .header("host", &host)
                .header("content-type", content_type);
            for (k, v) in &signed {
                call = call.header(k.as_str(), v.as_str());
            }
            let res = call
                .body(body)
                .send()
                .await
                .map_err(|e| PurgeError::Retryable {
                    status: None,
                    retry_after: None,
                    message: e.to_string(),
                })?;
            let status = res.status().as_u16();
            let retry_after = res
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(std::time::Duration::from_secs);
            let text = res.text().await.unwrap_or_default();
            if (200..300).contains(&status) {
                tracing::debug!(target: "cachefront_origin::purge", provider = "cloudfront", paths = paths.len(), "invalidation created");
                return Ok(());
            }
            let message: String = text.chars().take(512).collect();
            let throttled = matches!(
                error_code(&text),
                Some("TooManyInvalidationsInProgress" | "Throttling")
            );
            if throttled || status == 429 || status == 408 || status >= 500 {
                Err(PurgeError::Retryable {
                    status: Some(status),
                    retry_after,
                    message,
                })
            } else {
                Err(PurgeError::Rejected { status, message })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
        let req = PurgeRequest {
            urls: vec![
                "https://shop.example/products/1?page=2".into(),
                "https://shop.example".into(),
            ],
            prefixes: vec!["shop.example/blog/".into(), "/img/".into()],
            ..Default::default()
        };
        assert_eq!(
            invalidation_paths(&req),
            Ok(vec![
                "/".to_owned(),
                "/blog/*".to_owned(),
                "/img/*".to_owned(),
                "/products/1".to_owned()
            ])
        );
        let all = PurgeRequest {
            everything: true,
            ..Default::default()
        };
        assert_eq!(invalidation_paths(&all), Ok(vec!["/*".to_owned()]));
        let tags = PurgeRequest {
            tags: vec!["product:1".into()],
            ..Default::default()
        };
        assert!(matches!(
            invalidation_paths(&tags),
            Err(PurgeError::Unsupported { .. })
        ));
    }

    #[test]
    fn batch_xml_escapes_paths_and_counts_them() {
        let xml = invalidation_batch_xml(&["/a&b".to_owned(), "/c".to_owned()], "ref-1");
        assert!(xml.contains("<CallerReference>ref-1</CallerReference>"));
        assert!(xml.contains("<Quantity>2</Quantity>"));
        assert!(xml.contains("<Items><Path>/a&amp;b</Path><Path>/c</Path></Items>"));
    }

    #[test]
    fn throttling_codes_are_read_from_the_error_body() {
        let body = "<ErrorResponse><Error><Type>Sender</Type><Code>TooManyInvalidationsInProgress</Code></Error></ErrorResponse>";
        assert_eq!(error_code(body), Some("TooManyInvalidationsInProgress"));
        assert_eq!(error_code("<x/>"), None);
    }
}
