//! Cache policy (RFC 9111 for a shared cache, RFC 5861 stale extensions,
//! RFC 9213 targeted fields): whether a response may be stored, how long it
//! stays fresh, how old it is, and whether a stored response may answer a
//! request. Pure functions of (request, response, timestamps, settings).

use http::header::{self, HeaderName};
use http::{HeaderMap, Method, StatusCode};

use crate::semantics::cache_control::{Directives, DELTA_SECONDS_CAP};
use crate::semantics::cache_status::NoStoreReason;
use crate::semantics::http_date;
use crate::semantics::surrogate_control;

/// Targeted cache-control fields for this cache, most specific first (RFC 9213).
pub const TARGETED_FIELDS: [&str; 2] = ["cloudflare-cdn-cache-control", "cdn-cache-control"];

/// Operator settings the policy needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicySettings {
    /// Responses with a larger body are not stored.
    pub max_object_bytes: u64,
    /// stale-while-revalidate applied when the origin gives none.
    pub default_swr_secs: u64,
    /// stale-if-error applied when the origin gives none.
    pub default_sie_secs: u64,
    /// Upper bound for heuristic freshness (10 % of the time since Last-Modified).
    pub heuristic_max_secs: u64,
    /// How long past its freshness a response may stand in when no origin
    /// can be reached at all (RFC 9111 §4.2.4 "disconnected").
    pub disconnected_grace_secs: u64,
    /// Store 5xx answers that carry explicit freshness (off by default).
    pub store_server_errors: bool,
    /// Store every 4xx that carries explicit freshness, not only those the
    /// URL alone decides ([`url_determined_client_error`]; off by default).
    pub store_client_errors: bool,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            max_object_bytes: 25 * 1024 * 1024,
            default_swr_secs: 0,
            default_sie_secs: 0,
            disconnected_grace_secs: 0,
            heuristic_max_secs: 86_400,
            store_server_errors: false,
            store_client_errors: false,
        }
    }
}

/// What an edge rule (`CACHE_RULES`, [`crate::rules`]) says about one
/// response. `Default` is "no rule": the origin's headers alone decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EdgeTerms {
    /// `override_private`: unqualified `private` and `Set-Cookie` no longer
    /// prevent storing (the stored copy never keeps a `Set-Cookie`).
    pub override_private: bool,
    /// The rule names the request's cookies that matter and the origin saw
    /// only those: `Cookie` does not make the request credentialed.
    pub cookies_handled: bool,
    /// The edge lifetime the rule gives this response; `None`: the origin's.
    pub lifetime_secs: Option<u64>,
    /// stale-while-revalidate / stale-if-error windows replacing the origin's.
    pub swr_secs: Option<u64>,
    pub sie_secs: Option<u64>,
}

/// Which field's directives govern this cache for one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Governing {
    /// `Cache-Control` (and `Expires`).
    CacheControl,
    /// A field of RFC 9213 targeted at this cache (`CDN-Cache-Control`).
    Targeted,
    /// `Surrogate-Control` ([`crate::semantics::surrogate_control`]).
    Surrogate,
}

/// The directives that govern this cache for one response: the first
/// targeted field present (RFC 9213 §2.1), else the `Surrogate-Control`
/// directives that apply to it, else `Cache-Control`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseDirectives {
    pub directives: Directives,
    pub governing: Governing,
}

impl ResponseDirectives {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        for name in TARGETED_FIELDS {
            let name = HeaderName::from_static(name);
            if headers.contains_key(&name) {
                let lines: Vec<&str> = headers
                    .get_all(&name)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                // An invalid Structured Field is ignored whole (RFC 9213 §2.1).
                if !crate::semantics::cache_control::targeted_field_is_valid(&lines.join(", ")) {
                    continue;
                }
                let directives = Directives::from_headers(headers, &name);
                // A targeted field that does not parse to anything is ignored.
                if !directives.is_empty() {
                    return Self {
                        directives,
                        governing: Governing::Targeted,
                    };
                }
            }
        }
        let surrogate = surrogate_control::directives_for_this_cache(headers);
        if !surrogate.is_empty() {
            return Self {
                directives: surrogate,
                governing: Governing::Surrogate,
            };
        }
        Self {
            directives: Directives::from_headers(headers, &header::CACHE_CONTROL),
            governing: Governing::CacheControl,
        }
    }

    /// Whether a field other than `Cache-Control` governs: `Cache-Control`'s
    /// lifetimes and `Expires` then do not count.
    pub fn targeted(&self) -> bool {
        self.governing != Governing::CacheControl
    }

    fn has(&self, name: &str) -> bool {
        self.directives.has(name)
    }

    /// Field names listed by a qualified `private="…"` or `no-cache="…"`.
    fn qualified_fields(&self, directive: &str) -> Vec<String> {
        self.directives
            .iter()
            .filter(|d| d.name == directive)
            .filter_map(|d| d.value.as_deref())
            .flat_map(|v| v.split(','))
            .map(|f| f.trim().to_ascii_lowercase())
            .filter(|f| !f.is_empty())
            .collect()
    }

    /// Unqualified (no argument) occurrence of a directive.
    fn has_unqualified(&self, name: &str) -> bool {
        self.directives.has_unqualified(name)
    }
}

/// The storage decision for one origin response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreDecision {
    /// Store, after removing these fields (from qualified `private`/`no-cache`).
    Store { strip_fields: Vec<String> },
    /// Serve but do not store.
    Skip(NoStoreReason),
}

/// What the policy needs of the request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
}

/// Statuses a cache may store without explicit freshness (RFC 9110 §15.1).
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// The 4xx statuses the URL alone decides, stored by the usual rules (the
/// client errors among RFC 9110 §15.1's heuristically cacheable statuses):
/// 404, 405 (only `GET` is stored, and method overrides never reach the
/// origin), 410, 414 (the URL is the key). Any other 4xx can depend on what
/// else a client sent.
pub fn url_determined_client_error(status: StatusCode) -> bool {
    matches!(status.as_u16(), 404 | 405 | 410 | 414)
}

/// Final statuses this cache understands (RFC 9111 §3: never store others).
fn understood(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200..=208 | 226 | 300..=308 | 400..=418 | 421..=426 | 428 | 429 | 431 | 451 | 500..=508 | 510 | 511
    )
}

/// Decides whether this cache may store a response (RFC 9111 §3).
pub fn store_decision(
    request: RequestFacts<'_>,
    status: StatusCode,
    response_headers: &HeaderMap,
    body_len: Option<u64>,
    settings: &PolicySettings,
    terms: &EdgeTerms,
) -> StoreDecision {
    use StoreDecision::Skip;
    if request.method != Method::GET {
        return Skip(NoStoreReason::Method);
    }
    let request_cc = Directives::from_headers(request.headers, &header::CACHE_CONTROL);
    if request_cc.has("no-store") {
        return Skip(NoStoreReason::RequestNoStore);
    }
    // Only final responses; partial content and 304s are never stored as
    // entries of their own.
    if status.is_informational()
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Skip(NoStoreReason::Status);
    }
    let rd = ResponseDirectives::from_headers(response_headers);
    // A status code this cache does not know may still be stored with
    // explicit freshness, unless `must-understand` asks for one it knows
    // (which then overrides `no-store`, RFC 9111 §5.2.2.3).
    let must_understand = rd.has("must-understand");
    if must_understand && !understood(status) {
        return Skip(NoStoreReason::Status);
    }
    if rd.has("no-store") && !must_understand {
        return Skip(NoStoreReason::ResponseNoStore);
    }
    if (rd.has_unqualified("private") || surrogate_under_private(&rd, response_headers))
        && !terms.override_private
    {
        return Skip(NoStoreReason::Private);
    }
    if vary_is_star(response_headers) {
        return Skip(NoStoreReason::VaryStar);
    }
    // 5xx answers describe the origin's trouble, not the resource: not shared
    // unless the operator asked for it, and then only with explicit freshness.
    // A rule stores an error only when it names the status (`edge_ttl.status`).
    let ruled_error = terms.lifetime_secs.is_some_and(|secs| secs > 0);
    if status.is_server_error()
        && !ruled_error
        && !(settings.store_server_errors && has_explicit_lifetime(&rd, response_headers))
    {
        return Skip(NoStoreReason::ErrorStatus);
    }
    // A 4xx that a request can provoke for a URL without changing the URL
    // (an oversized or malformed header: 400, 431; a precondition or range:
    // 412, 416; a client's rate limit or a WAF's verdict: 429, 403) is not
    // shared either, even with explicit freshness: stored, it would answer
    // everyone for what one client sent (CPDoS). The same rule opt-in holds.
    let client_errors_opted_in = ruled_error
        || (settings.store_client_errors && has_explicit_lifetime(&rd, response_headers));
    if status.is_client_error() && !url_determined_client_error(status) && !client_errors_opted_in {
        return Skip(NoStoreReason::ErrorStatus);
    }
    if let Some(reason) = credentials(request.headers) {
        // `Authorization` always needs the origin's permission; a `Cookie`
        // does unless a rule keyed or withheld the request's cookies.
        let handled = reason == NoStoreReason::Cookie && terms.cookies_handled;
        if !handled && !shared_permission(&rd, response_headers) {
            return Skip(reason);
        }
    }
    let mut strip_fields = rd.qualified_fields("private");
    strip_fields.extend(rd.qualified_fields("no-cache"));
    if response_headers.contains_key(header::SET_COOKIE)
        && !strip_fields.iter().any(|f| f == "set-cookie")
        && !terms.override_private
    {
        return Skip(NoStoreReason::SetCookie);
    }
    if terms.lifetime_secs == Some(0) {
        return Skip(NoStoreReason::RuleTtl);
    }
    let ruled = terms.lifetime_secs.is_some();
    let explicit = rd.has("public")
        || rd.has("max-age")
        || rd.has("s-maxage")
        || (!rd.targeted() && response_headers.contains_key(header::EXPIRES));
    if !ruled && !explicit && !heuristically_cacheable(status) {
        return Skip(NoStoreReason::NoFreshness);
    }
    if !ruled && rd.has_unqualified("no-cache") && !has_validators(response_headers) {
        // Every reuse would need a full fetch: storing it buys nothing.
        return Skip(NoStoreReason::NoCache);
    }
    if body_len.is_some_and(|len| len > settings.max_object_bytes) {
        return Skip(NoStoreReason::TooLarge);
    }
    let lifetime = terms
        .lifetime_secs
        .unwrap_or_else(|| freshness_lifetime(response_headers, None, settings));
    let usable_stale = stale_windows(&rd, settings).with_terms(terms);
    if lifetime == 0 && !has_validators(response_headers) && usable_stale == StaleWindows(0, 0) {
        // Born stale and impossible to revalidate: never reusable.
        return Skip(NoStoreReason::NoFreshness);
    }
    StoreDecision::Store { strip_fields }
}

/// Why a request counts as credentialed: its answer may be personal, so it is
/// private unless the origin says otherwise (`Authorization` first).
pub fn credentials(request_headers: &HeaderMap) -> Option<NoStoreReason> {
    if request_headers.contains_key(header::AUTHORIZATION) {
        Some(NoStoreReason::Authorization)
    } else if request_headers.contains_key(header::COOKIE) {
        Some(NoStoreReason::Cookie)
    } else {
        None
    }
}

/// Whether a response explicitly allows a shared cache to keep an answer to a
/// credentialed request: `public` or `s-maxage`, or a field targeted at this
/// cache (RFC 9213) — with an explicit lifetime, never a heuristic one.
/// `must-revalidate` alone is not enough: RFC 9111 §3.5 lets a cache store
/// it, but nothing in it says the answer is the same for every user. Nor is
/// `Surrogate-Control`: origins written for other CDNs send it on every
/// answer and rely on the CDN passing credentialed requests, so its answers
/// are shared only when `Cache-Control` says `public` or `s-maxage`.
fn shared_permission(rd: &ResponseDirectives, response_headers: &HeaderMap) -> bool {
    let permitted = match rd.governing {
        Governing::Targeted => true,
        Governing::CacheControl => rd.has("public") || rd.has("s-maxage"),
        Governing::Surrogate => {
            let cc = Directives::from_headers(response_headers, &header::CACHE_CONTROL);
            cc.has("public") || cc.has("s-maxage")
        }
    };
    permitted && has_explicit_lifetime(rd, response_headers)
}

/// `Surrogate-Control` governs but `Cache-Control` says unqualified
/// `private`: the answer is personal whatever the surrogate may keep (as on
/// Fastly, which passes such answers).
fn surrogate_under_private(rd: &ResponseDirectives, response_headers: &HeaderMap) -> bool {
    rd.governing == Governing::Surrogate
        && Directives::from_headers(response_headers, &header::CACHE_CONTROL)
            .has_unqualified("private")
}

/// Whether the governing directives give an explicit lifetime (not a
/// heuristic one).
pub fn explicit_lifetime(response_headers: &HeaderMap) -> bool {
    has_explicit_lifetime(
        &ResponseDirectives::from_headers(response_headers),
        response_headers,
    )
}

/// `s-maxage`, `max-age`, or (outside targeted fields) `Expires`.
fn has_explicit_lifetime(rd: &ResponseDirectives, response_headers: &HeaderMap) -> bool {
    rd.has("s-maxage")
        || rd.has("max-age")
        || (!rd.targeted() && response_headers.contains_key(header::EXPIRES))
}

fn vary_is_star(headers: &HeaderMap) -> bool {
    vary_fields(headers).iter().any(|f| f == "*")
}

/// The request fields a response varies on, lower-cased, in order, deduplicated.
pub fn vary_fields(headers: &HeaderMap) -> Vec<String> {
    let mut fields: Vec<String> = Vec::new();
    for value in headers.get_all(header::VARY) {
        let Ok(text) = value.to_str() else { continue };
        for field in text.split(',') {
            let field = field.trim().to_ascii_lowercase();
            if !field.is_empty() && !fields.contains(&field) {
                fields.push(field);
            }
        }
    }
    fields
}

/// Whether the response carries a validator (`ETag` or `Last-Modified`).
pub fn has_validators(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ETAG) || headers.contains_key(header::LAST_MODIFIED)
}

fn header_date(headers: &HeaderMap, name: HeaderName) -> Option<Result<u64, ()>> {
    let value = headers.get(name)?;
    Some(
        value
            .to_str()
            .ok()
            .and_then(http_date::parse_secs)
            .ok_or(()),
    )
}

/// Freshness lifetime in seconds for a shared cache (RFC 9111 §4.2.1):
/// `s-maxage`, then `max-age`, then `Expires - Date`, then a heuristic.
/// `response_time_secs` stands in for a missing `Date`.
pub fn freshness_lifetime(
    headers: &HeaderMap,
    response_time_secs: Option<u64>,
    settings: &PolicySettings,
) -> u64 {
    let rd = ResponseDirectives::from_headers(headers);
    if let Some(secs) = rd.directives.seconds("s-maxage") {
        return secs;
    }
    if let Some(secs) = rd.directives.seconds("max-age") {
        return secs;
    }
    let date = match header_date(headers, header::DATE) {
        Some(Ok(date)) => Some(date),
        _ => response_time_secs,
    };
    if !rd.targeted() {
        match header_date(headers, header::EXPIRES) {
            // An invalid Expires (e.g. "0") means already expired.
            Some(Err(())) => return 0,
            Some(Ok(expires)) => {
                return expires
                    .saturating_sub(date.unwrap_or(expires))
                    .min(DELTA_SECONDS_CAP)
            }
            None => {}
        }
    }
    // Heuristic freshness (RFC 9111 §4.2.2): only with Last-Modified, 10 % of its age.
    if let (Some(Ok(last_modified)), Some(date)) =
        (header_date(headers, header::LAST_MODIFIED), date)
    {
        return (date.saturating_sub(last_modified) / 10).min(settings.heuristic_max_secs);
    }
    0
}

/// Timestamps of one stored response (RFC 9111 §4.2.3 terms), in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseTimes {
    pub request_time_ms: u64,
    pub response_time_ms: u64,
}

/// `corrected_initial_age` of a response at the moment it arrived, in seconds.
pub fn corrected_initial_age(headers: &HeaderMap, times: ResponseTimes) -> u64 {
    let response_time = times.response_time_ms / 1000;
    let apparent_age = match header_date(headers, header::DATE) {
        Some(Ok(date)) => response_time.saturating_sub(date),
        _ => 0,
    };
    let age_value = age_header_secs(headers);
    let response_delay = times.response_time_ms.saturating_sub(times.request_time_ms) / 1000;
    apparent_age.max(age_value.saturating_add(response_delay))
}

/// The `Age` the origin (or an upstream cache) reported, if valid. A list
/// (one line `7200, 0` or several lines) counts by its first member; an
/// invalid value is ignored (RFC 9111 §5.1).
pub fn age_header_secs(headers: &HeaderMap) -> u64 {
    let Some(first) = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
    else {
        return 0;
    };
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    first
        .parse::<u64>()
        .map_or(DELTA_SECONDS_CAP, |v| v.min(DELTA_SECONDS_CAP))
}

/// Current age of a stored response (RFC 9111 §4.2.3).
pub fn current_age_secs(initial_age_secs: u64, response_time_ms: u64, now_ms: u64) -> u64 {
    let resident_secs = now_ms.saturating_sub(response_time_ms) / 1000;
    initial_age_secs.saturating_add(resident_secs)
}

/// (stale-while-revalidate, stale-if-error) windows in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StaleWindows(u64, u64);

impl StaleWindows {
    /// A rule's windows replace the origin's.
    fn with_terms(self, terms: &EdgeTerms) -> Self {
        Self(
            terms.swr_secs.unwrap_or(self.0),
            terms.sie_secs.unwrap_or(self.1),
        )
    }
}

fn stale_windows(rd: &ResponseDirectives, settings: &PolicySettings) -> StaleWindows {
    let explicit_revalidate =
        rd.has("must-revalidate") || rd.has("proxy-revalidate") || rd.has_unqualified("no-cache");
    if explicit_revalidate {
        return StaleWindows(0, 0);
    }
    let swr = rd
        .directives
        .seconds("stale-while-revalidate")
        .unwrap_or(settings.default_swr_secs);
    let sie = rd
        .directives
        .seconds("stale-if-error")
        .unwrap_or(settings.default_sie_secs);
    StaleWindows(swr, sie)
}

/// Everything the cache knows about the freshness of one stored response now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    pub lifetime_secs: u64,
    pub age_secs: u64,
    /// Serving it stale needs revalidation first (`must-revalidate`,
    /// `proxy-revalidate`, or `s-maxage`, which implies the latter).
    pub must_revalidate: bool,
    /// Every reuse needs revalidation (unqualified `no-cache`).
    pub no_cache: bool,
    pub swr_secs: u64,
    pub sie_secs: u64,
    /// How long it may be served stale while no origin can be reached.
    pub disconnected_secs: u64,
}

impl Freshness {
    pub fn of(
        headers: &HeaderMap,
        initial_age_secs: u64,
        times: ResponseTimes,
        now_ms: u64,
        settings: &PolicySettings,
    ) -> Self {
        let rd = ResponseDirectives::from_headers(headers);
        let StaleWindows(swr_secs, sie_secs) = stale_windows(&rd, settings);
        let must_revalidate =
            rd.has("must-revalidate") || rd.has("proxy-revalidate") || rd.has("s-maxage");
        let no_cache = rd.has_unqualified("no-cache");
        Self {
            lifetime_secs: freshness_lifetime(
                headers,
                Some(times.response_time_ms / 1000),
                settings,
            ),
            age_secs: current_age_secs(initial_age_secs, times.response_time_ms, now_ms),
            must_revalidate,
            no_cache,
            swr_secs,
            sie_secs,
            disconnected_secs: if must_revalidate || no_cache {
                0
            } else {
                settings.disconnected_grace_secs
            },
        }
    }

    /// The same entry under the terms a rule gave it when it was stored: the
    /// rule's lifetime replaces the origin's (and with it the origin's
    /// `no-cache` and revalidation demands, as an edge TTL override does),
    /// the rule's stale windows replace the origin's. Without a lifetime of
    /// its own, a rule's stale windows never override an origin that demands
    /// revalidation (`must-revalidate`, `proxy-revalidate`, `s-maxage`,
    /// `no-cache`): it stays unusable stale.
    pub fn under_terms(self, terms: &EdgeTerms) -> Self {
        let ruled = terms.lifetime_secs.is_some();
        let origin_demands = !ruled && (self.must_revalidate || self.no_cache);
        let window = |rule: Option<u64>, own: u64| match rule {
            Some(secs) if !origin_demands => secs,
            _ => own,
        };
        Self {
            lifetime_secs: terms.lifetime_secs.unwrap_or(self.lifetime_secs),
            must_revalidate: self.must_revalidate && !ruled,
            no_cache: self.no_cache && !ruled,
            swr_secs: window(terms.swr_secs, self.swr_secs),
            sie_secs: window(terms.sie_secs, self.sie_secs),
            ..self
        }
    }

    /// Remaining freshness in seconds (negative once stale).
    pub fn ttl_secs(&self) -> i64 {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        clamp(self.lifetime_secs) - clamp(self.age_secs)
    }

    pub fn is_fresh(&self) -> bool {
        self.ttl_secs() > 0
    }

    /// The same entry after a soft purge: usable only as stale, so the stale
    /// windows (stale-while-revalidate, stale-if-error) decide its reuse.
    pub fn soft_purged(self) -> Self {
        Self {
            age_secs: self.age_secs.max(self.lifetime_secs),
            ..self
        }
    }

    /// Seconds past the end of freshness (0 while fresh).
    pub fn staleness_secs(&self) -> u64 {
        self.age_secs.saturating_sub(self.lifetime_secs)
    }

    /// How long the store should keep the entry: freshness, the stale windows,
    /// and (when it can be revalidated) `revalidation_window_secs` more.
    pub fn retention_secs(&self, can_revalidate: bool, revalidation_window_secs: u64) -> u64 {
        let stale = self.swr_secs.max(self.sie_secs).max(self.disconnected_secs);
        let extra = if can_revalidate {
            stale.max(revalidation_window_secs)
        } else {
            stale
        };
        self.lifetime_secs
            .saturating_sub(self.age_secs.min(self.lifetime_secs))
            .saturating_add(extra)
            .max(1)
    }
}

/// Request directives relevant to reuse (RFC 9111 §5.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestDirectives {
    pub no_cache: bool,
    pub no_store: bool,
    pub max_age: Option<u64>,
    /// `Some(None)` = any staleness accepted.
    pub max_stale: Option<Option<u64>>,
    pub min_fresh: Option<u64>,
    pub only_if_cached: bool,
    pub stale_if_error: Option<u64>,
}

impl RequestDirectives {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let cc = Directives::from_headers(headers, &header::CACHE_CONTROL);
        // Pragma: no-cache only counts when Cache-Control is absent (RFC 9111 §5.4).
        let pragma_no_cache = !headers.contains_key(header::CACHE_CONTROL)
            && Directives::from_headers(headers, &header::PRAGMA).has("no-cache");
        let max_stale = cc.iter().find(|d| d.name == "max-stale").map(|d| {
            d.value
                .as_deref()
                .and_then(|v| v.parse::<u64>().ok())
                .map(|v| v.min(DELTA_SECONDS_CAP))
        });
        Self {
            no_cache: cc.has("no-cache") || pragma_no_cache,
            no_store: cc.has("no-store"),
            max_age: cc.seconds("max-age"),
            max_stale,
            min_fresh: cc.seconds("min-fresh"),
            only_if_cached: cc.has("only-if-cached"),
            stale_if_error: cc.seconds("stale-if-error"),
        }
    }
}

/// Whether a stored response may answer a request, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Serve it as it is.
    Fresh,
    /// Serve it stale because the client accepts staleness (`max-stale`).
    StaleAccepted,
    /// Serve it stale and refresh it in the background (stale-while-revalidate).
    StaleWhileRevalidate,
    /// Ask the origin first (conditionally, when it has validators).
    Revalidate,
}

/// Decides how a stored response may be reused for a request (RFC 9111 §4).
pub fn reuse(request: &RequestDirectives, freshness: &Freshness) -> Reuse {
    if request.no_cache || freshness.no_cache {
        return Reuse::Revalidate;
    }
    if request
        .max_age
        .is_some_and(|max_age| freshness.age_secs > max_age)
    {
        return Reuse::Revalidate;
    }
    let ttl = freshness.ttl_secs();
    if freshness.is_fresh() {
        let wanted = request
            .min_fresh
            .map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX));
        if ttl >= wanted {
            return Reuse::Fresh;
        }
        return Reuse::Revalidate;
    }
    if request.min_fresh.is_some() || request.max_age == Some(0) {
        return Reuse::Revalidate;
    }
    let staleness = freshness.staleness_secs();
    if !freshness.must_revalidate {
        if let Some(limit) = request.max_stale {
            if limit.is_none_or(|limit| staleness <= limit) {
                return Reuse::StaleAccepted;
            }
        }
    }
    if freshness.swr_secs > 0 && staleness <= freshness.swr_secs && request.max_age.is_none() {
        return Reuse::StaleWhileRevalidate;
    }
    Reuse::Revalidate
}

/// Whether a stale response may stand in when the origin fails (RFC 5861 §4).
pub fn may_serve_stale_on_error(request: &RequestDirectives, freshness: &Freshness) -> bool {
    if freshness.is_fresh() {
        return true;
    }
    if freshness.no_cache {
        return false;
    }
    let window = request.stale_if_error.unwrap_or(0).max(freshness.sie_secs);
    window > 0 && freshness.staleness_secs() <= window
}

/// Whether a stale response may stand in when no origin could be reached at
/// all (connection refused or reset, timeout): the cache is "disconnected"
/// (RFC 9111 §4.2.4), so stale-if-error windows apply, and so does the
/// operator's grace unless a directive forbids serving stale (response
/// `must-revalidate`, `proxy-revalidate`, `s-maxage`, `no-cache`; request
/// `no-cache` or `max-age`).
pub fn may_serve_stale_when_disconnected(
    request: &RequestDirectives,
    freshness: &Freshness,
) -> bool {
    if may_serve_stale_on_error(request, freshness) {
        return true;
    }
    if freshness.must_revalidate || freshness.no_cache || request.no_cache {
        return false;
    }
    if request.max_age.is_some() {
        return false;
    }
    freshness.disconnected_secs > 0 && freshness.staleness_secs() <= freshness.disconnected_secs
}

/// The allowance under which a stale response stands in for a failed
/// origin; its name is the `Cache-Status` detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleOnFailure {
    /// `stale-if-error` (RFC 5861 §4), from the response, the request or
    /// `STALE_IF_ERROR_SECS`.
    IfError,
    /// The operator's grace while no origin can be reached
    /// (`STALE_IF_DISCONNECTED_SECS`).
    IfDisconnected,
}

impl StaleOnFailure {
    /// Every variant (the docs test checks each word is documented).
    pub const ALL: &'static [Self] = &[Self::IfError, Self::IfDisconnected];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::IfError => "stale-if-error",
            Self::IfDisconnected => "stale-if-disconnected",
        }
    }
}

/// Whether, and under which allowance, a stale response may stand in when
/// no origin could be reached at all: stale-if-error first, then the
/// disconnected grace.
pub fn stale_when_disconnected(
    request: &RequestDirectives,
    freshness: &Freshness,
) -> Option<StaleOnFailure> {
    if may_serve_stale_on_error(request, freshness) {
        Some(StaleOnFailure::IfError)
    } else if may_serve_stale_when_disconnected(request, freshness) {
        Some(StaleOnFailure::IfDisconnected)
    } else {
        None
    }
}

/// Origin statuses that count as errors for stale-if-error.
pub fn is_error_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests;
