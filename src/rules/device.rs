//! Device classes for `cache_key.device`: `mobile`, `tablet` or `desktop`
//! from `User-Agent`, the three classes Cloudflare's device type uses. The
//! origin is told the class (`CF-Device-Type`) so that it renders for the
//! class the entry is filed under, not for one user's exact browser.

use http::header::{HeaderMap, USER_AGENT};

/// Field the origin receives with the class a request was keyed under.
pub const DEVICE_TYPE_FIELD: &str = "cf-device-type";

/// The device class of a request (`desktop` without a `User-Agent`).
pub fn device_class(headers: &HeaderMap) -> &'static str {
    let Some(agent) = headers.get(USER_AGENT).and_then(|v| v.to_str().ok()) else {
        return "desktop";
    };
    let ua = agent.to_ascii_lowercase();
    let has = |needle: &str| ua.contains(needle);
    if has("ipad")
        || has("tablet")
        || has("kindle")
        || has("silk/")
        || has("playbook")
        || (has("android") && !has("mobile"))
    {
        "tablet"
    } else if has("mobile")
        || has("iphone")
        || has("ipod")
        || has("android")
        || has("blackberry")
        || has("opera mini")
        || has("iemobile")
        || has("windows phone")
    {
        "mobile"
    } else {
        "desktop"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn class(ua: &str) -> &'static str {
        let mut headers = HeaderMap::new();
        headers.insert(USER_AGENT, HeaderValue::from_str(ua).expect("valid"));
        device_class(&headers)
    }

    #[test]
    fn user_agents_fall_into_three_classes() {
        assert_eq!(
            class("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"),
            "mobile"
        );
        assert_eq!(
            class("Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile Safari/537.36"),
            "mobile"
        );
        assert_eq!(
            class("Mozilla/5.0 (Linux; Android 13; SM-X700) Safari/537.36"),
            "tablet"
        );
        assert_eq!(
            class("Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X)"),
            "tablet"
        );
        assert_eq!(
            class("Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"),
            "desktop"
        );
        assert_eq!(device_class(&HeaderMap::new()), "desktop");
    }
}
