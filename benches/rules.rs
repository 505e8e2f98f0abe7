//! What cache rules cost a hit, natively: the whole pipeline serving a
//! memory-tier HIT (in-memory platform) without rules, and with 50 rules of
//! which only the last matches, so every rule is evaluated. The workerd
//! measurement of the same is `node benches/cache-hit/rules.mjs`.
//! Run: `cargo bench -p cachefront --bench rules`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{reply, Harness};
use criterion::{criterion_group, criterion_main, Criterion};

/// 49 rules the bench request does not match, then one it does (the same
/// mix as benches/cache-hit/rules.mjs).
fn rules(n: usize) -> String {
    let mut list = Vec::new();
    for i in 0..n - 1 {
        list.push(match i % 5 {
            0 => format!(r#"{{"name":"section-{i}","match":{{"path":"/section-{i}/**"}},"cache":"everything","edge_ttl":{{"mode":"override","seconds":600}}}}"#),
            1 => format!(r#"{{"name":"assets-{i}","match":{{"path":"/assets-{i}/**/*.css","extensions":["css","js"]}},"cache_key":{{"query":"none"}}}}"#),
            2 => format!(r#"{{"name":"api-{i}","match":{{"path":"/api/**","header":{{"x-tenant":"tenant-{i}"}}}},"cache":"bypass"}}"#),
            3 => format!(r#"{{"name":"search-{i}","match":{{"path":"/search-{i}","query":{{"present":["q"]}}}},"cache_key":{{"query":{{"include":["q"]}}}}}}"#),
            _ => format!(r#"{{"name":"members-{i}","match":{{"path":"/members/**","cookie":["member-{i}"]}},"cache":"bypass"}}"#),
        });
    }
    list.push(r#"{"name":"bench","match":{"path":"/bench/**","methods":["GET","HEAD"]},"cache":"standard","tags":["bench"]}"#.to_owned());
    format!("[{}]", list.join(","))
}

fn bench(c: &mut Criterion) {
    let origin = |_: &http::Request<cachefront::Body>, _| {
        reply(
            200,
            &[
                ("content-type", "text/plain"),
                ("cache-control", "public, max-age=600"),
            ],
            &"x".repeat(2048),
        )
    };
    let plain = Harness::with_vars(&[("REQUEST_LOG", "off")], origin);
    let rules50 = rules(50);
    let ruled = Harness::with_vars(&[("REQUEST_LOG", "off"), ("CACHE_RULES", &rules50)], origin);
    let rules1 = rules(1);
    let one = Harness::with_vars(&[("REQUEST_LOG", "off"), ("CACHE_RULES", &rules1)], origin);
    for h in [&plain, &ruled, &one] {
        h.get("/bench/hit");
        assert!(common::status_of(&h.get("/bench/hit")).contains("hit"));
    }
    let mut group = c.benchmark_group("memory_hit");
    group.bench_function("no_rules", |b| {
        b.iter(|| plain.get("/bench/hit").response.status())
    });
    group.bench_function("1_rule", |b| {
        b.iter(|| one.get("/bench/hit").response.status())
    });
    group.bench_function("50_rules", |b| {
        b.iter(|| ruled.get("/bench/hit").response.status())
    });
    group.finish();

    // Matching alone, without the pipeline around it.
    let compiled = cachefront::rules::parse(&rules50, &["primary"], &[]).expect("valid rules");
    let headers = http::HeaderMap::new();
    let request = cachefront::rules::RuleRequest {
        method: &http::Method::GET,
        host: "shop.example",
        path: "/bench/hit",
        query: "",
        headers: &headers,
    };
    c.bench_function("evaluate_50_rules", |b| {
        b.iter(|| compiled.evaluate(std::hint::black_box(&request)).is_some())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
