//! Who is calling and what they may do: bearer tokens checked with a TokenReview (results cached
//! for a short, bounded time), each request authorized with a SubjectAccessReview on a virtual
//! resource of the `netdiag.io` group. The API server is the only I/O; an API server that cannot
//! be asked is [`Denial::Unavailable`], never a pass.
//!
//! What a caller can make the API server do is bounded ([`AuthLimits`]): tokens over a size are
//! refused unread, rejections are remembered by the token's SHA-256, unknown tokens cost each
//! client address a budget of reviews per minute, and identical reviews in flight are one review
//! within a global number in flight (429 at once beyond it).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::Api;
use kube::api::PostParams;

use super::limits::{FlightError, SingleFlight, SourceRate};

/// The API group of netdiag's virtual resources.
pub const GROUP: &str = "netdiag.io";

/// An authenticated caller, as the TokenReview named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

/// Why a request goes no further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No usable bearer token, or the API server rejected it (401).
    Unauthenticated(String),
    /// RBAC does not allow it (403); the text names what is missing.
    Forbidden(String),
    /// Over a bound on reviews (429): this address's budget, or the reviews in flight.
    Throttled(String),
    /// The API server could not be asked (503); the text is for the log, never for the caller.
    Unavailable(String),
}

/// What a caller asks to do: `verb` on `resource` (and `subresource`) of API `group`, in
/// `namespace`, on `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub verb: &'static str,
    /// The API group; empty for the core group.
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: Option<&'static str>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Access {
    /// `create` on a virtual resource of `netdiag.io`.
    pub fn create(resource: &'static str, namespace: Option<String>, name: Option<String>) -> Self {
        Access {
            verb: "create",
            group: GROUP,
            resource,
            subresource: None,
            namespace,
            name,
        }
    }

    /// The sentence a 403 says.
    pub fn missing(&self, caller: &Caller) -> String {
        let place = match &self.namespace {
            Some(ns) => format!(" in namespace {ns}"),
            None => " at the cluster scope".into(),
        };
        let name = self
            .name
            .as_deref()
            .map(|n| format!(" (name {n})"))
            .unwrap_or_default();
        let sub = self.subresource.map(|s| format!("/{s}")).unwrap_or_default();
        let group = if self.group.is_empty() {
            String::new()
        } else {
            format!(".{}", self.group)
        };
        format!(
            "user {} cannot {} {}{sub}{group}{place}{name}",
            caller.user, self.verb, self.resource
        )
    }
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(header: Option<&str>) -> Result<&str, Denial> {
    let value = header.ok_or_else(|| {
        Denial::Unauthenticated("no bearer token (send Authorization: Bearer TOKEN)".into())
    })?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(token.trim())
        }
        _ => Err(Denial::Unauthenticated(
            "the authorization header is not of the form Bearer TOKEN".into(),
        )),
    }
}

type Digest = [u8; 32];

/// What authentication may cost the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthLimits {
    /// Longer bearer tokens are refused without a review.
    pub max_token_bytes: usize,
    /// TokenReviews in flight at once, and apart from them SubjectAccessReviews; beyond, 429.
    pub reviews_in_flight: usize,
    /// TokenReviews of unknown tokens one client address may cause per minute.
    pub token_reviews_per_source_per_minute: u32,
}

/// Client addresses whose review budget is remembered.
const MAX_SOURCES: usize = 4096;

/// Outcomes by digest; entries live until their deadline, at most `capacity` of them. When full,
/// expired entries go first, then those `precious` does not keep, then all.
struct Cache<V> {
    entries: HashMap<Digest, (Instant, V)>,
    capacity: usize,
    precious: fn(&V) -> bool,
}

impl<V: Clone> Cache<V> {
    fn new(capacity: usize, precious: fn(&V) -> bool) -> Self {
        Cache {
            entries: HashMap::new(),
            capacity,
            precious,
        }
    }

    fn get(&mut self, key: &Digest, now: Instant) -> Option<V> {
        match self.entries.get(key) {
            Some((expires, outcome)) if *expires > now => Some(outcome.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&mut self, key: Digest, expires: Instant, outcome: V, now: Instant) {
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, (e, _)| *e > now);
        }
        if self.entries.len() >= self.capacity {
            let precious = self.precious;
            self.entries.retain(|_, (_, v)| precious(v));
        }
        if self.entries.len() >= self.capacity {
            self.entries.clear();
        }
        self.entries.insert(key, (expires, outcome));
    }
}

type Shared<V> = Arc<Mutex<Cache<V>>>;

fn lock<V>(cache: &Shared<V>) -> std::sync::MutexGuard<'_, Cache<V>> {
    // A panic while holding the lock leaves a cache that is still consistent: use it.
    cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A TokenReview's outcome: the caller, or why the token was rejected.
type Reviewed = Result<Caller, String>;

pub struct Authorizer {
    client: Result<kube::Client, String>,
    audiences: Vec<String>,
    ttl: Duration,
    max_token_bytes: usize,
    tokens: Shared<Reviewed>,
    token_reviews: SingleFlight<Digest, Result<Reviewed, Denial>>,
    sources: SourceRate,
    denials: Shared<Denial>,
    access_reviews: SingleFlight<Digest, Result<(), Denial>>,
}

fn digest(text: &str) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Authorizer {
    /// `client` is the agent's own client, or why it has none (every request is then 503).
    /// Accepted tokens are remembered for `ttl`, rejected ones and refused accesses a fifth of it.
    pub fn new(
        client: Result<kube::Client, String>,
        audiences: Vec<String>,
        ttl: Duration,
        limits: &AuthLimits,
    ) -> Self {
        Authorizer {
            client,
            audiences,
            ttl,
            max_token_bytes: limits.max_token_bytes,
            tokens: Arc::new(Mutex::new(Cache::new(4096, Result::is_ok))),
            token_reviews: SingleFlight::new(limits.reviews_in_flight.max(1)),
            sources: SourceRate::per_minute(limits.token_reviews_per_source_per_minute, MAX_SOURCES),
            denials: Arc::new(Mutex::new(Cache::new(4096, |_| false))),
            access_reviews: SingleFlight::new(limits.reviews_in_flight.max(1)),
        }
    }

    fn client(&self) -> Result<&kube::Client, Denial> {
        self.client
            .as_ref()
            .map_err(|why| Denial::Unavailable(format!("the agent has no kubernetes client: {why}")))
    }

    /// The caller behind `token`, sent from `source`: from the cache, or a TokenReview that this
    /// address's budget and the reviews in flight allow.
    pub async fn authenticate(&self, token: &str, source: IpAddr) -> Result<Caller, Denial> {
        if token.len() > self.max_token_bytes {
            return Err(Denial::Unauthenticated(format!(
                "the bearer token has {} bytes, more than the {} this endpoint accepts",
                token.len(),
                self.max_token_bytes
            )));
        }
        let key = digest(token);
        if let Some(outcome) = lock(&self.tokens).get(&key, Instant::now()) {
            return outcome.map_err(Denial::Unauthenticated);
        }
        // Joining a review already running costs the API server nothing more.
        if !self.token_reviews.is_running(&key) && !self.sources.try_take(source, Instant::now()) {
            return Err(Denial::Throttled(
                "this address sent too many unknown tokens; retry in a few seconds".into(),
            ));
        }
        let client = self.client()?.clone();
        let (cache, ttl) = (self.tokens.clone(), self.ttl);
        let review = token_review(token, &self.audiences);
        let work = async move {
            let outcome = review_token(client, review).await;
            if let Ok(reviewed) = &outcome {
                let now = Instant::now();
                let ttl = if reviewed.is_ok() { ttl } else { ttl / 5 };
                lock(&cache).put(key, now + ttl, reviewed.clone(), now);
            }
            outcome
        };
        match self.token_reviews.run(key, work).await {
            Ok((outcome, _)) => outcome?.map_err(Denial::Unauthenticated),
            Err(FlightError::Full) => Err(Denial::Throttled(
                "the agent has the most token reviews in flight it allows; retry shortly".into(),
            )),
            Err(FlightError::Lost) => Err(Denial::Unavailable(
                "the token review ended without an answer".into(),
            )),
        }
    }

    /// Whether `caller` may do `access`: a SubjectAccessReview (one for identical ones in flight,
    /// within the reviews in flight); a refusal is remembered a fifth of the token lifetime.
    pub async fn authorize(&self, caller: &Caller, access: &Access) -> Result<(), Denial> {
        let review = access_review(caller, access);
        let key = digest(&serde_json::to_string(&review.spec).unwrap_or_default());
        if let Some(denial) = lock(&self.denials).get(&key, Instant::now()) {
            return Err(denial);
        }
        let client = self.client()?.clone();
        let (cache, ttl, missing) = (self.denials.clone(), self.ttl / 5, access.missing(caller));
        let work = async move {
            let outcome = review_access(client, review, missing).await;
            if let Err(denial @ Denial::Forbidden(_)) = &outcome {
                let now = Instant::now();
                lock(&cache).put(key, now + ttl, denial.clone(), now);
            }
            outcome
        };
        match self.access_reviews.run(key, work).await {
            Ok((outcome, _)) => outcome,
            Err(FlightError::Full) => Err(Denial::Throttled(
                "the agent has the most access reviews in flight it allows; retry shortly".into(),
            )),
            Err(FlightError::Lost) => Err(Denial::Unavailable(
                "the access review ended without an answer".into(),
            )),
        }
    }
}

fn token_review(token: &str, audiences: &[String]) -> TokenReview {
    TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_string()),
            audiences: (!audiences.is_empty()).then(|| audiences.to_vec()),
        },
        ..Default::default()
    }
}

async fn review_token(client: kube::Client, review: TokenReview) -> Result<Reviewed, Denial> {
    let api: Api<TokenReview> = Api::all(client);
    let answer = api.create(&PostParams::default(), &review).await.map_err(|e| {
        Denial::Unavailable(format!(
            "failed to create a tokenreview: {}",
            netdiag_engine::error_chain(&e)
        ))
    })?;
    let status = answer.status.unwrap_or_default();
    let user = status.user.unwrap_or_default();
    Ok(match (status.authenticated, user.username) {
        (Some(true), Some(name)) if !name.is_empty() => Ok(Caller {
            user: name,
            uid: user.uid,
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default(),
        }),
        _ => Err(match status.error {
            Some(e) if !e.is_empty() => format!("the token was rejected: {e}"),
            _ => "the token was rejected".into(),
        }),
    })
}

fn access_review(caller: &Caller, access: &Access) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(caller.user.clone()),
            uid: caller.uid.clone(),
            groups: Some(caller.groups.clone()),
            extra: (!caller.extra.is_empty()).then(|| caller.extra.clone()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(access.verb.into()),
                group: Some(access.group.into()),
                resource: Some(access.resource.into()),
                subresource: access.subresource.map(String::from),
                namespace: access.namespace.clone(),
                name: access.name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// `Ok` when the review allows, else [`Denial::Forbidden`] saying `missing`.
async fn review_access(
    client: kube::Client,
    review: SubjectAccessReview,
    missing: String,
) -> Result<(), Denial> {
    let api: Api<SubjectAccessReview> = Api::all(client);
    let answer = api.create(&PostParams::default(), &review).await.map_err(|e| {
        Denial::Unavailable(format!(
            "failed to create a subjectaccessreview: {}",
            netdiag_engine::error_chain(&e)
        ))
    })?;
    let status = answer.status.unwrap_or_default();
    if status.allowed && status.denied != Some(true) {
        Ok(())
    } else {
        Err(Denial::Forbidden(missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(name: &str) -> Caller {
        Caller {
            user: name.into(),
            uid: None,
            groups: vec![],
            extra: Default::default(),
        }
    }

    #[test]
    fn bearer_tokens_are_taken_only_from_a_bearer_header() {
        assert_eq!(bearer(Some("Bearer abc")), Ok("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Ok("abc"));
        assert!(matches!(bearer(None), Err(Denial::Unauthenticated(_))));
        assert!(matches!(
            bearer(Some("Basic abc")),
            Err(Denial::Unauthenticated(_))
        ));
        assert!(matches!(bearer(Some("Bearer ")), Err(Denial::Unauthenticated(_))));
    }

    #[test]
    fn a_forbidden_check_names_user_resource_and_namespace() {
        let access = Access::create("checks", Some("shop".into()), Some("checkout".into()));
        assert_eq!(
            access.missing(&caller("alice")),
            "user alice cannot create checks.netdiag.io in namespace shop (name checkout)"
        );
        let host = Access {
            subresource: Some("hostnetwork"),
            ..access
        };
        assert_eq!(
            host.missing(&caller("alice")),
            "user alice cannot create checks/hostnetwork.netdiag.io in namespace shop (name checkout)"
        );
        let read = Access {
            verb: "list",
            group: "",
            resource: "pods",
            subresource: None,
            namespace: Some("admin".into()),
            name: None,
        };
        assert_eq!(
            read.missing(&caller("alice")),
            "user alice cannot list pods in namespace admin"
        );
    }

    #[test]
    fn cache_entries_expire_and_a_full_cache_forgets_rejections_before_callers() {
        let mut cache: Cache<Reviewed> = Cache::new(2, Result::is_ok);
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        cache.put(digest("a"), later, Ok(caller("a")), now);
        assert_eq!(cache.get(&digest("a"), now), Some(Ok(caller("a"))));
        assert_eq!(cache.get(&digest("a"), later), None, "expired at its deadline");
        cache.put(digest("alice"), later, Ok(caller("alice")), now);
        for t in ["b", "c", "d", "e"] {
            cache.put(digest(t), later, Err("rejected".into()), now);
            assert!(cache.entries.len() <= 2);
        }
        assert!(cache.get(&digest("e"), now).is_some());
        assert_eq!(
            cache.get(&digest("alice"), now),
            Some(Ok(caller("alice"))),
            "a flood of rejected tokens does not push out a caller"
        );
    }

    fn limits(per_minute: u32) -> AuthLimits {
        AuthLimits {
            max_token_bytes: 64,
            reviews_in_flight: 4,
            token_reviews_per_source_per_minute: per_minute,
        }
    }

    const SOURCE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn without_a_client_every_request_is_unavailable_never_a_pass() {
        let auth = Authorizer::new(
            Err("no kubeconfig".into()),
            vec![],
            Duration::from_secs(1),
            &limits(60),
        );
        let denied = auth.authenticate("t", SOURCE).await.unwrap_err();
        assert!(
            matches!(denied, Denial::Unavailable(ref m) if m.contains("no kubeconfig")),
            "{denied:?}"
        );
        let access = Access::create("checks", None, None);
        assert!(matches!(
            auth.authorize(&caller("a"), &access).await,
            Err(Denial::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn an_oversized_token_is_refused_before_any_review() {
        let auth = Authorizer::new(
            Err("no kubeconfig".into()),
            vec![],
            Duration::from_secs(1),
            &limits(60),
        );
        let denied = auth.authenticate(&"x".repeat(65), SOURCE).await.unwrap_err();
        assert_eq!(
            denied,
            Denial::Unauthenticated(
                "the bearer token has 65 bytes, more than the 64 this endpoint accepts".into()
            )
        );
    }

    #[tokio::test]
    async fn an_address_over_its_review_budget_is_throttled_before_the_api_is_asked() {
        let auth = Authorizer::new(
            Err("no kubeconfig".into()),
            vec![],
            Duration::from_secs(1),
            &limits(8),
        );
        for token in ["a", "b"] {
            let denied = auth.authenticate(token, SOURCE).await.unwrap_err();
            assert!(matches!(denied, Denial::Unavailable(_)), "{denied:?}");
        }
        let denied = auth.authenticate("c", SOURCE).await.unwrap_err();
        assert!(matches!(denied, Denial::Throttled(_)), "{denied:?}");
        let elsewhere = auth
            .authenticate("c", IpAddr::from([10, 0, 0, 1]))
            .await
            .unwrap_err();
        assert!(matches!(elsewhere, Denial::Unavailable(_)), "{elsewhere:?}");
    }
}
