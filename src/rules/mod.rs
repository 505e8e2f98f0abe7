//! Edge cache rules (`CACHE_RULES`): per-path TTLs, bypass, cache keys,
//! origin routing, response headers, deception armor and adaptive TTL.
//!
//! A rule never goes around the storage policy: what it says about one
//! response becomes [`EdgeTerms`], one more input of
//! [`crate::semantics::policy::store_decision`] and of the freshness the
//! entry is judged by. Everything here is a pure function of the compiled
//! rules and the request or response in hand; [`parse`] compiles and
//! validates, [`CacheRules::evaluate`] picks the rules of a request, and the
//! [`RuleAction`] methods say what they mean for it.

mod armor;
mod device;
pub mod glob;
mod parse;

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

pub use armor::armor_allows;
pub use device::{device_class, DEVICE_TYPE_FIELD};
pub use glob::Glob;
pub use parse::{parse, warnings, RuleProblem, MAX_RULES, MAX_SECONDS};

use crate::origin::shaping::{self, QueryFilter};
use crate::semantics::policy::EdgeTerms;
use crate::semantics::vary;

/// Variable holding the rules.
pub const VAR_CACHE_RULES: &str = "CACHE_RULES";

/// The compiled, validated rules, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheRules {
    rules: Vec<Rule>,
    /// Some rule matches on the host (else requests skip reading it).
    hosts_matter: bool,
    /// Some rule keys on the client's country.
    country_keyed: bool,
}

impl CacheRules {
    fn new(rules: Vec<Rule>) -> Self {
        Self {
            hosts_matter: rules.iter().any(|r| !r.conditions.hosts.is_empty()),
            country_keyed: rules
                .iter()
                .any(|r| r.action.cache_key.as_ref().is_some_and(|k| k.country)),
            rules,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// Its name, or `#i` for `CACHE_RULES[i]`: how `Cache-Status` and logs name it.
    label: Arc<str>,
    /// `continue = true`: its fields apply and evaluation goes on.
    layered: bool,
    conditions: Conditions,
    action: Arc<RuleAction>,
}

/// What a request must look like for a rule to apply: every condition given
/// must hold; a list holds when any member does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Conditions {
    /// Up to 8 literal bytes every matching path starts with, kept inline:
    /// most rules do not apply to a request, and this says so without
    /// following a pointer.
    path_lead: [u8; 8],
    path_lead_len: u8,
    paths: Vec<Glob>,
    hosts: Vec<Glob>,
    methods: Vec<Method>,
    /// Lower-case, without the dot.
    extensions: Vec<String>,
    query_present: Vec<String>,
    query_absent: Vec<String>,
    headers: Vec<(HeaderName, Glob)>,
    cookies: Vec<String>,
}

/// `cache`: whether and how the cache takes part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Never read, never written.
    Bypass,
    /// The origin's headers decide (the default).
    #[default]
    Standard,
    /// Stored without origin freshness, within the private-by-default rules.
    Everything,
}

/// `edge_ttl.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlMode {
    RespectOrigin,
    Override,
    Minimum,
}

/// A status or a class of statuses in `edge_ttl.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    Exact(u16),
    /// `4xx`: the hundreds digit.
    Class(u16),
}

impl StatusMatch {
    fn covers(self, status: u16) -> bool {
        match self {
            Self::Exact(code) => code == status,
            Self::Class(hundreds) => status / 100 == hundreds,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeTtl {
    pub mode: TtlMode,
    pub seconds: Option<u64>,
    /// Exact statuses first, then classes (sorted at parse time).
    pub status: Vec<(StatusMatch, u64)>,
}

/// `browser_ttl`: what clients see in `Cache-Control`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrowserTtl {
    RespectOrigin,
    Override(u64),
    Bypass,
}

/// `cache_key.query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryKey {
    /// Every parameter, the global ignore list included.
    All,
    Nothing,
    Include(Vec<String>),
    /// These and `CACHE_IGNORE_QUERY_PARAMS` are left out.
    Exclude(Vec<String>),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySpec {
    pub query: Option<QueryKey>,
    /// Lower-cased request field names whose values join the key.
    pub headers: Vec<String>,
    /// Cookie names whose values join the key.
    pub cookies: Vec<String>,
    pub device: bool,
    pub country: bool,
    /// Request fields the origin receives because of this key: `headers`,
    /// and `CF-Device-Type` when the device class is keyed.
    pub forwarded: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adaptive {
    pub min: u64,
    pub max: u64,
}

/// What the rules that apply to a request say. Unset fields keep their
/// defaults; with `continue`, a later rule's field replaces an earlier one's
/// (tags and header edits add up).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleAction {
    pub cache: Option<CacheMode>,
    pub override_private: Option<bool>,
    pub deception_armor: Option<bool>,
    pub edge_ttl: Option<EdgeTtl>,
    pub browser_ttl: Option<BrowserTtl>,
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
    pub cache_key: Option<KeySpec>,
    pub bypass_cookies: Option<Vec<String>>,
    /// Indices into `ORIGINS`.
    pub origins: Option<Vec<usize>>,
    pub tags: Vec<String>,
    pub response_headers: HeaderEdits,
    pub adaptive_ttl: Option<Adaptive>,
}

/// The request facts rules match on. `path` is the normalised path.
#[derive(Debug, Clone, Copy)]
pub struct RuleRequest<'a> {
    pub method: &'a Method,
    /// Lower-case, without a port.
    pub host: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
}

/// The rules that applied to one request, folded into one action. Cheap
/// to clone: it travels with the request (as an extension) through the
/// pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub action: Arc<RuleAction>,
    /// The rules' labels joined by `,` (`Cache-Status: …; rule="…"`).
    pub label: Arc<str>,
    /// Whether a request field (`match.header`, `match.cookie`) chose these
    /// rules. The key then holds the label: what one set of rules stored is
    /// never served to a request that other rules (or none) apply to, so a
    /// client cannot pick the rules an entry is stored under for others.
    pub chosen_by_fields: bool,
}

impl CacheRules {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether any rule matches on the host.
    pub fn matches_hosts(&self) -> bool {
        self.hosts_matter
    }

    /// Whether any rule keys on the client's country (`cache_key.country`).
    pub fn keys_country(&self) -> bool {
        self.country_keyed
    }

    /// The rules that apply to a request: the first matching rule without
    /// `continue`, with every matching `continue` rule before it layered
    /// underneath. `None` when no rule matches.
    pub fn evaluate(&self, request: &RuleRequest<'_>) -> Option<Matched> {
        let mut folded: Option<Matched> = None;
        for rule in &self.rules {
            if !rule.conditions.hold(request) {
                continue;
            }
            folded = Some(match folded {
                None => Matched {
                    action: Arc::clone(&rule.action),
                    label: Arc::clone(&rule.label),
                    chosen_by_fields: rule.conditions.reads_fields(),
                },
                Some(below) => Matched {
                    action: Arc::new((*below.action).clone().layered(&rule.action)),
                    label: format!("{},{}", below.label, rule.label).into(),
                    chosen_by_fields: below.chosen_by_fields || rule.conditions.reads_fields(),
                },
            });
            if !rule.layered {
                break;
            }
        }
        folded
    }
}

impl CacheRules {
    /// The query filter the rules give a request, borrowed from the rules
    /// themselves: the `cache_key` of the last applying rule that has one
    /// (a later layer's `cache_key` replaces an earlier one's).
    pub fn query_filter_for<'a>(
        &'a self,
        request: &RuleRequest<'_>,
        global_ignored: &'a [String],
    ) -> QueryFilter<'a> {
        let mut keyed: Option<&'a RuleAction> = None;
        for rule in &self.rules {
            if !rule.conditions.hold(request) {
                continue;
            }
            if rule.action.cache_key.is_some() {
                keyed = Some(&rule.action);
            }
            if !rule.layered {
                break;
            }
        }
        match keyed {
            Some(action) => action.query_filter(global_ignored),
            None => QueryFilter::Except(global_ignored),
        }
    }
}

impl Conditions {
    /// Fills in the inline path lead from the path globs.
    fn with_path_lead(mut self) -> Self {
        let mut lead: Option<&[u8]> = None;
        for glob in &self.paths {
            let prefix = glob.literal_prefix();
            lead = Some(match lead {
                None => prefix,
                Some(l) => &l[..l.iter().zip(prefix).take_while(|(a, b)| a == b).count()],
            });
        }
        let lead = lead.unwrap_or(&[]);
        let len = lead.len().min(self.path_lead.len());
        self.path_lead[..len].copy_from_slice(&lead[..len]);
        self.path_lead_len = len as u8;
        self
    }

    fn hold(&self, request: &RuleRequest<'_>) -> bool {
        let lead = &self.path_lead[..usize::from(self.path_lead_len)];
        if !request.path.as_bytes().starts_with(lead) {
            return false;
        }
        (self.paths.is_empty() || self.paths.iter().any(|g| g.matches(request.path)))
            && (self.methods.is_empty() || self.methods.contains(request.method))
            && (self.hosts.is_empty() || self.hosts.iter().any(|g| g.matches(request.host)))
            && (self.extensions.is_empty()
                || extension(request.path)
                    .is_some_and(|ext| self.extensions.iter().any(|e| e.eq_ignore_ascii_case(ext))))
            && self
                .query_present
                .iter()
                .all(|name| has_param(request.query, name))
            && !self
                .query_absent
                .iter()
                .any(|name| has_param(request.query, name))
            && self.headers.iter().all(|(name, glob)| {
                request
                    .headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .any(|v| glob.matches(v))
            })
            && (self.cookies.is_empty()
                || cookie_pairs(request.headers)
                    .any(|(name, _)| self.cookies.iter().any(|c| c == name)))
    }

    /// Whether matching reads request fields (headers, cookies) that are
    /// not otherwise part of the key.
    fn reads_fields(&self) -> bool {
        !self.headers.is_empty() || !self.cookies.is_empty()
    }

    /// No condition at all: every request matches.
    fn catch_all(&self) -> bool {
        let any_path = self.paths.is_empty()
            || self
                .paths
                .iter()
                .any(|g| g.matches_everything() || g.as_str() == "/**");
        any_path
            && self.hosts.iter().all(Glob::matches_everything)
            && self.methods.is_empty()
            && self.extensions.is_empty()
            && self.query_present.is_empty()
            && self.query_absent.is_empty()
            && self.headers.is_empty()
            && self.cookies.is_empty()
    }
}

/// The extension of a path's last segment, without the dot.
pub fn extension(path: &str) -> Option<&str> {
    let last = path.rsplit('/').next()?;
    let (stem, ext) = last.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then_some(ext)
}

fn has_param(query: &str, name: &str) -> bool {
    query
        .split('&')
        .any(|member| member.split_once('=').map_or(member, |(n, _)| n) == name)
}

/// `(name, value)` of every cookie a request carries.
pub fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((name.trim(), value.trim()))
        })
}

/// Lifetimes `cache = "everything"` gives responses without origin
/// freshness (as Cloudflare's "cache everything" does): redirects that say
/// they are permanent and complete answers for two hours, temporary
/// redirects for twenty minutes, "not found" for three. Other statuses only
/// through `edge_ttl.status`.
fn everything_default_secs(status: u16) -> Option<u64> {
    match status {
        200 | 203 | 204 | 300 | 301 | 308 => Some(7200),
        302 | 303 | 307 => Some(1200),
        404 | 410 => Some(180),
        _ => None,
    }
}

/// The origin's freshness as the policy computed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginFreshness {
    pub lifetime_secs: u64,
    /// `max-age`, `s-maxage` or `Expires` (not a heuristic).
    pub explicit: bool,
}

impl RuleAction {
    /// `self` with `above`'s fields laid over it.
    fn layered(mut self, above: &RuleAction) -> RuleAction {
        macro_rules! take {
            ($($field:ident),*) => {$(
                if above.$field.is_some() {
                    self.$field = above.$field.clone();
                }
            )*};
        }
        take!(
            cache,
            override_private,
            deception_armor,
            edge_ttl,
            browser_ttl,
            stale_while_revalidate,
            stale_if_error,
            cache_key,
            bypass_cookies,
            origins,
            adaptive_ttl
        );
        for tag in &above.tags {
            if !self.tags.contains(tag) {
                self.tags.push(tag.clone());
            }
        }
        self.response_headers
            .set
            .extend(above.response_headers.set.iter().cloned());
        self.response_headers
            .remove
            .extend(above.response_headers.remove.iter().cloned());
        self
    }

    pub fn cache_mode(&self) -> CacheMode {
        self.cache.unwrap_or_default()
    }

    pub fn deception_armor(&self) -> bool {
        self.deception_armor.unwrap_or(true)
    }

    /// The query parameters keyed (and forwarded) under this rule.
    pub fn query_filter<'a>(&'a self, global_ignored: &'a [String]) -> QueryFilter<'a> {
        match self.cache_key.as_ref().and_then(|k| k.query.as_ref()) {
            None => QueryFilter::Except(global_ignored),
            Some(QueryKey::All) => QueryFilter::Except(&[]),
            Some(QueryKey::Nothing) => QueryFilter::Nothing,
            Some(QueryKey::Include(names)) => QueryFilter::Only(names),
            Some(QueryKey::Exclude(names)) => QueryFilter::Except(names),
        }
    }

    /// Request fields forwarded because the rule keys them
    /// (`cache_key.headers`, and `CF-Device-Type` for `device`).
    pub fn forwarded_fields(&self) -> &[String] {
        self.cache_key
            .as_ref()
            .map_or(&[], |k| k.forwarded.as_slice())
    }

    /// Cookies keyed under this rule.
    pub fn keyed_cookies(&self) -> &[String] {
        self.cache_key
            .as_ref()
            .map_or(&[], |k| k.cookies.as_slice())
    }

    /// Whether the rule names the cookies that matter (`cache_key.cookies`
    /// or `bypass_cookies`). Then a request it caches reaches the origin
    /// with the keyed cookies only, and its `Cookie` no longer makes it
    /// credentialed: the origin answered what the key holds.
    pub fn names_cookies(&self) -> bool {
        !self.keyed_cookies().is_empty()
            || self.bypass_cookies.as_ref().is_some_and(|c| !c.is_empty())
    }

    /// Whether a request carries one of the rule's `bypass_cookies`.
    pub fn bypass_cookie(&self, headers: &HeaderMap) -> bool {
        self.bypass_cookies
            .as_ref()
            .is_some_and(|globs| shaping::has_matching_cookie(headers, globs))
    }

    /// Extra members of the cache key: keyed fields, cookies, device class
    /// and country. Names that cannot be request fields (`:cookie:…`)
    /// keep them apart from `CACHE_KEY_HEADERS`.
    pub fn key_members(&self, headers: &HeaderMap, country: Option<&str>) -> Vec<(String, String)> {
        let Some(spec) = &self.cache_key else {
            return Vec::new();
        };
        let mut members = Vec::new();
        for name in &spec.headers {
            members.push((name.clone(), vary::field_value(headers, name)));
        }
        for name in &spec.cookies {
            let value = cookie_pairs(headers)
                .find(|(n, _)| n == name)
                .map_or(String::new(), |(_, v)| v.to_owned());
            members.push((format!(":cookie:{name}"), value));
        }
        if spec.device {
            members.push((":device".to_owned(), device_class(headers).to_owned()));
        }
        if spec.country {
            members.push((
                ":country".to_owned(),
                country.unwrap_or("").to_ascii_uppercase(),
            ));
        }
        members
    }

    /// The `Cookie` value the origin gets for a request this rule caches
    /// when it [names its cookies](Self::names_cookies): the keyed cookies
    /// only (`None`: no cookie at all).
    pub fn forwarded_cookie(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let kept: Vec<String> = cookie_pairs(headers)
            .filter(|(name, _)| self.keyed_cookies().iter().any(|c| c == name))
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        if kept.is_empty() {
            return None;
        }
        HeaderValue::from_str(&kept.join("; ")).ok()
    }

    /// What the rule says about storing a response with `status`, given the
    /// origin's own freshness and (for `adaptive_ttl`) the entry's current
    /// adaptive lifetime.
    pub fn edge_terms(
        &self,
        status: StatusCode,
        origin: OriginFreshness,
        adaptive_secs: Option<u64>,
        cookies_handled: bool,
    ) -> EdgeTerms {
        let code = status.as_u16();
        let everything = self.cache_mode() == CacheMode::Everything;
        let from_status = self.edge_ttl.as_ref().and_then(|ttl| {
            ttl.status
                .iter()
                .find(|(m, _)| m.covers(code))
                .map(|(_, secs)| *secs)
        });
        let ruled =
            code < 500 && (everything_default_secs(code).is_some() || from_status.is_some());
        let lifetime = if status.is_server_error() {
            // A 5xx is stored only when the rule names its status.
            from_status
        } else if from_status.is_some() {
            from_status
        } else if let (Some(secs), true) = (adaptive_secs, status.is_success()) {
            Some(secs)
        } else {
            match self.edge_ttl.as_ref().map(|t| (t.mode, t.seconds)) {
                Some((TtlMode::Override, Some(secs))) if ruled => Some(secs),
                Some((TtlMode::Minimum, Some(secs))) if ruled => {
                    Some(secs.max(origin.lifetime_secs))
                }
                _ if everything && !origin.explicit => everything_default_secs(code),
                _ => None,
            }
        };
        EdgeTerms {
            override_private: everything && self.override_private == Some(true),
            cookies_handled,
            lifetime_secs: lifetime,
            swr_secs: self.stale_while_revalidate,
            sie_secs: self.stale_if_error,
        }
    }

    /// The client's `Cache-Control` under `browser_ttl`; `None` leaves the
    /// response's own. An origin's `no-store` or `private` is never turned
    /// into a lifetime for the browser.
    pub fn browser_cache_control(&self, response: &HeaderMap) -> Option<HeaderValue> {
        match self.browser_ttl? {
            BrowserTtl::RespectOrigin => None,
            BrowserTtl::Bypass => Some(HeaderValue::from_static("no-store")),
            BrowserTtl::Override(secs) => {
                let own = response
                    .get_all(header::CACHE_CONTROL)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .map(|d| d.trim().to_ascii_lowercase())
                    .any(|d| d == "no-store" || d.starts_with("private"));
                if own {
                    return None;
                }
                HeaderValue::from_str(&format!("max-age={secs}")).ok()
            }
        }
    }

    /// `browser_ttl` and `response_headers` on what a client receives.
    pub fn edit_client_headers(&self, headers: &mut HeaderMap) {
        if let Some(value) = self.browser_cache_control(headers) {
            headers.insert(header::CACHE_CONTROL, value);
        }
        for name in &self.response_headers.remove {
            headers.remove(name);
        }
        for (name, value) in &self.response_headers.set {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// The next adaptive lifetime: doubled (up to `max`) after a revalidation
/// that found the entry unchanged, back to `min` after a change or for a
/// new entry. Returns `(lifetime, unchanged streak)`.
pub fn next_adaptive(
    adaptive: Adaptive,
    previous: Option<(u64, u32)>,
    unchanged: bool,
) -> (u64, u32) {
    match previous {
        Some((secs, streak)) if unchanged => (
            secs.max(adaptive.min).saturating_mul(2).min(adaptive.max),
            streak.saturating_add(1),
        ),
        _ => (adaptive.min, 0),
    }
}

#[cfg(test)]
mod tests;
