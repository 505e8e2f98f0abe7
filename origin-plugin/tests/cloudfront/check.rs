//! The stand-in's judgement of one CreateInvalidation request, independent of the code
//! under test: the documented shape (method, path, XML `InvalidationBatch`) and the SigV4
//! signature recomputed from the bytes received with its own HMAC-SHA256, so a header
//! changed after signing, or a wrong scope, is caught. Pure (http types and sha2 only):
//! the origin plugin's async stand-in and the CLI's blocking one both include it.
#![allow(dead_code)]

use sha2::{Digest, Sha256};

pub const ACCESS_KEY: &str = "AKIDEXAMPLE";
pub const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
pub const DISTRIBUTION: &str = "EDFDVBD6EXAMPLE";

/// One invalidation the stand-in accepted as well-formed.
#[derive(Debug, Clone)]
pub struct Invalidation {
    pub caller_reference: String,
    pub paths: Vec<String>,
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let len = s[start..].find(close)?;
    Some(&s[start..start + len])
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

pub fn check(
    method: &http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Invalidation, String> {
    let want_path = format!("/2020-05-31/distribution/{DISTRIBUTION}/invalidation");
    if method != http::Method::POST || uri.path() != want_path {
        return Err(format!("unexpected {method} {}", uri.path()));
    }
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if !h("content-type").is_some_and(|c| c.contains("xml")) {
        return Err("content-type must be XML".into());
    }
    verify_sigv4(method.as_str(), uri, headers, body)?;

    let xml = std::str::from_utf8(body).map_err(|_| "body is not UTF-8")?;
    if !xml
        .contains("<InvalidationBatch xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\">")
    {
        return Err("root must be InvalidationBatch in the 2020-05-31 namespace".into());
    }
    let caller_reference = between(xml, "<CallerReference>", "</CallerReference>")
        .filter(|r| !r.is_empty())
        .ok_or("CallerReference missing or empty")?
        .to_owned();
    let paths_xml = between(xml, "<Paths>", "</Paths>").ok_or("Paths missing")?;
    let quantity: usize = between(paths_xml, "<Quantity>", "</Quantity>")
        .and_then(|q| q.parse().ok())
        .ok_or("Paths/Quantity missing or not a number")?;
    let items = between(paths_xml, "<Items>", "</Items>").ok_or("Paths/Items missing")?;
    let paths: Vec<String> = items
        .split("</Path>")
        .filter(|s| !s.is_empty())
        .map(|s| s.strip_prefix("<Path>").map(unescape))
        .collect::<Option<_>>()
        .ok_or("Items must hold only Path elements")?;
    if paths.len() != quantity || quantity == 0 {
        return Err(format!(
            "Quantity {quantity} but {} Path items",
            paths.len()
        ));
    }
    if let Some(bad) = paths.iter().find(|p| !p.starts_with('/')) {
        return Err(format!("path {bad:?} must start with '/'"));
    }
    Ok(Invalidation {
        caller_reference,
        paths,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// Recompute the signature of what was received and compare.
fn verify_sigv4(
    method: &str,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("Authorization missing")?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("Authorization must use AWS4-HMAC-SHA256")?;
    let field = |name: &str| {
        rest.split(", ")
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .ok_or(format!("Authorization lacks {name}"))
    };
    let credential = field("Credential")?;
    let signed_headers = field("SignedHeaders")?;
    let signature = field("Signature")?;
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or("x-amz-date missing")?;
    let date = amz_date.get(..8).ok_or("x-amz-date malformed")?;
    let scope = format!("{date}/us-east-1/cloudfront/aws4_request");
    if credential != format!("{ACCESS_KEY}/{scope}") {
        return Err(format!(
            "credential scope {credential:?}, want {ACCESS_KEY}/{scope}"
        ));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    for required in ["content-type", "host", "x-amz-date"] {
        if !names.contains(&required) {
            return Err(format!("{required} is not signed ({signed_headers})"));
        }
    }
    let mut canonical_headers = String::new();
    for name in &names {
        let value = headers
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .ok_or(format!("signed header {name} not sent"))?;
        canonical_headers.push_str(&format!("{name}:{}\n", value.trim()));
    }
    let canonical = format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        uri.path(),
        uri.query().unwrap_or(""),
        hex(&Sha256::digest(body))
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{SECRET_KEY}").as_bytes(), date.as_bytes());
    for part in ["us-east-1", "cloudfront", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let want = hex(&hmac(&key, string_to_sign.as_bytes()));
    if want != signature {
        return Err("signature does not match the request received".into());
    }
    Ok(())
}
