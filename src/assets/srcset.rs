//! `srcset` values: a comma-separated list of `URL [descriptor]` candidates.
//! Parsed loosely (as browsers do) so each URL can be mapped on its own while
//! descriptors and separators pass through.

/// Rewrites each candidate URL for which `map` returns a new one; the rest of
/// the value is kept byte for byte.
pub fn rewrite_srcset(value: &str, mut map: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(value.len() + 32);
    let mut rest = value;
    loop {
        // Leading whitespace and commas separate candidates.
        let skipped = rest
            .find(|c: char| !(c.is_ascii_whitespace() || c == ','))
            .unwrap_or(rest.len());
        out.push_str(&rest[..skipped]);
        rest = &rest[skipped..];
        if rest.is_empty() {
            return out;
        }
        // The URL runs to the next whitespace; a trailing comma ends it too.
        let url_end = rest
            .find(|c: char| c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        let mut url = &rest[..url_end];
        let mut after_url = url_end;
        while url.len() > 1 && url.ends_with(',') {
            url = &url[..url.len() - 1];
            after_url -= 1;
        }
        match map(url) {
            Some(mapped) => out.push_str(&mapped),
            None => out.push_str(url),
        }
        rest = &rest[after_url..];
        // The descriptor runs to the next comma (descriptors never contain one).
        let descriptor_end = rest.find(',').unwrap_or(rest.len());
        out.push_str(&rest[..descriptor_end]);
        rest = &rest[descriptor_end..];
    }
}

/// The candidate URLs of a `srcset`, in order.
pub fn srcset_urls(value: &str) -> Vec<String> {
    let mut urls = Vec::new();
    rewrite_srcset(value, |url| {
        urls.push(url.to_owned());
        None
    });
    urls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_candidate_is_mapped_and_descriptors_are_kept() {
        let value = "/a.png 400w, /b.png 800w,c.png 2x ,  d.png";
        let out = rewrite_srcset(value, |url| Some(format!("{url}!")));
        assert_eq!(out, "/a.png! 400w, /b.png! 800w,c.png! 2x ,  d.png!");
        assert_eq!(
            srcset_urls(value),
            vec!["/a.png", "/b.png", "c.png", "d.png"]
        );
    }

    #[test]
    fn a_comma_glued_to_a_url_ends_it() {
        assert_eq!(srcset_urls("a.png,b.png 2x"), vec!["a.png,b.png"]);
        assert_eq!(srcset_urls("a.png, b.png"), vec!["a.png", "b.png"]);
        assert_eq!(srcset_urls("a.png,, b.png"), vec!["a.png", "b.png"]);
        assert_eq!(srcset_urls(""), Vec::<String>::new());
    }
}
