use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::*;

fn rules(json: &str) -> CacheRules {
    parse(json, &["web", "api"], &["utm_*".to_owned()]).expect("valid rules")
}

fn problems(json: &str) -> Vec<String> {
    parse(json, &["web", "api"], &[])
        .expect_err("invalid rules")
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn request<'a>(
    method: &'a Method,
    path: &'a str,
    query: &'a str,
    headers: &'a HeaderMap,
) -> RuleRequest<'a> {
    RuleRequest {
        method,
        host: "shop.example",
        path,
        query,
        headers,
    }
}

fn label_for(rules: &CacheRules, path: &str) -> Option<String> {
    let headers = HeaderMap::new();
    rules
        .evaluate(&request(&Method::GET, path, "", &headers))
        .map(|m| m.label.to_string())
}

#[test]
fn the_first_matching_rule_applies() {
    let r = rules(
        r#"[{"name":"cart","match":{"path":"/cart/**"},"cache":"bypass"},
            {"name":"all","match":{"path":"/**"},"cache":"everything"},
            {"name":"never","match":{"path":"/cart/x"},"cache":"everything"}]"#,
    );
    assert_eq!(label_for(&r, "/cart/x").as_deref(), Some("cart"));
    assert_eq!(label_for(&r, "/blog/x").as_deref(), Some("all"));
    let matched = r
        .evaluate(&request(&Method::GET, "/cart/1", "", &HeaderMap::new()))
        .expect("matched");
    assert_eq!(matched.action.cache_mode(), CacheMode::Bypass);
}

#[test]
fn continue_layers_fields_and_adds_tags() {
    let r = rules(
        r#"[{"name":"base","continue":true,"tags":["site"],"stale_if_error":600,"cache":"everything"},
            {"name":"blog","match":{"path":"/blog/**"},"tags":["blog"],"edge_ttl":{"mode":"override","seconds":3600}}]"#,
    );
    let headers = HeaderMap::new();
    let m = r
        .evaluate(&request(&Method::GET, "/blog/a", "", &headers))
        .expect("matched");
    assert_eq!(&*m.label, "base,blog");
    assert_eq!(m.action.tags, vec!["site".to_owned(), "blog".to_owned()]);
    assert_eq!(m.action.stale_if_error, Some(600));
    assert_eq!(m.action.cache_mode(), CacheMode::Everything);
    assert_eq!(
        m.action.edge_ttl.as_ref().and_then(|t| t.seconds),
        Some(3600)
    );
    // Only the layered rule applies elsewhere.
    let m = r
        .evaluate(&request(&Method::GET, "/shop", "", &headers))
        .expect("matched");
    assert_eq!(&*m.label, "base");
}

#[test]
fn every_condition_must_hold() {
    let r = rules(
        r#"[{"name":"c","match":{"host":"shop.example","methods":["get"],"extensions":["CSS"],
              "query":{"present":["v"],"absent":["debug"]},"header":{"accept":"text/*"},"cookie":["ab"]}}]"#,
    );
    let mut headers = HeaderMap::new();
    headers.insert("accept", HeaderValue::from_static("text/css"));
    headers.insert("cookie", HeaderValue::from_static("x=1; ab=2"));
    let get = Method::GET;
    assert!(r
        .evaluate(&request(&get, "/a/site.css", "v=1", &headers))
        .is_some());
    assert!(
        r.evaluate(&request(&get, "/a/site.css", "v=1&debug", &headers))
            .is_none(),
        "absent param present"
    );
    assert!(
        r.evaluate(&request(&get, "/a/site.css", "x=1", &headers))
            .is_none(),
        "present param missing"
    );
    assert!(
        r.evaluate(&request(&get, "/a/site.js", "v=1", &headers))
            .is_none(),
        "extension"
    );
    assert!(
        r.evaluate(&request(&Method::POST, "/a/site.css", "v=1", &headers))
            .is_none(),
        "method"
    );
    let mut other = headers.clone();
    other.insert("cookie", HeaderValue::from_static("abc=1"));
    assert!(
        r.evaluate(&request(&get, "/a/site.css", "v=1", &other))
            .is_none(),
        "cookie name is exact"
    );
    other = headers.clone();
    other.insert("accept", HeaderValue::from_static("application/json"));
    assert!(
        r.evaluate(&request(&get, "/a/site.css", "v=1", &other))
            .is_none(),
        "header glob"
    );
}

#[test]
fn problems_name_the_rule_and_the_field() {
    let found = problems(
        r#"[{"name":"ok"},{"name":"blog","edge_ttl":{"mode":"forever"}},{"cache":"sometimes"},{"colour":"red"}]"#,
    );
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found[0].starts_with("CACHE_RULES[1] (blog).edge_ttl.mode: unknown variant `forever`"),
        "{found:?}"
    );
    assert!(
        found[1].starts_with("CACHE_RULES[2].cache: unknown variant `sometimes`"),
        "{found:?}"
    );
    assert!(
        found[2].starts_with("CACHE_RULES[3].colour: unknown field `colour`"),
        "{found:?}"
    );
}

#[test]
fn values_of_the_wrong_shape_are_named_by_their_field() {
    let found = problems(
        r#"[{"match":{"path":5}},
            {"match":{"path":["/a",7],"host":"x"}},
            {"cache_key":{"query":{}}},
            {"cache_key":{"query":5,"device":true}},
            {"match":{"host":{"x":1}}},
            {"edge_ttl":{"seconds":5}},
            {"cache_key":{"query":{"include":["q"],"colour":1}}}]"#,
    );
    let expect = [
        "CACHE_RULES[0].match.path: invalid type: integer `5`, expected a string or a list of strings",
        "CACHE_RULES[1].match.path[1]: invalid type: integer `7`, expected a string",
        "CACHE_RULES[2].cache_key.query: expected \"all\", \"none\", { include = [...] } or { exclude = [...] }",
        "CACHE_RULES[3].cache_key.query: invalid type: integer `5`, expected \"all\", \"none\", { include = [...] } or { exclude = [...] }",
        "CACHE_RULES[4].match.host: invalid type: map, expected a string or a list of strings",
        "CACHE_RULES[5].edge_ttl: missing field `mode`",
    ];
    assert_eq!(found, expect);
}

#[test]
fn semantic_problems_are_found_too() {
    let found = problems(
        r#"[{"match":{"path":"blog/*"}},
            {"edge_ttl":{"mode":"override"}},
            {"edge_ttl":{"mode":"minimum","seconds":60,"status":{"6xx":1,"40":5}}},
            {"origin":["web","nowhere"]},
            {"override_private":true},
            {"cache":"bypass","edge_ttl":{"mode":"override","seconds":5}},
            {"tags":["url:x"]},
            {"response_headers":{"set":{"content-length":"5"}}},
            {"adaptive_ttl":{"min":100,"max":10}},
            {"cache_key":{"query":"some","headers":["cookie"]}},
            {"name":"dup"},{"name":"dup"},
            {"browser_ttl":{"mode":"bypass","seconds":5}}]"#,
    );
    let expect = [
        "CACHE_RULES[0].match.path[0]",
        "CACHE_RULES[1].edge_ttl.seconds",
        "CACHE_RULES[2].edge_ttl.status.40",
        "CACHE_RULES[2].edge_ttl.status.6xx",
        "CACHE_RULES[3].origin",
        "CACHE_RULES[4].override_private",
        "CACHE_RULES[5].edge_ttl",
        "CACHE_RULES[6].tags[0]",
        "CACHE_RULES[7].response_headers.set.content-length",
        "CACHE_RULES[8].adaptive_ttl",
        "CACHE_RULES[9].cache_key.query",
        "CACHE_RULES[9].cache_key.headers[0]",
        "CACHE_RULES[11] (dup).name",
        "CACHE_RULES[12].browser_ttl.seconds",
    ];
    for path in expect {
        assert!(
            found.iter().any(|p| p.starts_with(&format!("{path}:"))),
            "{path} not in {found:#?}"
        );
    }
    assert_eq!(found.len(), expect.len(), "{found:#?}");
}

#[test]
fn a_rule_behind_a_catch_all_is_a_warning() {
    let r =
        rules(r#"[{"name":"all","match":{"path":"/**"}},{"name":"late","match":{"path":"/x"}}]"#);
    let w = warnings(&r);
    assert_eq!(w.len(), 1);
    assert!(
        w[0].to_string()
            .starts_with("CACHE_RULES[1] (late): can never match"),
        "{w:?}"
    );
    let layered = rules(r#"[{"continue":true},{"name":"late","match":{"path":"/x"}}]"#);
    assert!(
        warnings(&layered).is_empty(),
        "a continue rule hides nothing"
    );
}

fn origin(lifetime_secs: u64, explicit: bool) -> OriginFreshness {
    OriginFreshness {
        lifetime_secs,
        explicit,
    }
}

fn action(json: &str) -> RuleAction {
    (*rules(&format!("[{json}]")).rules[0].action).clone()
}

#[test]
fn edge_ttl_modes_give_lifetimes() {
    let ok = StatusCode::OK;
    let over =
        action(r#"{"edge_ttl":{"mode":"override","seconds":3600,"status":{"404":60,"5xx":5}}}"#);
    assert_eq!(
        over.edge_terms(ok, origin(60, true), None, false)
            .lifetime_secs,
        Some(3600)
    );
    assert_eq!(
        over.edge_terms(StatusCode::NOT_FOUND, origin(0, false), None, false)
            .lifetime_secs,
        Some(60)
    );
    assert_eq!(
        over.edge_terms(
            StatusCode::SERVICE_UNAVAILABLE,
            origin(0, false),
            None,
            false
        )
        .lifetime_secs,
        Some(5)
    );
    assert_eq!(
        over.edge_terms(StatusCode::FORBIDDEN, origin(0, false), None, false)
            .lifetime_secs,
        None,
        "other 4xx only through the status map"
    );
    let min = action(r#"{"edge_ttl":{"mode":"minimum","seconds":600}}"#);
    assert_eq!(
        min.edge_terms(ok, origin(60, true), None, false)
            .lifetime_secs,
        Some(600)
    );
    assert_eq!(
        min.edge_terms(ok, origin(6000, true), None, false)
            .lifetime_secs,
        Some(6000)
    );
    let respect = action(r#"{"edge_ttl":{"mode":"respect_origin"}}"#);
    assert_eq!(
        respect
            .edge_terms(ok, origin(60, true), None, false)
            .lifetime_secs,
        None
    );
}

#[test]
fn a_server_error_is_stored_only_when_its_status_is_named() {
    let over = action(r#"{"cache":"everything","edge_ttl":{"mode":"override","seconds":3600}}"#);
    assert_eq!(
        over.edge_terms(StatusCode::BAD_GATEWAY, origin(0, false), None, false)
            .lifetime_secs,
        None
    );
    let named = action(r#"{"edge_ttl":{"mode":"respect_origin","status":{"502":10}}}"#);
    assert_eq!(
        named
            .edge_terms(StatusCode::BAD_GATEWAY, origin(0, false), None, false)
            .lifetime_secs,
        Some(10)
    );
}

#[test]
fn everything_gives_defaults_only_without_origin_freshness() {
    let all = action(r#"{"cache":"everything"}"#);
    assert_eq!(
        all.edge_terms(StatusCode::OK, origin(0, false), None, false)
            .lifetime_secs,
        Some(7200)
    );
    assert_eq!(
        all.edge_terms(StatusCode::NOT_FOUND, origin(0, false), None, false)
            .lifetime_secs,
        Some(180)
    );
    assert_eq!(
        all.edge_terms(StatusCode::OK, origin(60, true), None, false)
            .lifetime_secs,
        None
    );
    assert_eq!(
        all.edge_terms(StatusCode::IM_A_TEAPOT, origin(0, false), None, false)
            .lifetime_secs,
        None
    );
}

#[test]
fn adaptive_lifetime_doubles_while_unchanged_and_resets_on_change() {
    let a = Adaptive { min: 60, max: 300 };
    assert_eq!(next_adaptive(a, None, true), (60, 0));
    assert_eq!(next_adaptive(a, Some((60, 0)), true), (120, 1));
    assert_eq!(next_adaptive(a, Some((240, 2)), true), (300, 3));
    assert_eq!(next_adaptive(a, Some((300, 3)), false), (60, 0));
    let all = action(r#"{"cache":"everything","adaptive_ttl":{"min":60,"max":300}}"#);
    assert_eq!(
        all.edge_terms(StatusCode::OK, origin(0, false), Some(240), false)
            .lifetime_secs,
        Some(240)
    );
}

#[test]
fn query_key_choices_become_filters() {
    let global = vec!["utm_*".to_owned()];
    let f = |json: &str| action(json).query_filter(&global).drops("utm_source=x");
    assert!(f("{}"), "the global list by default");
    assert!(!f(r#"{"cache_key":{"query":"all"}}"#), "all means all");
    assert!(f(r#"{"cache_key":{"query":"none"}}"#));
    assert!(f(r#"{"cache_key":{"query":{"include":["q"]}}}"#));
    let exclude = action(r#"{"cache_key":{"query":{"exclude":["sid"]}}}"#);
    assert!(exclude.query_filter(&global).drops("sid=1"));
    assert!(
        exclude.query_filter(&global).drops("utm_x=1"),
        "exclude adds to the global list"
    );
    assert!(!exclude.query_filter(&global).drops("q=1"));
}

#[test]
fn key_members_hold_keyed_fields_cookies_device_and_country() {
    let a = action(
        r#"{"cache_key":{"headers":["Accept-Language"],"cookies":["lang"],"device":true,"country":true}}"#,
    );
    let mut headers = HeaderMap::new();
    headers.insert("accept-language", HeaderValue::from_static("de"));
    headers.insert(
        "cookie",
        HeaderValue::from_static("session=secret; lang=de"),
    );
    headers.insert(
        "user-agent",
        HeaderValue::from_static("Mozilla/5.0 (iPhone) Mobile"),
    );
    let members = a.key_members(&headers, Some("ch"));
    assert_eq!(
        members,
        vec![
            ("accept-language".to_owned(), "de".to_owned()),
            (":cookie:lang".to_owned(), "de".to_owned()),
            (":device".to_owned(), "mobile".to_owned()),
            (":country".to_owned(), "CH".to_owned()),
        ]
    );
    assert_eq!(
        a.forwarded_cookie(&headers),
        Some(HeaderValue::from_static("lang=de")),
        "the session cookie stays at the edge"
    );
    assert!(a.names_cookies());
    assert!(!action("{}").names_cookies());
}

#[test]
fn browser_ttl_never_lengthens_a_private_answer() {
    let over = action(r#"{"browser_ttl":{"mode":"override","seconds":60}}"#);
    let mut headers = HeaderMap::new();
    headers.insert(
        "cache-control",
        HeaderValue::from_static("public, max-age=3600"),
    );
    over.edit_client_headers(&mut headers);
    assert_eq!(headers["cache-control"], "max-age=60");
    headers.insert(
        "cache-control",
        HeaderValue::from_static("private, max-age=5"),
    );
    over.edit_client_headers(&mut headers);
    assert_eq!(headers["cache-control"], "private, max-age=5");
    let bypass = action(r#"{"browser_ttl":{"mode":"bypass"}}"#);
    bypass.edit_client_headers(&mut headers);
    assert_eq!(headers["cache-control"], "no-store");
}

#[test]
fn response_header_edits_apply() {
    let a = action(
        r#"{"response_headers":{"set":{"X-Frame-Options":"DENY"},"remove":["x-powered-by"]}}"#,
    );
    let mut headers = HeaderMap::new();
    headers.insert("x-powered-by", HeaderValue::from_static("php"));
    a.edit_client_headers(&mut headers);
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(!headers.contains_key("x-powered-by"));
}

#[test]
fn toml_tables_arrive_as_json_and_parse_the_same() {
    // wrangler hands `[[vars.CACHE_RULES]]` tables to the worker as JSON data.
    let r = rules(
        r#"[{"name":"static","match":{"path":["/static/**","/assets/**"]},"cache_key":{"query":"none"},"origin":"api"}]"#,
    );
    assert_eq!(label_for(&r, "/assets/a.css").as_deref(), Some("static"));
    assert_eq!(r.rules[0].action.origins, Some(vec![1]));
}
