//! One queued purge item: its kind, and the check that normalizes it the way the edge will.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Tag,
    Url,
    Prefix,
    Host,
    Everything,
}

impl Kind {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Kind::Tag => "tag",
            Kind::Url => "url",
            Kind::Prefix => "prefix",
            Kind::Host => "host",
            Kind::Everything => "everything",
        }
    }
}

/// Check and normalize one item the way the edge will, so one bad item never makes the
/// edge refuse a batch.
pub(super) fn validate(kind: Kind, value: String) -> Result<String, &'static str> {
    let v = value.trim();
    match kind {
        Kind::Everything => Ok(String::new()),
        Kind::Tag => crate::tag_rules::normalize_tag(v, &crate::tag_rules::TagLimits::default())
            .map_err(crate::tag_rules::TagRejection::as_str),
        Kind::Url => {
            let ok = v.len() <= 4096
                && (v.starts_with("https://") || v.starts_with("http://"))
                && v.split("://")
                    .nth(1)
                    .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
                && v.bytes().all(|b| b.is_ascii_graphic());
            if ok {
                Ok(v.to_owned())
            } else {
                Err("url must be an absolute http(s) URL of at most 4096 bytes")
            }
        }
        Kind::Prefix => {
            let ok = !v.is_empty() && v.len() <= 1024 && v.bytes().all(|b| b.is_ascii_graphic());
            if ok {
                Ok(v.to_owned())
            } else {
                Err("prefix must be printable ASCII, at most 1024 bytes")
            }
        }
        Kind::Host => {
            let host = v.to_ascii_lowercase();
            let ok = !host.is_empty()
                && host.len() <= 253
                && host.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                });
            if ok {
                Ok(host)
            } else {
                Err("host must be a host name such as www.example.com")
            }
        }
    }
}
