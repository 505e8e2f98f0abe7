//! Our own Prometheus text exposition turned into the JSON of `/metrics.json`.

/// Turn our own Prometheus text exposition into a JSON document.
pub(super) fn exposition_to_json(text: &str) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let mut families: Vec<(String, Map<String, Value>)> = Vec::new();
    fn family<'a>(
        families: &'a mut Vec<(String, Map<String, Value>)>,
        name: &str,
    ) -> &'a mut Map<String, Value> {
        let idx = match families.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                let mut m = Map::new();
                m.insert("name".into(), json!(name));
                m.insert("samples".into(), json!([]));
                families.push((name.to_owned(), m));
                families.len() - 1
            }
        };
        &mut families[idx].1
    }
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some((name, help)) = rest.split_once(' ') {
                family(&mut families, name).insert("help".into(), json!(help));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                family(&mut families, name).insert("type".into(), json!(kind));
                current = Some(name.to_owned());
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let Some((series, labels, value)) = parse_sample(line) else {
            continue;
        };
        // Histogram/summary series (`_bucket`, `_sum`, `_count`) belong to the current family.
        let owner = match &current {
            Some(c) if series.starts_with(c.as_str()) => c.clone(),
            _ => series.clone(),
        };
        let fam = family(&mut families, &owner);
        let mut sample = Map::new();
        if series != owner {
            sample.insert("series".into(), json!(series));
        }
        sample.insert("labels".into(), Value::Object(labels));
        sample.insert(
            "value".into(),
            serde_json::Number::from_f64(value)
                .map(Value::Number)
                .unwrap_or_else(|| json!(value.to_string())),
        );
        if let Some(Value::Array(samples)) = fam.get_mut("samples") {
            samples.push(Value::Object(sample));
        }
    }
    json!({ "metrics": families.into_iter().map(|(_, m)| Value::Object(m)).collect::<Vec<_>>() })
}

/// Parse `name{a="x",b="y"} 1.5` into its parts.
fn parse_sample(line: &str) -> Option<(String, serde_json::Map<String, serde_json::Value>, f64)> {
    let mut labels = serde_json::Map::new();
    let (name, rest) = match line.find('{') {
        Some(open) => {
            let name = &line[..open];
            let mut chars = line[open + 1..].char_indices().peekable();
            let base = open + 1;
            let mut end = None;
            loop {
                // label name
                let mut key = String::new();
                loop {
                    match chars.next() {
                        Some((i, '}')) => {
                            end = Some(base + i + 1);
                            break;
                        }
                        Some((_, '=')) => break,
                        Some((_, ',')) | Some((_, ' ')) => continue,
                        Some((_, c)) => key.push(c),
                        None => return None,
                    }
                }
                if end.is_some() {
                    break;
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return None;
                }
                let mut value = String::new();
                loop {
                    match chars.next()? {
                        (_, '\\') => match chars.next()?.1 {
                            'n' => value.push('\n'),
                            c => value.push(c),
                        },
                        (_, '"') => break,
                        (_, c) => value.push(c),
                    }
                }
                labels.insert(key, serde_json::Value::String(value));
            }
            (name, &line[end?..])
        }
        None => line.split_once(' ')?,
    };
    let value_str = rest.split_whitespace().next()?;
    let value = match value_str {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name.to_owned(), labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_with_escaped_labels_parses() {
        let (name, labels, value) =
            parse_sample(r#"x_total{route="/a\"b",method="GET"} 3"#).expect("parses");
        assert_eq!(name, "x_total");
        assert_eq!(labels["route"], "/a\"b");
        assert_eq!(labels["method"], "GET");
        assert_eq!(value, 3.0);
    }

    #[test]
    fn sample_without_labels_parses() {
        let (name, labels, value) = parse_sample("up 1").expect("parses");
        assert_eq!((name.as_str(), labels.len(), value), ("up", 0, 1.0));
    }

    #[test]
    fn bucket_lines_belong_to_their_histogram() {
        let text = "# HELP d_seconds help\n# TYPE d_seconds histogram\nd_seconds_bucket{le=\"+Inf\"} 2\nd_seconds_sum 0.5\nd_seconds_count 2\n";
        let json = exposition_to_json(text);
        let fam = &json["metrics"][0];
        assert_eq!(fam["name"], "d_seconds");
        assert_eq!(fam["type"], "histogram");
        assert_eq!(fam["samples"].as_array().map(Vec::len), Some(3));
    }
}
