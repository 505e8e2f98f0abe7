use super::*;
use http::HeaderValue;

const NOW_MS: u64 = 1_790_000_000_000;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(*k, HeaderValue::from_str(v).expect("header value"));
    }
    map
}

fn settings() -> PolicySettings {
    PolicySettings::default()
}

fn decide_with(
    method: &Method,
    req: &[(&'static str, &str)],
    status: u16,
    resp: &[(&'static str, &str)],
) -> StoreDecision {
    let req_headers = headers(req);
    store_decision(
        RequestFacts {
            method,
            headers: &req_headers,
        },
        StatusCode::from_u16(status).expect("status"),
        &headers(resp),
        Some(10),
        &settings(),
        &EdgeTerms::default(),
    )
}

fn decide(
    req: &[(&'static str, &str)],
    status: u16,
    resp: &[(&'static str, &str)],
) -> StoreDecision {
    decide_with(&Method::GET, req, status, resp)
}

fn store() -> StoreDecision {
    StoreDecision::Store {
        strip_fields: vec![],
    }
}

fn skip(reason: NoStoreReason) -> StoreDecision {
    StoreDecision::Skip(reason)
}

fn date(offset_secs: i64) -> String {
    let secs = (NOW_MS / 1000)
        .checked_add_signed(offset_secs)
        .expect("time");
    http_date::format_secs(secs)
}

fn freshness(resp: &[(&'static str, &str)], age_at_arrival: u64, resident_secs: u64) -> Freshness {
    let h = headers(resp);
    let times = ResponseTimes {
        request_time_ms: NOW_MS,
        response_time_ms: NOW_MS,
    };
    Freshness::of(
        &h,
        age_at_arrival,
        times,
        NOW_MS + resident_secs * 1000,
        &settings(),
    )
}

#[test]
fn explicit_max_age_response_is_stored() {
    assert_eq!(
        decide(&[], 200, &[("cache-control", "max-age=60")]),
        store()
    );
}

#[test]
fn no_store_and_unqualified_private_are_not_stored() {
    assert_eq!(
        decide(&[], 200, &[("cache-control", "no-store, max-age=60")]),
        skip(NoStoreReason::ResponseNoStore)
    );
    assert_eq!(
        decide(&[], 200, &[("cache-control", "private, max-age=60")]),
        skip(NoStoreReason::Private)
    );
}

#[test]
fn qualified_private_stores_without_the_named_fields() {
    assert_eq!(
        decide(
            &[],
            200,
            &[("cache-control", "private=\"x-user\", max-age=60")]
        ),
        StoreDecision::Store {
            strip_fields: vec!["x-user".into()]
        }
    );
}

#[test]
fn set_cookie_is_stored_only_when_the_origin_names_it_for_removal() {
    assert_eq!(
        decide(
            &[],
            200,
            &[("cache-control", "max-age=60"), ("set-cookie", "a=b")]
        ),
        skip(NoStoreReason::SetCookie)
    );
    assert_eq!(
        decide(
            &[],
            200,
            &[
                ("cache-control", "max-age=60, no-cache=\"Set-Cookie\""),
                ("set-cookie", "a=b")
            ]
        ),
        StoreDecision::Store {
            strip_fields: vec!["set-cookie".into()]
        }
    );
}

#[test]
fn vary_star_is_never_stored() {
    assert_eq!(
        decide(
            &[],
            200,
            &[("cache-control", "max-age=60"), ("vary", "accept, *")]
        ),
        skip(NoStoreReason::VaryStar)
    );
}

#[test]
fn a_rule_that_handles_cookies_still_needs_permission_for_authorization() {
    // A rule that keyed (or withheld) the cookies vouches for the Cookie
    // header only: a bearer token still needs the origin's shared permission.
    let decide_handled = |credential: (&'static str, &'static str)| {
        let request = headers(&[credential]);
        store_decision(
            RequestFacts {
                method: &Method::GET,
                headers: &request,
            },
            StatusCode::OK,
            &headers(&[("cache-control", "max-age=60")]),
            Some(10),
            &settings(),
            &EdgeTerms {
                cookies_handled: true,
                ..EdgeTerms::default()
            },
        )
    };
    assert_eq!(decide_handled(("cookie", "lang=de")), store());
    assert_eq!(
        decide_handled(("authorization", "Bearer alice")),
        skip(NoStoreReason::Authorization)
    );
}

#[test]
fn credentialed_requests_are_stored_only_with_explicit_shared_permission() {
    for (credential, reason) in [
        (("authorization", "Bearer x"), NoStoreReason::Authorization),
        (("cookie", "session=abc"), NoStoreReason::Cookie),
    ] {
        let req = [credential];
        for cc in ["max-age=60", "must-revalidate, max-age=60", "public"] {
            assert_eq!(
                decide(&req, 200, &[("cache-control", cc)]),
                skip(reason),
                "{cc}"
            );
        }
        // Validators alone would give heuristic freshness: never for these.
        assert_eq!(
            decide(
                &req,
                200,
                &[("etag", "\"u1\""), ("last-modified", &date(-100_000))]
            ),
            skip(reason)
        );
        for cc in [
            "public, max-age=60",
            "s-maxage=60",
            "public, must-revalidate, max-age=1",
        ] {
            assert_eq!(decide(&req, 200, &[("cache-control", cc)]), store(), "{cc}");
        }
        assert_eq!(
            decide(
                &req,
                200,
                &[
                    ("cdn-cache-control", "max-age=60"),
                    ("cache-control", "private")
                ]
            ),
            store(),
            "a field targeted at this cache is explicit permission"
        );
        assert_eq!(
            decide(
                &req,
                200,
                &[
                    ("cache-control", "public"),
                    ("expires", &date(60)),
                    ("date", &date(0))
                ]
            ),
            store()
        );
    }
}

#[test]
fn anonymous_requests_keep_heuristic_freshness() {
    assert_eq!(
        decide(&[], 200, &[("last-modified", &date(-100_000))]),
        store()
    );
}

#[test]
fn server_errors_are_not_stored_unless_the_operator_asks() {
    for status in [500, 502, 503, 504, 599] {
        assert_eq!(
            decide(&[], status, &[("cache-control", "public, max-age=60")]),
            skip(NoStoreReason::ErrorStatus),
            "{status}"
        );
    }
    let opted_in = PolicySettings {
        store_server_errors: true,
        ..settings()
    };
    let decide_opted = |resp: &[(&'static str, &str)]| {
        store_decision(
            RequestFacts {
                method: &Method::GET,
                headers: &HeaderMap::new(),
            },
            StatusCode::SERVICE_UNAVAILABLE,
            &headers(resp),
            Some(10),
            &opted_in,
            &EdgeTerms::default(),
        )
    };
    assert_eq!(decide_opted(&[("cache-control", "max-age=10")]), store());
    assert_eq!(
        decide_opted(&[("last-modified", &date(-100_000))]),
        skip(NoStoreReason::ErrorStatus),
        "never by heuristic freshness"
    );
}

#[test]
fn a_rule_stores_a_server_error_only_with_a_lifetime_above_zero() {
    // `edge_ttl.status = { "5xx" = 30 }` stores a 503; `"5xx" = 0` is the
    // documented "never store" (docs/cache-rules.md).
    let decide_ruled = |lifetime_secs| {
        store_decision(
            RequestFacts {
                method: &Method::GET,
                headers: &HeaderMap::new(),
            },
            StatusCode::SERVICE_UNAVAILABLE,
            &headers(&[("content-type", "text/html")]),
            Some(10),
            &settings(),
            &EdgeTerms {
                lifetime_secs: Some(lifetime_secs),
                ..EdgeTerms::default()
            },
        )
    };
    assert_eq!(decide_ruled(30), store());
    assert_eq!(decide_ruled(1), store());
    assert_eq!(decide_ruled(0), skip(NoStoreReason::ErrorStatus));
}

#[test]
fn request_no_store_and_non_get_prevent_storing() {
    assert_eq!(
        decide(
            &[("cache-control", "no-store")],
            200,
            &[("cache-control", "max-age=60")]
        ),
        skip(NoStoreReason::RequestNoStore)
    );
    assert_eq!(
        decide_with(&Method::POST, &[], 200, &[("cache-control", "max-age=60")]),
        skip(NoStoreReason::Method)
    );
}

#[test]
fn unknown_final_status_with_explicit_freshness_is_stored() {
    assert_eq!(
        decide(&[], 299, &[("cache-control", "max-age=60")]),
        store()
    );
    // Without explicit freshness an unknown status is not heuristically cacheable.
    assert_eq!(
        decide(
            &[],
            299,
            &[("last-modified", "Thu, 01 Jan 2015 00:00:00 GMT")]
        ),
        skip(NoStoreReason::NoFreshness)
    );
}

#[test]
fn must_understand_overrides_no_store_only_for_known_statuses() {
    let cc = [("cache-control", "max-age=60, no-store, must-understand")];
    assert_eq!(decide(&[], 200, &cc), store());
    assert_eq!(decide(&[], 599, &cc), skip(NoStoreReason::Status));
}

#[test]
fn age_lists_count_by_their_first_member_and_invalid_ages_are_ignored() {
    let age = |lines: &[&'static str]| {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(header::AGE, HeaderValue::from_static(line));
        }
        age_header_secs(&headers)
    };
    assert_eq!(age(&["7200, 0"]), 7200);
    assert_eq!(age(&["0, 7200"]), 0);
    assert_eq!(age(&["7200", "0"]), 7200);
    assert_eq!(age(&["0", "7200"]), 0);
    assert_eq!(age(&["abc"]), 0);
    assert_eq!(age(&["-7200"]), 0);
    assert_eq!(age(&["7200.0"]), 0);
    assert_eq!(age(&["7200;foo=bar"]), 0);
    assert_eq!(age(&["99999999999999999999"]), DELTA_SECONDS_CAP);
}

#[test]
fn invalid_targeted_field_is_ignored_for_cache_control() {
    for cdn in ["max-age=10000, &&&&&", "max-age=\"10000\""] {
        assert_eq!(
            decide(
                &[],
                200,
                &[("cdn-cache-control", cdn), ("cache-control", "no-store")]
            ),
            skip(NoStoreReason::ResponseNoStore),
            "{cdn}"
        );
    }
}

#[test]
fn partial_and_unknown_statuses_are_not_stored() {
    assert_eq!(
        decide(&[], 206, &[("cache-control", "max-age=60")]),
        skip(NoStoreReason::Status)
    );
    assert_eq!(
        decide(
            &[],
            299,
            &[("cache-control", "max-age=60, must-understand")]
        ),
        skip(NoStoreReason::Status)
    );
    assert_eq!(
        decide(&[], 304, &[("cache-control", "max-age=60")]),
        skip(NoStoreReason::Status)
    );
}

#[test]
fn non_heuristic_status_needs_explicit_freshness() {
    assert_eq!(
        decide(&[], 302, &[("last-modified", &date(-1000))]),
        skip(NoStoreReason::NoFreshness)
    );
    assert_eq!(
        decide(&[], 302, &[("cache-control", "max-age=60")]),
        store()
    );
    assert_eq!(
        decide(&[], 307, &[("expires", &date(60)), ("date", &date(0))]),
        store()
    );
}

#[test]
fn heuristically_cacheable_status_with_last_modified_is_stored() {
    assert_eq!(
        decide(
            &[],
            200,
            &[("last-modified", &date(-10_000)), ("date", &date(0))]
        ),
        store()
    );
    assert_eq!(
        decide(&[], 404, &[("last-modified", &date(-10_000))]),
        store()
    );
}

#[test]
fn no_cache_without_validators_is_not_worth_storing() {
    assert_eq!(
        decide(&[], 200, &[("cache-control", "no-cache, max-age=60")]),
        skip(NoStoreReason::NoCache)
    );
    assert_eq!(
        decide(
            &[],
            200,
            &[("cache-control", "no-cache"), ("etag", "\"v1\"")]
        ),
        store()
    );
}

#[test]
fn response_without_freshness_or_validators_is_not_stored() {
    assert_eq!(decide(&[], 200, &[]), skip(NoStoreReason::NoFreshness));
    assert_eq!(
        decide(&[], 200, &[("cache-control", "max-age=0")]),
        skip(NoStoreReason::NoFreshness)
    );
    assert_eq!(
        decide(
            &[],
            200,
            &[("cache-control", "max-age=0"), ("etag", "\"x\"")]
        ),
        store()
    );
}

#[test]
fn oversized_bodies_are_not_stored() {
    let h = headers(&[("cache-control", "max-age=60")]);
    let empty = HeaderMap::new();
    let d = store_decision(
        RequestFacts {
            method: &Method::GET,
            headers: &empty,
        },
        StatusCode::OK,
        &h,
        Some(1 << 40),
        &settings(),
        &EdgeTerms::default(),
    );
    assert_eq!(d, skip(NoStoreReason::TooLarge));
}

#[test]
fn a_body_of_exactly_the_size_limit_is_stored() {
    let h = headers(&[("cache-control", "max-age=60")]);
    let empty = HeaderMap::new();
    let limit = settings().max_object_bytes;
    let decide_len = |len| {
        store_decision(
            RequestFacts {
                method: &Method::GET,
                headers: &empty,
            },
            StatusCode::OK,
            &h,
            Some(len),
            &settings(),
            &EdgeTerms::default(),
        )
    };
    assert_eq!(decide_len(limit), store());
    assert_eq!(decide_len(limit + 1), skip(NoStoreReason::TooLarge));
}

#[test]
fn a_response_varying_on_named_fields_is_stored_and_its_fields_listed_once() {
    assert_eq!(
        decide(
            &[],
            200,
            &[("cache-control", "max-age=60"), ("vary", "Accept-Encoding")]
        ),
        store()
    );
    let h = headers(&[
        ("vary", "Accept, , accept"),
        ("vary", "Accept-Language,ACCEPT"),
    ]);
    assert_eq!(vary_fields(&h), ["accept", "accept-language"]);
}

#[test]
fn an_explicit_lifetime_is_max_age_s_maxage_or_expires_never_a_heuristic() {
    for explicit in [
        &[("cache-control", "max-age=0")][..],
        &[("cache-control", "s-maxage=5")],
        &[("expires", "Thu, 01 Jan 1970 00:00:00 GMT")],
        &[
            ("cdn-cache-control", "max-age=5"),
            ("cache-control", "no-cache"),
        ],
    ] {
        assert!(explicit_lifetime(&headers(explicit)), "{explicit:?}");
    }
    for implicit in [
        &[("last-modified", "Thu, 01 Jan 1970 00:00:00 GMT")][..],
        &[("cache-control", "public")],
        // A targeted field governs alone: Expires does not count beside it.
        &[
            ("cdn-cache-control", "public"),
            ("expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
        ],
    ] {
        assert!(!explicit_lifetime(&headers(implicit)), "{implicit:?}");
    }
}

#[test]
fn targeted_field_overrides_cache_control_for_storing() {
    assert_eq!(
        decide(
            &[],
            200,
            &[
                ("cache-control", "private"),
                ("cdn-cache-control", "max-age=60")
            ]
        ),
        store()
    );
    assert_eq!(
        decide(
            &[],
            200,
            &[
                ("cache-control", "max-age=60"),
                ("cdn-cache-control", "no-store")
            ]
        ),
        skip(NoStoreReason::ResponseNoStore)
    );
    assert_eq!(
        decide(
            &[],
            200,
            &[
                ("cdn-cache-control", "no-store"),
                ("cloudflare-cdn-cache-control", "max-age=60")
            ]
        ),
        store(),
        "the Cloudflare-specific field is the more specific one"
    );
}

#[test]
fn s_maxage_beats_max_age_beats_expires() {
    let s = settings();
    assert_eq!(
        freshness_lifetime(
            &headers(&[("cache-control", "max-age=10, s-maxage=300")]),
            None,
            &s
        ),
        300
    );
    assert_eq!(
        freshness_lifetime(
            &headers(&[
                ("cache-control", "max-age=10"),
                ("expires", &date(500)),
                ("date", &date(0))
            ]),
            None,
            &s
        ),
        10
    );
    assert_eq!(
        freshness_lifetime(
            &headers(&[("expires", &date(500)), ("date", &date(0))]),
            None,
            &s
        ),
        500
    );
}

#[test]
fn a_targeted_field_without_directives_leaves_cache_control_in_charge() {
    // Empty is a valid (empty) dictionary, but says nothing to obey.
    assert_eq!(
        decide(
            &[],
            200,
            &[("cdn-cache-control", ""), ("cache-control", "no-store")]
        ),
        skip(NoStoreReason::ResponseNoStore)
    );
    let h = headers(&[("cdn-cache-control", ""), ("cache-control", "max-age=10")]);
    assert_eq!(freshness_lifetime(&h, None, &settings()), 10);
}

#[test]
fn targeted_freshness_ignores_cache_control_and_expires() {
    let s = settings();
    let h = headers(&[
        ("cache-control", "max-age=10"),
        ("cdn-cache-control", "max-age=600"),
        ("expires", &date(5)),
        ("date", &date(0)),
    ]);
    assert_eq!(freshness_lifetime(&h, None, &s), 600);
}

#[test]
fn invalid_expires_means_already_stale() {
    assert_eq!(
        freshness_lifetime(
            &headers(&[("expires", "0")]),
            Some(NOW_MS / 1000),
            &settings()
        ),
        0
    );
}

#[test]
fn expires_without_date_uses_the_response_time() {
    let h = headers(&[("expires", &date(120))]);
    assert_eq!(
        freshness_lifetime(&h, Some(NOW_MS / 1000), &settings()),
        120
    );
}

#[test]
fn heuristic_freshness_is_a_tenth_of_last_modified_age_capped() {
    let s = settings();
    assert_eq!(
        freshness_lifetime(
            &headers(&[("last-modified", &date(-1000)), ("date", &date(0))]),
            None,
            &s
        ),
        100
    );
    assert_eq!(
        freshness_lifetime(
            &headers(&[("last-modified", &date(-100_000_000)), ("date", &date(0))]),
            None,
            &s
        ),
        86_400
    );
}

#[test]
fn corrected_initial_age_takes_the_larger_of_apparent_and_reported_age() {
    let times = ResponseTimes {
        request_time_ms: NOW_MS - 2_000,
        response_time_ms: NOW_MS,
    };
    // Date 30 s in the past: apparent age 30 beats Age 5 + 2 s delay.
    assert_eq!(
        corrected_initial_age(&headers(&[("date", &date(-30)), ("age", "5")]), times),
        30
    );
    assert_eq!(
        corrected_initial_age(&headers(&[("date", &date(0)), ("age", "50")]), times),
        52
    );
    assert_eq!(
        corrected_initial_age(&headers(&[("age", "junk")]), times),
        2
    );
}

#[test]
fn age_grows_with_residence_time_and_never_goes_negative() {
    assert_eq!(current_age_secs(5, 1_000, 11_999), 15);
    assert_eq!(current_age_secs(0, 5_000, 1_000), 0);
}

#[test]
fn fresh_entries_are_reused_and_stale_ones_revalidated() {
    let rq = RequestDirectives::default();
    assert_eq!(
        reuse(&rq, &freshness(&[("cache-control", "max-age=60")], 0, 59)),
        Reuse::Fresh
    );
    assert_eq!(
        reuse(&rq, &freshness(&[("cache-control", "max-age=60")], 0, 60)),
        Reuse::Revalidate
    );
    assert_eq!(
        reuse(&rq, &freshness(&[("cache-control", "max-age=60")], 30, 30)),
        Reuse::Revalidate
    );
}

#[test]
fn no_cache_response_is_always_revalidated() {
    let rq = RequestDirectives::default();
    assert_eq!(
        reuse(
            &rq,
            &freshness(&[("cache-control", "no-cache, max-age=60")], 0, 0)
        ),
        Reuse::Revalidate
    );
}

#[test]
fn request_max_age_min_fresh_and_no_cache_are_honoured() {
    let f = freshness(&[("cache-control", "max-age=60")], 0, 20);
    let with =
        |h: &[(&'static str, &str)]| reuse(&RequestDirectives::from_headers(&headers(h)), &f);
    assert_eq!(with(&[("cache-control", "max-age=10")]), Reuse::Revalidate);
    assert_eq!(with(&[("cache-control", "max-age=30")]), Reuse::Fresh);
    assert_eq!(
        with(&[("cache-control", "min-fresh=50")]),
        Reuse::Revalidate
    );
    assert_eq!(with(&[("cache-control", "min-fresh=30")]), Reuse::Fresh);
    assert_eq!(with(&[("cache-control", "no-cache")]), Reuse::Revalidate);
    assert_eq!(with(&[("pragma", "no-cache")]), Reuse::Revalidate);
    assert_eq!(
        with(&[("pragma", "no-cache"), ("cache-control", "max-age=60")]),
        Reuse::Fresh
    );
}

#[test]
fn max_stale_accepts_stale_unless_the_origin_requires_revalidation() {
    let stale = freshness(&[("cache-control", "max-age=60")], 0, 90);
    let with = |h: &[(&'static str, &str)], f: &Freshness| {
        reuse(&RequestDirectives::from_headers(&headers(h)), f)
    };
    assert_eq!(
        with(&[("cache-control", "max-stale=60")], &stale),
        Reuse::StaleAccepted
    );
    assert_eq!(
        with(&[("cache-control", "max-stale")], &stale),
        Reuse::StaleAccepted
    );
    assert_eq!(
        with(&[("cache-control", "max-stale=10")], &stale),
        Reuse::Revalidate
    );
    for cc in [
        "max-age=60, must-revalidate",
        "max-age=60, proxy-revalidate",
        "s-maxage=60",
    ] {
        let strict = freshness(&[("cache-control", cc)], 0, 90);
        assert_eq!(
            with(&[("cache-control", "max-stale")], &strict),
            Reuse::Revalidate,
            "{cc}"
        );
    }
}

#[test]
fn stale_while_revalidate_window_serves_stale_then_expires() {
    let rq = RequestDirectives::default();
    let h = [("cache-control", "max-age=60, stale-while-revalidate=30")];
    assert_eq!(
        reuse(&rq, &freshness(&h, 0, 80)),
        Reuse::StaleWhileRevalidate
    );
    assert_eq!(reuse(&rq, &freshness(&h, 0, 100)), Reuse::Revalidate);
    let strict = [(
        "cache-control",
        "max-age=60, stale-while-revalidate=30, must-revalidate",
    )];
    assert_eq!(reuse(&rq, &freshness(&strict, 0, 80)), Reuse::Revalidate);
}

#[test]
fn default_grace_applies_only_without_explicit_revalidation_rules() {
    let s = PolicySettings {
        default_swr_secs: 10,
        default_sie_secs: 20,
        ..settings()
    };
    let times = ResponseTimes {
        request_time_ms: NOW_MS,
        response_time_ms: NOW_MS,
    };
    let plain = Freshness::of(
        &headers(&[("cache-control", "max-age=5")]),
        0,
        times,
        NOW_MS,
        &s,
    );
    assert_eq!((plain.swr_secs, plain.sie_secs), (10, 20));
    let explicit = Freshness::of(
        &headers(&[("cache-control", "max-age=5, stale-if-error=99")]),
        0,
        times,
        NOW_MS,
        &s,
    );
    assert_eq!(explicit.sie_secs, 99);
    let strict = Freshness::of(
        &headers(&[("cache-control", "max-age=5, must-revalidate")]),
        0,
        times,
        NOW_MS,
        &s,
    );
    assert_eq!((strict.swr_secs, strict.sie_secs), (0, 0));
}

#[test]
fn stale_if_error_window_from_response_or_request() {
    let f = freshness(
        &[("cache-control", "max-age=60, stale-if-error=100")],
        0,
        120,
    );
    assert!(may_serve_stale_on_error(&RequestDirectives::default(), &f));
    let too_old = freshness(
        &[("cache-control", "max-age=60, stale-if-error=10")],
        0,
        120,
    );
    assert!(!may_serve_stale_on_error(
        &RequestDirectives::default(),
        &too_old
    ));
    let rq = RequestDirectives::from_headers(&headers(&[("cache-control", "stale-if-error=100")]));
    assert!(may_serve_stale_on_error(&rq, &too_old));
    let plain = freshness(&[("cache-control", "max-age=60")], 0, 120);
    assert!(!may_serve_stale_on_error(
        &RequestDirectives::default(),
        &plain
    ));
}

#[test]
fn only_if_cached_and_malformed_directives_are_read() {
    let rq = RequestDirectives::from_headers(&headers(&[(
        "cache-control",
        "only-if-cached, max-stale=abc",
    )]));
    assert!(rq.only_if_cached);
    assert_eq!(
        rq.max_stale,
        Some(None),
        "an unparsable max-stale accepts any staleness"
    );
}

#[test]
fn retention_covers_freshness_and_stale_windows() {
    let f = freshness(
        &[(
            "cache-control",
            "max-age=60, stale-while-revalidate=30, stale-if-error=300",
        )],
        0,
        0,
    );
    assert_eq!(f.retention_secs(false, 0), 360);
    assert_eq!(f.retention_secs(true, 3600), 3660);
}

fn stale_for(lifetime_secs: u64, age_secs: u64) -> Freshness {
    Freshness {
        lifetime_secs,
        age_secs,
        must_revalidate: false,
        no_cache: false,
        swr_secs: 0,
        sie_secs: 60,
        disconnected_secs: 600,
    }
}

#[test]
fn a_soft_purged_entry_is_stale_however_fresh_it_was() {
    let purged = stale_for(300, 10).soft_purged();
    assert!(!purged.is_fresh());
    assert_eq!(purged.staleness_secs(), 0);
    // Already stale entries keep their age.
    assert_eq!(stale_for(300, 400).soft_purged().age_secs, 400);
}

#[test]
fn a_disconnected_cache_prefers_stale_if_error_then_the_grace() {
    let rq = RequestDirectives::default();
    assert_eq!(
        stale_when_disconnected(&rq, &stale_for(100, 130)),
        Some(StaleOnFailure::IfError)
    );
    assert_eq!(
        stale_when_disconnected(&rq, &stale_for(100, 500)),
        Some(StaleOnFailure::IfDisconnected)
    );
    assert_eq!(stale_when_disconnected(&rq, &stale_for(100, 800)), None);
    assert_eq!(
        StaleOnFailure::IfDisconnected.as_str(),
        "stale-if-disconnected"
    );
}

fn request(cc: &str) -> RequestDirectives {
    RequestDirectives::from_headers(&headers(&[("cache-control", cc)]))
}

fn stored(must_revalidate: bool, no_cache: bool) -> Freshness {
    Freshness {
        lifetime_secs: 10,
        age_secs: 3,
        must_revalidate,
        no_cache,
        swr_secs: 5,
        sie_secs: 6,
        disconnected_secs: 7,
    }
}

#[test]
fn a_rule_lifetime_replaces_the_origins_and_its_revalidation_demands() {
    let terms = EdgeTerms {
        lifetime_secs: Some(600),
        swr_secs: Some(30),
        sie_secs: Some(40),
        ..EdgeTerms::default()
    };
    let expected = Freshness {
        lifetime_secs: 600,
        must_revalidate: false,
        no_cache: false,
        swr_secs: 30,
        sie_secs: 40,
        ..stored(false, false)
    };
    for (must_revalidate, no_cache) in [(true, true), (true, false), (false, true), (false, false)]
    {
        assert_eq!(
            stored(must_revalidate, no_cache).under_terms(&terms),
            expected
        );
    }
}

#[test]
fn rule_stale_windows_never_override_an_origin_that_demands_revalidation() {
    let windows = EdgeTerms {
        swr_secs: Some(30),
        sie_secs: Some(40),
        ..EdgeTerms::default()
    };
    for (must_revalidate, no_cache) in [(true, false), (false, true)] {
        let entry = stored(must_revalidate, no_cache);
        assert_eq!(entry.under_terms(&windows), entry);
    }
    let relaxed = stored(false, false);
    assert_eq!(
        relaxed.under_terms(&windows),
        Freshness {
            swr_secs: 30,
            sie_secs: 40,
            ..relaxed
        }
    );
    assert_eq!(
        stored(true, true).under_terms(&EdgeTerms::default()),
        stored(true, true)
    );
}

#[test]
fn a_request_max_age_accepts_an_entry_exactly_that_old() {
    let f = freshness(&[("cache-control", "max-age=600")], 0, 10);
    assert_eq!(reuse(&request("max-age=10"), &f), Reuse::Fresh);
    assert_eq!(reuse(&request("max-age=9"), &f), Reuse::Revalidate);
}

#[test]
fn min_fresh_or_max_age_0_on_a_stale_entry_always_revalidates() {
    let f = freshness(
        &[("cache-control", "max-age=10, stale-while-revalidate=600")],
        0,
        20,
    );
    assert_eq!(reuse(&request(""), &f), Reuse::StaleWhileRevalidate);
    assert_eq!(reuse(&request("min-fresh=1"), &f), Reuse::Revalidate);
    assert_eq!(
        reuse(&request("max-age=0, max-stale"), &f),
        Reuse::Revalidate
    );
    assert_eq!(reuse(&request("max-stale"), &f), Reuse::StaleAccepted);
}

#[test]
fn an_entry_just_gone_stale_needs_a_stale_if_error_window_to_stand_in() {
    // Age equal to the lifetime: stale by zero seconds.
    let f = freshness(&[("cache-control", "max-age=10")], 0, 10);
    assert!(!f.is_fresh());
    let none = Freshness { sie_secs: 0, ..f };
    assert!(!may_serve_stale_on_error(&request(""), &none));
    assert!(may_serve_stale_on_error(
        &request("stale-if-error=1"),
        &none
    ));
}

#[test]
fn any_revalidation_demand_forbids_the_disconnected_grace() {
    let grace = Freshness {
        sie_secs: 0,
        disconnected_secs: 300,
        ..freshness(&[("cache-control", "max-age=10")], 0, 20)
    };
    assert!(may_serve_stale_when_disconnected(&request(""), &grace));
    for forbidding in [
        Freshness {
            must_revalidate: true,
            ..grace
        },
        Freshness {
            no_cache: true,
            ..grace
        },
    ] {
        assert!(!may_serve_stale_when_disconnected(
            &request(""),
            &forbidding
        ));
    }
    assert!(!may_serve_stale_when_disconnected(
        &request("no-cache"),
        &grace
    ));
    assert!(!may_serve_stale_when_disconnected(
        &request("max-age=600"),
        &grace
    ));
}

#[test]
fn each_revalidation_directive_closes_the_stale_windows_and_the_grace() {
    for cc in ["must-revalidate", "proxy-revalidate", "no-cache"] {
        let f = freshness(
            &[(
                "cache-control",
                &format!("max-age=10, {cc}, stale-while-revalidate=30, stale-if-error=30"),
            )],
            0,
            0,
        );
        assert_eq!((f.swr_secs, f.sie_secs), (0, 0), "{cc}");
    }
    let graced = PolicySettings {
        disconnected_grace_secs: 300,
        ..settings()
    };
    let times = ResponseTimes {
        request_time_ms: NOW_MS,
        response_time_ms: NOW_MS,
    };
    let grace = |cc: &str| {
        let h = headers(&[("cache-control", cc)]);
        Freshness::of(&h, 0, times, NOW_MS, &graced).disconnected_secs
    };
    assert_eq!(grace("max-age=10"), 300);
    for cc in [
        "max-age=10, must-revalidate",
        "max-age=10, no-cache",
        "s-maxage=10",
    ] {
        assert_eq!(grace(cc), 0, "{cc}");
    }
}

#[test]
fn expires_without_date_counts_from_the_response_time_in_seconds() {
    let f = freshness(&[("expires", &date(120))], 0, 0);
    assert_eq!(f.lifetime_secs, 120);
}

#[test]
fn without_a_grace_an_entry_just_gone_stale_is_not_served_disconnected() {
    let f = Freshness {
        sie_secs: 0,
        disconnected_secs: 0,
        ..freshness(&[("cache-control", "max-age=10")], 0, 10)
    };
    assert!(!may_serve_stale_when_disconnected(&request(""), &f));
}

#[test]
fn stale_if_error_covers_the_four_server_error_statuses_only() {
    for status in [500, 502, 503, 504] {
        assert!(
            is_error_status(StatusCode::from_u16(status).expect("status")),
            "{status}"
        );
    }
    for status in [200, 304, 404, 429, 501, 505, 599] {
        assert!(
            !is_error_status(StatusCode::from_u16(status).expect("status")),
            "{status}"
        );
    }
}

#[test]
fn surrogate_control_governs_storing_after_the_targeted_fields() {
    assert_eq!(
        decide(
            &[],
            200,
            &[
                ("cache-control", "no-store"),
                ("surrogate-control", "max-age=600;cachefront")
            ]
        ),
        store(),
        "the origin's instruction to surrogates beats a browser-facing no-store"
    );
    assert_eq!(
        decide(
            &[],
            200,
            &[
                ("cache-control", "max-age=600"),
                ("surrogate-control", "no-store"),
                ("expires", &date(600)),
                ("date", &date(0))
            ]
        ),
        skip(NoStoreReason::ResponseNoStore)
    );
    assert_eq!(
        decide(
            &[],
            200,
            &[
                ("surrogate-control", "no-store"),
                ("cdn-cache-control", "max-age=60")
            ]
        ),
        store(),
        "CDN-Cache-Control (RFC 9213) comes first"
    );
    assert_eq!(
        decide(
            &[],
            200,
            &[
                ("cache-control", "no-store"),
                ("surrogate-control", "max-age=600;another-cdn")
            ]
        ),
        skip(NoStoreReason::ResponseNoStore),
        "directives aimed at another device leave Cache-Control in charge"
    );
}

#[test]
fn surrogate_control_never_shares_a_private_or_credentialed_answer() {
    assert_eq!(
        decide(
            &[],
            200,
            &[
                ("cache-control", "private, max-age=60"),
                ("surrogate-control", "max-age=600")
            ]
        ),
        skip(NoStoreReason::Private)
    );
    assert_eq!(
        decide(
            &[("authorization", "Bearer abc")],
            200,
            &[("surrogate-control", "max-age=600")]
        ),
        skip(NoStoreReason::Authorization)
    );
    assert_eq!(
        decide(
            &[("cookie", "session=1")],
            200,
            &[("surrogate-control", "max-age=600")]
        ),
        skip(NoStoreReason::Cookie)
    );
    assert_eq!(
        decide(
            &[("authorization", "Bearer abc")],
            200,
            &[
                ("cache-control", "public"),
                ("surrogate-control", "max-age=600")
            ]
        ),
        store(),
        "Cache-Control: public is the permission"
    );
    assert_eq!(
        decide(
            &[("authorization", "Bearer abc")],
            200,
            &[("cdn-cache-control", "max-age=600")]
        ),
        store(),
        "a field of RFC 9213 still is"
    );
}

#[test]
fn surrogate_control_freshness_ignores_cache_control_and_expires() {
    let s = settings();
    for (cc, sc, lifetime) in [
        ("max-age=1", "max-age=3600", 3600),
        ("max-age=3600", "max-age=1", 1),
        ("max-age=3600", "max-age=0", 0),
        ("max-age=3600", "max-age =100", 3600),
    ] {
        let h = headers(&[
            ("cache-control", cc),
            ("surrogate-control", sc),
            ("expires", &date(5000)),
            ("date", &date(0)),
        ]);
        assert_eq!(freshness_lifetime(&h, None, &s), lifetime, "{cc} / {sc}");
    }
    let h = headers(&[
        ("surrogate-control", "max-age=3600"),
        ("expires", "0"),
        ("date", &date(0)),
    ]);
    assert_eq!(freshness_lifetime(&h, None, &s), 3600, "an invalid Expires");
    let stale_ok = freshness(&[("surrogate-control", "max-age=60+300")], 0, 0);
    assert_eq!((stale_ok.lifetime_secs, stale_ok.sie_secs), (60, 300));
    let aged = freshness(&[("surrogate-control", "max-age=3600")], 12_000, 0);
    assert!(!aged.is_fresh(), "Age counts as for Cache-Control");
}

#[test]
fn a_client_error_a_request_can_provoke_is_not_shared_even_when_fresh() {
    let fresh = [("cache-control", "public, max-age=300")];
    for status in [400, 401, 403, 406, 412, 413, 416, 422, 429, 431, 451] {
        assert_eq!(
            decide(&[], status, &fresh),
            skip(NoStoreReason::ErrorStatus),
            "{status}"
        );
    }
    for status in [404, 405, 410, 414] {
        assert_eq!(
            decide(&[], status, &fresh),
            store(),
            "{status}: the URL decides"
        );
    }
    // The operator's opt-ins: CACHE_CLIENT_ERRORS=explicit (explicit freshness
    // only), or a rule that names the status.
    let opted = PolicySettings {
        store_client_errors: true,
        ..settings()
    };
    let get = RequestFacts {
        method: &Method::GET,
        headers: &HeaderMap::new(),
    };
    let bad_request = StatusCode::BAD_REQUEST;
    assert_eq!(
        store_decision(
            get,
            bad_request,
            &headers(&fresh),
            Some(10),
            &opted,
            &EdgeTerms::default()
        ),
        store()
    );
    assert_eq!(
        store_decision(
            get,
            bad_request,
            &headers(&[("last-modified", &date(-86_400))]),
            Some(10),
            &opted,
            &EdgeTerms::default()
        ),
        skip(NoStoreReason::ErrorStatus),
        "never by heuristic freshness"
    );
    let ruled = EdgeTerms {
        lifetime_secs: Some(60),
        ..EdgeTerms::default()
    };
    assert_eq!(
        store_decision(
            get,
            bad_request,
            &HeaderMap::new(),
            Some(10),
            &settings(),
            &ruled
        ),
        store()
    );
}
