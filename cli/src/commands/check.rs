//! `cachefront check [--config wrangler.toml] [--env NAME] [--json]`: the
//! worker's whole configuration validated offline by the worker's own code
//! ([`cachefront::config::check`]), every problem printed with its path.
//!
//! The variables are read as `wrangler dev` hands them to the worker: the
//! `[vars]` of the file (or `[env.NAME.vars]`: wrangler does not inherit
//! vars from the top level), values that are not strings turned into JSON
//! text as the worker's `read_var` does, then `.dev.vars` (or
//! `.dev.vars.NAME`) beside the file on top. What only this command knows,
//! where a secret was written, adds its own warnings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cachefront::config::{self, ConfigProblem, Severity};
use cachefront::purge::api::{VAR_CF_API_TOKEN, VAR_PURGE_TOKEN};
use clap::Args;

use crate::exit::{fail, report, Failure, EXIT_FAILURE, EXIT_USAGE};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The wrangler configuration file; `.dev.vars` is read beside it.
    #[arg(long, default_value = "wrangler.toml", value_name = "FILE")]
    config: PathBuf,
    /// Check `[env.NAME.vars]` (and `.dev.vars.NAME`) instead of `[vars]`.
    #[arg(long, value_name = "NAME")]
    env: Option<String>,
    /// Print one JSON document instead of lines.
    #[arg(long)]
    json: bool,
}

/// Secrets: set with `wrangler secret put`, never written in the committed file.
const SECRETS: [&str; 3] = [VAR_PURGE_TOKEN, config::VAR_STATE_TOKEN, VAR_CF_API_TOKEN];

/// Where the checked variables came from.
struct Vars {
    /// `[vars]` (or `[env.NAME.vars]`), as the worker sees each value.
    file: BTreeMap<String, String>,
    /// `.dev.vars` (or `.dev.vars.NAME`), when there is one.
    dev: BTreeMap<String, String>,
    /// The file `dev` was read from.
    dev_file: Option<PathBuf>,
}

pub fn run(args: CheckArgs) -> ExitCode {
    let vars = match read_vars(&args.config, args.env.as_deref()) {
        Ok(vars) => vars,
        Err(failure) => return report(Err(failure)),
    };
    let problems = problems(&vars);
    let errors = count(&problems, Severity::Error);
    let warnings = count(&problems, Severity::Warning);
    let notes = notes(&vars);
    let name = args.config.display().to_string();
    if args.json {
        println!(
            "{}",
            json_report(&name, args.env.as_deref(), &problems, &notes)
        );
    } else {
        for problem in &problems {
            let word = match problem.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            println!("{word}: {}: {}", problem.path, problem.message);
        }
        for (path, message) in &notes {
            println!("note: {path}: {message}");
        }
        let env = args
            .env
            .as_deref()
            .map(|e| format!(" [env.{e}]"))
            .unwrap_or_default();
        let dev = vars
            .dev_file
            .as_ref()
            .map(|f| format!(" + {}", f.display()))
            .unwrap_or_default();
        println!(
            "{name}{env}{dev}: {errors} error{}, {warnings} warning{}",
            plural(errors),
            plural(warnings)
        );
    }
    if errors > 0 {
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn count(problems: &[ConfigProblem], severity: Severity) -> usize {
    problems.iter().filter(|p| p.severity == severity).count()
}

/// The worker's problems with these variables, then the secrets written in
/// the committed file.
fn problems(vars: &Vars) -> Vec<ConfigProblem> {
    let mut found =
        config::check(|name| vars.dev.get(name).or_else(|| vars.file.get(name)).cloned());
    for secret in SECRETS {
        if vars.file.contains_key(secret) {
            found.push(ConfigProblem {
                severity: Severity::Warning,
                path: secret.to_owned(),
                message: format!(
                    "is a secret written in the configuration file, which is committed: \
                     remove it there and set it with `wrangler secret put {secret}` \
                     (locally: in .dev.vars)"
                ),
            });
        }
    }
    // Errors first, so that they are not lost among warnings.
    found.sort_by_key(|p| p.severity != Severity::Error);
    found
}

/// What may well be right but cannot be seen from here.
fn notes(vars: &Vars) -> Vec<(String, String)> {
    let mut notes = Vec::new();
    if !vars.file.contains_key(VAR_PURGE_TOKEN) && !vars.dev.contains_key(VAR_PURGE_TOKEN) {
        notes.push((
            VAR_PURGE_TOKEN.to_owned(),
            "is set neither in the vars nor in .dev.vars: unless the deployed worker has it \
             (set it with `wrangler secret put PURGE_TOKEN`), the purge, health and state \
             endpoints stay off"
                .to_owned(),
        ));
    }
    notes
}

fn json_report(
    name: &str,
    env: Option<&str>,
    problems: &[ConfigProblem],
    notes: &[(String, String)],
) -> String {
    let listed: Vec<serde_json::Value> = problems
        .iter()
        .map(|p| {
            serde_json::json!({
                "severity": match p.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                },
                "path": p.path,
                "message": p.message,
            })
        })
        .chain(notes.iter().map(|(path, message)| {
            serde_json::json!({ "severity": "note", "path": path, "message": message })
        }))
        .collect();
    serde_json::json!({
        "config": name,
        "env": env,
        "errors": count(problems, Severity::Error),
        "warnings": count(problems, Severity::Warning),
        "problems": listed,
    })
    .to_string()
}

fn read_vars(path: &Path, env: Option<&str>) -> Result<Vars, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(EXIT_USAGE, format!("cannot read {}: {e}", path.display())))?;
    let document: toml::Table = toml::from_str(&text).map_err(|e| {
        fail(
            EXIT_FAILURE,
            format!("{} is not valid TOML: {e}", path.display()),
        )
    })?;
    let section = match env {
        None => document.get("vars"),
        Some(name) => {
            let environment = document
                .get("env")
                .and_then(|envs| envs.get(name))
                .ok_or_else(|| {
                    fail(
                        EXIT_USAGE,
                        format!("{} has no [env.{name}] section", path.display()),
                    )
                })?;
            environment.get("vars")
        }
    };
    let file = match section {
        None => BTreeMap::new(),
        Some(toml::Value::Table(table)) => table
            .iter()
            .map(|(name, value)| (name.clone(), worker_text(value)))
            .collect(),
        Some(_) => {
            return Err(fail(
                EXIT_FAILURE,
                format!("{}: vars must be a table", path.display()),
            ))
        }
    };
    let dir = path.parent().unwrap_or(Path::new(""));
    // Like wrangler: `.dev.vars.NAME` alone when it exists, else `.dev.vars`.
    let dev_file = env
        .map(|name| dir.join(format!(".dev.vars.{name}")))
        .filter(|f| f.is_file())
        .or_else(|| Some(dir.join(".dev.vars")).filter(|f| f.is_file()));
    let dev = match &dev_file {
        None => BTreeMap::new(),
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| fail(EXIT_USAGE, format!("cannot read {}: {e}", f.display())))?;
            dev_vars(&text)
        }
    };
    Ok(Vars {
        file,
        dev,
        dev_file,
    })
}

/// A var as the worker reads it: strings as they are, anything else as the
/// JSON text `JSON.stringify` makes of it.
fn worker_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => text.clone(),
        other => as_json(other).to_string(),
    }
}

fn as_json(value: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        // JavaScript has one number type: 2.0 is written 2.
        toml::Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => J::from(f.round() as i64),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(items) => J::Array(items.iter().map(as_json).collect()),
        toml::Value::Table(table) => {
            J::Object(table.iter().map(|(k, v)| (k.clone(), as_json(v))).collect())
        }
    }
}

/// `.dev.vars` in dotenv syntax: `KEY=value` lines, `#` comments, an
/// optional `export `, values optionally in quotes (`\n` is a line break
/// inside double quotes).
fn dev_vars(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() {
            continue;
        }
        let value = value.trim();
        let quoted = ['"', '\'', '`'].into_iter().find_map(|q| {
            let rest = value.strip_prefix(q)?;
            let end = rest.rfind(q)?;
            Some((q, &rest[..end]))
        });
        let value = match quoted {
            Some(('"', inner)) => inner.replace("\\n", "\n"),
            Some((_, inner)) => inner.to_owned(),
            None => value
                .split_once(" #")
                .map_or(value, |(before, _)| before)
                .trim_end()
                .to_owned(),
        };
        vars.insert(key.to_owned(), value);
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_values_reach_the_check_as_the_worker_reads_them() {
        let table: toml::Table = toml::from_str(
            r#"
            TEXT = "as is"
            BYTES = 1024
            WHOLE = 2.0
            ON = true
            ORIGINS = [{ name = "a", url = "http://x" }]
            "#,
        )
        .expect("toml");
        let text = |k: &str| worker_text(&table[k]);
        assert_eq!(text("TEXT"), "as is");
        assert_eq!(text("BYTES"), "1024");
        assert_eq!(text("WHOLE"), "2");
        assert_eq!(text("ON"), "true");
        assert_eq!(text("ORIGINS"), r#"[{"name":"a","url":"http://x"}]"#);
    }

    #[test]
    fn dev_vars_lines_are_read_as_dotenv_does() {
        let vars = dev_vars(
            "# secrets\nPURGE_TOKEN=abc # local\nexport STATE_TOKEN = \"s p\"\n\nQ='#x'\nbroken line\n",
        );
        assert_eq!(vars["PURGE_TOKEN"], "abc");
        assert_eq!(vars["STATE_TOKEN"], "s p");
        assert_eq!(vars["Q"], "#x");
        assert_eq!(vars.len(), 3);
    }
}
