//! SQL fingerprints: a statement with its literals and bind parameters replaced by `?`,
//! `IN (…)` lists, `ARRAY[…]` literals and repeated `VALUES` rows collapsed to one element,
//! and whitespace and keyword case normalized, so every execution of "the same query" maps
//! to one [`SqlFingerprint`].
//!
//! Statements are parsed with `sqlparser` (PostgreSQL dialect) and rewritten on the syntax
//! tree. Text the parser does not accept (vendor syntax it lacks) falls back to the same
//! dialect's tokenizer, which still replaces literal tokens; no regular expression ever
//! looks at SQL.

use std::fmt;
use std::ops::ControlFlow;

use sqlparser::ast::{Expr, Query, SetExpr, Value, VisitMut, VisitorMut};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

/// The placeholder every literal and bind parameter becomes.
const PLACEHOLDER: &str = "?";

/// The normalized form of a statement and a stable 64-bit hash of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SqlFingerprint {
    normalized: String,
    hash: u64,
    parsed: bool,
}

impl SqlFingerprint {
    /// Fingerprint `sql`. Never fails: unparseable text is normalized token by token.
    pub fn of(sql: &str) -> Self {
        let (normalized, parsed) = match normalize_parsed(sql) {
            Some(text) => (text, true),
            None => (normalize_tokens(sql), false),
        };
        let hash = fnv1a_64(normalized.as_bytes());
        Self {
            normalized,
            hash,
            parsed,
        }
    }

    /// The statement with literals replaced by `?`, e.g.
    /// `SELECT id, name FROM categories WHERE id = ?`.
    pub fn normalized(&self) -> &str {
        &self.normalized
    }

    /// The fingerprint as 16 lowercase hex digits (FNV-1a of [`Self::normalized`]); stable
    /// across processes and releases, so it can be put in an allow-list.
    pub fn id(&self) -> String {
        format!("{:016x}", self.hash)
    }

    /// The 64-bit hash behind [`Self::id`].
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Whether the SQL parser accepted the statement (`false`: token-level fallback).
    pub fn parsed(&self) -> bool {
        self.parsed
    }
}

impl fmt::Display for SqlFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.id(), self.normalized)
    }
}

/// Parse, rewrite the tree, print it back. `None` when the parser refuses the text.
fn normalize_parsed(sql: &str) -> Option<String> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    if statements.is_empty() {
        return None;
    }
    let mut rewriter = LiteralRewriter;
    for statement in &mut statements {
        let _ = statement.visit(&mut rewriter);
    }
    Some(
        statements
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// Replaces values with `?` and collapses lists of them (post-order, so children are
/// already rewritten when their list is looked at).
struct LiteralRewriter;

impl VisitorMut for LiteralRewriter {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::Value(v) => {
                v.value = Value::Placeholder(PLACEHOLDER.to_owned());
            }
            Expr::InList { list, .. } => collapse_placeholders(list),
            Expr::Array(array) => collapse_placeholders(&mut array.elem),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Values(values) = query.body.as_mut() {
            // `VALUES (?, ?), (?, ?), …` with every row alike is one row, whatever the batch size.
            if let Some(first) = values.rows.first() {
                if values.rows.iter().all(|row| row == first) {
                    values.rows.truncate(1);
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// A list made only of placeholders becomes a single placeholder.
fn collapse_placeholders(list: &mut Vec<Expr>) {
    let only_placeholders = !list.is_empty()
        && list
            .iter()
            .all(|e| matches!(e, Expr::Value(v) if matches!(v.value, Value::Placeholder(_))));
    if only_placeholders {
        list.truncate(1);
    }
}

/// Token-level fallback: literal tokens become `?`, whitespace and comments one space,
/// keywords and identifiers keep their text (unquoted words upper-cased).
fn normalize_tokens(sql: &str) -> String {
    let dialect = PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        // Not even tokenizable (e.g. an unterminated string): only whitespace is normalized.
        return sql.split_whitespace().collect::<Vec<_>>().join(" ");
    };
    let mut out = String::with_capacity(sql.len());
    let mut pending_space = false;
    for token in tokens {
        let piece = match &token {
            Token::Whitespace(Whitespace::Space | Whitespace::Tab | Whitespace::Newline)
            | Token::Whitespace(_) => {
                pending_space = true;
                continue;
            }
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::DollarQuotedString(_)
            | Token::Placeholder(_) => PLACEHOLDER.to_owned(),
            Token::Word(w) if w.quote_style.is_none() => w.value.to_uppercase(),
            other => other.to_string(),
        };
        if pending_space && !out.is_empty() {
            out.push(' ');
        }
        pending_space = false;
        out.push_str(&piece);
    }
    out
}

/// 64-bit FNV-1a: tiny, and (unlike `std`'s hasher) the same in every build.
fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(sql: &str) -> SqlFingerprint {
        SqlFingerprint::of(sql)
    }

    #[test]
    fn literals_and_bind_parameters_normalize_to_the_same_fingerprint() {
        let a = fp("SELECT id, name FROM categories WHERE id = 7");
        let b = fp("SELECT id, name FROM categories WHERE id = $1");
        let c = fp("select id, name from categories where id = 123456");
        assert!(a.parsed());
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(
            a.normalized(),
            "SELECT id, name FROM categories WHERE id = ?"
        );
    }

    #[test]
    fn string_literals_normalize() {
        assert_eq!(
            fp("SELECT * FROM users WHERE email = 'a@example.com'"),
            fp("SELECT * FROM users WHERE email = 'someone.else@example.org'")
        );
    }

    #[test]
    fn whitespace_and_comments_do_not_change_the_fingerprint() {
        assert_eq!(
            fp("SELECT id\n  FROM products\n\tWHERE price > 10"),
            fp("SELECT id FROM products /* hot path */ WHERE price > 99 -- trailing")
        );
    }

    #[test]
    fn in_lists_of_any_length_collapse() {
        let one = fp("SELECT * FROM products WHERE id IN (1)");
        let many = fp("SELECT * FROM products WHERE id IN (1, 2, 3, 4, 5)");
        let params = fp("SELECT * FROM products WHERE id IN ($1, $2, $3)");
        assert_eq!(one, many);
        assert_eq!(one, params);
        assert_eq!(one.normalized(), "SELECT * FROM products WHERE id IN (?)");
    }

    #[test]
    fn array_literals_collapse() {
        assert_eq!(
            fp("SELECT * FROM products WHERE id = ANY(ARRAY[1, 2, 3])"),
            fp("SELECT * FROM products WHERE id = ANY(ARRAY[9])")
        );
    }

    #[test]
    fn multi_row_inserts_collapse() {
        assert_eq!(
            fp("INSERT INTO tags (a, b) VALUES (1, 'x'), (2, 'y'), (3, 'z')"),
            fp("INSERT INTO tags (a, b) VALUES ($1, $2)")
        );
    }

    #[test]
    fn different_tables_have_different_fingerprints() {
        assert_ne!(
            fp("SELECT id FROM products WHERE id = 1"),
            fp("SELECT id FROM categories WHERE id = 1")
        );
    }

    #[test]
    fn different_columns_have_different_fingerprints() {
        assert_ne!(
            fp("SELECT id FROM products WHERE id = 1"),
            fp("SELECT id FROM products WHERE category_id = 1")
        );
    }

    #[test]
    fn unparseable_sql_still_normalizes_literals() {
        let a = fp("FROBNICATE products WITH 42 AND 'x'");
        let b = fp("frobnicate   products with 7 and 'yy'");
        assert!(!a.parsed());
        assert_eq!(a, b);
        assert_eq!(a.normalized(), "FROBNICATE PRODUCTS WITH ? AND ?");
    }

    #[test]
    fn id_is_sixteen_hex_digits_and_stable() {
        let f = fp("SELECT 1");
        assert_eq!(f.id().len(), 16);
        assert_eq!(f.id(), fp("select 2").id());
        // FNV-1a reference value: the fingerprint must not change between builds.
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
