//! The subset of the Workers Analytics Engine SQL API's grammar the stand-in
//! accepts, written from Cloudflare's reference ("SQL Reference",
//! "Statements", "Functions" of Analytics Engine), not from the exporter's
//! query: one `SELECT … FROM <dataset> [WHERE …] [GROUP BY …] [ORDER BY …]
//! [LIMIT n] [FORMAT JSON|JSONEachRow|TabSeparated]` statement over the
//! dataset's documented columns (`timestamp`, `_sample_interval`, `index1`,
//! `blob1`–`blob20`, `double1`–`double20`) and aliases it defines, with the
//! documented functions only. What Cloudflare would reject is an `Err`.

use std::collections::BTreeSet;

const FUNCTIONS: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "quantileweighted",
    "quantileexactweighted",
    "if",
    "todatetime",
    "tostartofinterval",
    "now",
    "intdiv",
    "tounixtimestamp",
    "tostartofminute",
    "tostartofhour",
    "tostartofday",
    "position",
    "lower",
    "upper",
    "length",
    "substring",
    "concat",
    "round",
    "floor",
    "ceil",
    "abs",
];
const KEYWORDS: &[&str] = &[
    "select", "from", "where", "group", "by", "order", "limit", "format", "as", "and", "or", "not",
    "in", "asc", "desc", "interval", "second", "minute", "hour", "day", "is", "null",
];

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Number,
    Str,
    Sym(String),
}

fn tokens(sql: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            if i == chars.len() {
                return Err("unterminated string literal".into());
            }
            i += 1;
            out.push(Token::Str);
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            out.push(Token::Number);
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Word(chars[start..i].iter().collect()));
        } else if "(),*+-/=<>".contains(c) {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if [">=", "<=", "!=", "<>"].contains(&two.as_str()) {
                out.push(Token::Sym(two));
                i += 2;
            } else {
                out.push(Token::Sym(c.to_string()));
                i += 1;
            }
        } else if c == '!' && chars.get(i + 1) == Some(&'=') {
            out.push(Token::Sym("!=".into()));
            i += 2;
        } else {
            return Err(format!("character {c:?} is not in the SQL subset"));
        }
    }
    Ok(out)
}

fn is_column(word: &str) -> bool {
    let numbered = |prefix: &str, max: u32| {
        word.strip_prefix(prefix)
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=max).contains(&n))
    };
    matches!(word, "timestamp" | "_sample_interval" | "index1")
        || numbered("blob", 20)
        || numbered("double", 20)
}

/// Checks one query; `dataset` is the table it must read.
pub fn check(sql: &str, dataset: &str) -> Result<(), String> {
    let toks = tokens(sql)?;
    let word = |t: &Token| match t {
        Token::Word(w) => Some(w.to_ascii_lowercase()),
        _ => None,
    };
    let clause_at = |kw: &str| toks.iter().position(|t| word(t).as_deref() == Some(kw));
    if clause_at("select") != Some(0) {
        return Err("a query starts with SELECT".into());
    }
    let from = clause_at("from").ok_or("no FROM")?;
    match toks.get(from + 1) {
        Some(Token::Word(table)) if table == dataset => {}
        other => {
            return Err(format!(
                "FROM must name the dataset {dataset}, got {other:?}"
            ))
        }
    }
    // Clause order as documented.
    let order: Vec<usize> = ["where", "group", "order", "limit", "format"]
        .iter()
        .filter_map(|kw| clause_at(kw))
        .collect();
    if order.windows(2).any(|w| w[0] > w[1]) || order.first().is_some_and(|&f| f < from) {
        return Err("clauses out of the documented order".into());
    }
    if let Some(at) = clause_at("format") {
        match toks.get(at + 1).and_then(word).as_deref() {
            Some("json" | "jsoneachrow" | "tabseparated") if toks.len() == at + 2 => {}
            _ => return Err("FORMAT takes JSON, JSONEachRow or TabSeparated, last".into()),
        }
    }
    // Aliases defined in the select list.
    let aliases: BTreeSet<String> = toks
        .windows(2)
        .filter(|w| word(&w[0]).as_deref() == Some("as"))
        .filter_map(|w| word(&w[1]))
        .collect();
    let mut depth = 0i32;
    for (i, t) in toks.iter().enumerate() {
        match t {
            Token::Sym(s) if s == "(" => depth += 1,
            Token::Sym(s) if s == ")" => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced parentheses".into());
                }
            }
            Token::Word(w) => {
                let lower = w.to_ascii_lowercase();
                let called = matches!(toks.get(i + 1), Some(Token::Sym(s)) if s == "(");
                if called {
                    if !FUNCTIONS.contains(&lower.as_str()) {
                        return Err(format!("function {w} is not documented"));
                    }
                } else if !(KEYWORDS.contains(&lower.as_str())
                    || is_column(w)
                    || aliases.contains(&lower)
                    || (i == from + 1)
                    || lower == "json"
                    || lower == "jsoneachrow"
                    || lower == "tabseparated")
                {
                    return Err(format!(
                        "{w} is neither a column of the dataset nor an alias"
                    ));
                }
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    Ok(())
}

#[test]
fn the_grammar_subset_refuses_what_cloudflare_would() {
    let ok = "SELECT blob1 AS cache, SUM(_sample_interval) AS n FROM ds WHERE timestamp >= toDateTime(1) GROUP BY cache FORMAT JSON";
    assert_eq!(check(ok, "ds"), Ok(()));
    for bad in [
        "SELECT blob21 FROM ds",
        "SELECT blob1 FROM other",
        "SELECT sumIf(double1, 1) FROM ds",
        "SELECT blob1 FROM ds; DROP TABLE ds",
        "SELECT \"blob1\" FROM ds",
        "SELECT blob1 FROM ds FORMAT CSV",
        "SELECT blob1 FROM ds GROUP BY blob1 WHERE timestamp > 0",
        "SELECT SUM(double1 FROM ds",
        "SELECT nonsense FROM ds",
    ] {
        assert!(check(bad, "ds").is_err(), "{bad}");
    }
}
