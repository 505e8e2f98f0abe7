//! A conservative SVG minifier: drops comments and the whitespace between
//! tags, nothing else. It never touches attributes, so `viewBox`, every `id`
//! (referenced by `url(#…)`, `href="#…"` or `aria-labelledby`) and every
//! path stay as written; text inside `<text>`, `<tspan>`, `<textPath>`,
//! `<title>`, `<desc>`, `<style>` and `<script>` is kept byte for byte, as is
//! anything inside CDATA or a processing instruction.

/// Elements whose text content is meaningful, whitespace included.
const TEXT_ELEMENTS: [&str; 7] = [
    "text", "tspan", "textpath", "title", "desc", "style", "script",
];

/// Minified SVG, or `None` when the input is not UTF-8 or has a construct
/// the scanner does not follow (an unterminated tag or comment): such a file
/// is served as written.
pub fn minify_svg(svg: &[u8]) -> Option<Vec<u8>> {
    let svg = std::str::from_utf8(svg).ok()?;
    let mut out = String::with_capacity(svg.len());
    // Depth inside text elements: whitespace there is content.
    let mut text_depth = 0usize;
    let mut rest = svg;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            push_text(&mut out, rest, text_depth);
            break;
        };
        push_text(&mut out, &rest[..lt], text_depth);
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            let end = after.find("-->")?;
            rest = &after[end + 3..];
        } else if rest.starts_with("<![CDATA[") {
            let end = rest.find("]]>")? + 3;
            out.push_str(&rest[..end]);
            rest = &rest[end..];
        } else if rest.starts_with("<?") || rest.starts_with("<!") {
            let end = rest.find('>')? + 1;
            out.push_str(&rest[..end]);
            rest = &rest[end..];
        } else {
            let end = tag_end(rest)?;
            let tag = &rest[..end];
            out.push_str(tag);
            rest = &rest[end..];
            let closing = tag.starts_with("</");
            let self_closing = tag.ends_with("/>");
            let name: String = tag
                .trim_start_matches("</")
                .trim_start_matches('<')
                .chars()
                .take_while(|c| !c.is_ascii_whitespace() && *c != '>' && *c != '/')
                .collect::<String>()
                .to_ascii_lowercase();
            let local = name.rsplit(':').next().unwrap_or(&name);
            if TEXT_ELEMENTS.contains(&local) {
                if closing {
                    text_depth = text_depth.saturating_sub(1);
                } else if !self_closing {
                    text_depth += 1;
                }
            }
        }
    }
    if !out.ends_with('\n') && svg.ends_with('\n') {
        out.push('\n');
    }
    Some(out.into_bytes())
}

/// Text between tags: dropped when it is only whitespace outside a text
/// element, kept as is otherwise.
fn push_text(out: &mut String, text: &str, text_depth: usize) {
    if text_depth > 0 || !text.trim().is_empty() {
        out.push_str(text);
    }
}

/// Length of the tag at the start of `s`, quotes respected (`>` may appear
/// inside an attribute value).
fn tag_end(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '>' => return Some(i + 1),
            None => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minified(svg: &str) -> String {
        String::from_utf8(minify_svg(svg.as_bytes()).expect("minifiable")).expect("utf-8")
    }

    #[test]
    fn comments_and_whitespace_between_tags_go_viewbox_and_ids_stay() {
        let svg = "<svg viewBox=\"0 0 10 10\" aria-labelledby=\"t\">\n  <title id=\"t\">A  mark</title>\n  <!-- mark -->\n  <defs><linearGradient id=\"g\"/></defs>\n  <path fill=\"url(#g)\" d=\"M0 0 L10 10\"/>\n</svg>\n";
        assert_eq!(
            minified(svg),
            "<svg viewBox=\"0 0 10 10\" aria-labelledby=\"t\"><title id=\"t\">A  mark</title><defs><linearGradient id=\"g\"/></defs><path fill=\"url(#g)\" d=\"M0 0 L10 10\"/></svg>\n"
        );
    }

    #[test]
    fn whitespace_inside_text_elements_and_cdata_is_content() {
        let svg = "<svg><text x=\"1\"> <tspan>a</tspan> <tspan>b</tspan> </text><style><![CDATA[ a > b { } ]]></style></svg>";
        assert_eq!(minified(svg), svg);
    }

    #[test]
    fn a_greater_than_sign_in_an_attribute_does_not_end_the_tag() {
        let svg = "<svg>\n<g data-x=\"a > b\">\n</g>\n</svg>";
        assert_eq!(minified(svg), "<svg><g data-x=\"a > b\"></g></svg>");
    }

    #[test]
    fn unterminated_constructs_and_non_utf8_are_left_alone() {
        assert_eq!(minify_svg(b"<svg><!-- open"), None);
        assert_eq!(minify_svg(b"<svg><path d=\"M0"), None);
        assert_eq!(minify_svg(&[0xff, 0xfe]), None);
    }
}
