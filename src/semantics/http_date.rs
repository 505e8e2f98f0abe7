//! HTTP dates (RFC 9110 §5.6.7) as whole seconds since the Unix epoch. No clock
//! is read here: callers pass the time they mean.

use std::time::{Duration, UNIX_EPOCH};

/// Parses an HTTP date in any of the three formats RFC 9110 requires a
/// recipient to accept; `None` for anything else.
pub fn parse_secs(text: &str) -> Option<u64> {
    let time = httpdate::parse_http_date(text.trim()).ok()?;
    time.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// Formats seconds since the epoch as an IMF-fixdate.
pub fn format_secs(secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_three_formats_parse_to_the_same_instant() {
        let expected = Some(784_111_777);
        assert_eq!(parse_secs("Sun, 06 Nov 1994 08:49:37 GMT"), expected);
        assert_eq!(parse_secs("Sunday, 06-Nov-94 08:49:37 GMT"), expected);
        assert_eq!(parse_secs("Sun Nov  6 08:49:37 1994"), expected);
    }

    #[test]
    fn garbage_is_not_a_date() {
        assert_eq!(parse_secs("0"), None);
        assert_eq!(parse_secs("yesterday"), None);
    }

    #[test]
    fn formatting_round_trips() {
        assert_eq!(format_secs(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_secs(&format_secs(1_790_000_000)), Some(1_790_000_000));
    }
}
