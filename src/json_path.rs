//! Where in a JSON text serde_json gave up, as a path (`tags[3].key`).
//!
//! serde_json reports the line and column at which it found a data error
//! (a field of the wrong type, an unknown field, a missing one). [`locate`]
//! walks the text up to that place and names the value it was reading, so
//! `CACHE_RULES` and state import errors say where the problem is without a
//! path-tracking wrapper around every deserializer (which doubled them in the
//! wasm: docs/assets.md, "Worker size").
//!
//! The place serde_json reports is just after what it last read: after a
//! key (unknown field), after a value (wrong type or value), or after the
//! `}` of an object that lacks a field (missing field). Read up to there, the
//! open objects and arrays with their current key or index are the path.

/// One step of a path.
enum Step {
    Key(String),
    Index(usize),
}

/// An object or array open at the reported place.
struct Open {
    step: Option<Step>,
    /// Within an object, the next string is a key.
    expects_key: bool,
}

/// The path (empty: the whole text) and serde's message without its
/// ` at line L column C` suffix, for an error `serde_json::from_slice(text)`
/// returned.
pub(crate) fn locate(text: &[u8], error: &serde_json::Error) -> (String, String) {
    let message = error.to_string();
    let message = match message.rfind(" at line ") {
        Some(cut) if error.line() > 0 => message[..cut].to_owned(),
        _ => message,
    };
    (
        path_at(text, offset(text, error.line(), error.column())),
        message,
    )
}

/// The byte offset of a 1-based line and the bytes before it on that line
/// (serde_json's column for slices).
fn offset(text: &[u8], line: usize, column: usize) -> usize {
    let start = if line <= 1 {
        0
    } else {
        text.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(line - 2)
            .map_or(text.len(), |(i, _)| i + 1)
    };
    start.saturating_add(column).min(text.len())
}

/// The path of the value being read at byte `end` of `text`.
fn path_at(text: &[u8], end: usize) -> String {
    let mut open: Vec<Open> = Vec::new();
    let mut i = 0;
    while i < end {
        match text[i] {
            b'"' => {
                let mut close = i + 1;
                while close < text.len() && text[close] != b'"' {
                    close += if text[close] == b'\\' { 2 } else { 1 };
                }
                if let Some(object) = open.last_mut().filter(|o| o.expects_key) {
                    let key = text.get(i + 1..close).unwrap_or_default();
                    object.step = Some(Step::Key(String::from_utf8_lossy(key).into_owned()));
                    object.expects_key = false;
                }
                i = close;
            }
            b'{' => open.push(Open {
                step: None,
                expects_key: true,
            }),
            b'[' => open.push(Open {
                step: Some(Step::Index(0)),
                expects_key: false,
            }),
            b'}' | b']' => {
                open.pop();
            }
            b',' => {
                if let Some(container) = open.last_mut() {
                    match &mut container.step {
                        Some(Step::Index(index)) => *index += 1,
                        _ => container.expects_key = true,
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    let mut path = String::new();
    for step in open.iter().filter_map(|o| o.step.as_ref()) {
        match step {
            Step::Key(key) if path.is_empty() => path.push_str(key),
            Step::Key(key) => {
                path.push('.');
                path.push_str(key);
            }
            Step::Index(index) => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Entry {
        key: String,
        n: u64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        entries: Vec<Entry>,
        #[serde(default)]
        names: Vec<Vec<String>>,
    }

    fn where_(text: &str) -> (String, String) {
        let error = serde_json::from_slice::<Doc>(text.as_bytes()).expect_err(text);
        locate(text.as_bytes(), &error)
    }

    #[test]
    fn data_errors_are_named_by_the_value_serde_json_was_reading() {
        let cases = [
            (
                r#"{"entries":[{"key":"a","n":1},{"key":"b","n":-1}]}"#,
                "entries[1].n",
            ),
            (
                r#"{"entries":[{"key":"a","n":1,"colour":"red"}]}"#,
                "entries[0].colour",
            ),
            (r#"{"entries":[{"key":"a"}]}"#, "entries[0]"),
            (
                r#"{"entries":[{"n":1,"key":"x"} , {"key":"b"}  ]}"#,
                "entries[1]",
            ),
            (r#"{"entries":5}"#, "entries"),
            (r#"{"entries":{"key":"a"}}"#, "entries"),
            (
                r#"{"entries":[],"names":[["a"],["b",{"c":1}]]}"#,
                "names[1][1]",
            ),
            (r#"{"entries":[],"extra":{"x":[1,2]}}"#, "extra"),
            (r#"{"names":[]}"#, ""),
            (r#"{"entries":[{"key":"a\"b,{[","n":"1"}]}"#, "entries[0].n"),
            (
                "{\n  \"entries\": [\n    {\"key\": \"a\",\n     \"n\": true}\n  ]\n}",
                "entries[0].n",
            ),
        ];
        for (text, path) in cases {
            assert_eq!(where_(text).0, path, "{text}");
        }
    }

    #[test]
    fn the_message_is_serdes_without_its_position() {
        let (path, message) = where_(r#"{"entries":[{"key":"a","n":"x"}]}"#);
        assert_eq!(path, "entries[0].n");
        assert_eq!(message, "invalid type: string \"x\", expected u64");
    }
}
