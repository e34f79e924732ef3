//! Who is calling and what they may do: bearer tokens checked with a TokenReview (results cached
//! for a short, bounded time), each request authorized with a SubjectAccessReview on a virtual
//! resource of the `netdiag.io` group. The API server is the only I/O; an API server that cannot
//! be asked is [`Denial::Unavailable`], never a pass.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::Api;
use kube::api::PostParams;

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
    /// The API server could not be asked (503).
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

/// TokenReview outcomes by token digest; entries live `ttl` (rejections a fifth of it), at most
/// `capacity` of them.
struct Cache {
    entries: HashMap<Digest, (Instant, Result<Caller, String>)>,
    capacity: usize,
}

impl Cache {
    fn get(&mut self, key: &Digest, now: Instant) -> Option<Result<Caller, String>> {
        match self.entries.get(key) {
            Some((expires, outcome)) if *expires > now => Some(outcome.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&mut self, key: Digest, expires: Instant, outcome: Result<Caller, String>, now: Instant) {
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, (e, _)| *e > now);
        }
        if self.entries.len() >= self.capacity {
            self.entries.clear();
        }
        self.entries.insert(key, (expires, outcome));
    }
}

pub struct Authorizer {
    client: Result<kube::Client, String>,
    audiences: Vec<String>,
    ttl: Duration,
    cache: Mutex<Cache>,
}

fn digest(token: &str) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Authorizer {
    /// `client` is the agent's own client, or why it has none (every request is then 503).
    pub fn new(client: Result<kube::Client, String>, audiences: Vec<String>, ttl: Duration) -> Self {
        Authorizer {
            client,
            audiences,
            ttl,
            cache: Mutex::new(Cache {
                entries: HashMap::new(),
                capacity: 4096,
            }),
        }
    }

    fn client(&self) -> Result<&kube::Client, Denial> {
        self.client
            .as_ref()
            .map_err(|why| Denial::Unavailable(format!("the agent has no kubernetes client: {why}")))
    }

    /// The caller behind `token`, from the cache or a TokenReview.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, Denial> {
        let key = digest(token);
        let cached = self
            .cache
            .lock()
            .expect("auth cache lock")
            .get(&key, Instant::now());
        let outcome = match cached {
            Some(outcome) => outcome,
            None => {
                let outcome = self.review_token(token).await?;
                let ttl = if outcome.is_ok() { self.ttl } else { self.ttl / 5 };
                let now = Instant::now();
                self.cache
                    .lock()
                    .expect("auth cache lock")
                    .put(key, now + ttl, outcome.clone(), now);
                outcome
            }
        };
        outcome.map_err(Denial::Unauthenticated)
    }

    async fn review_token(&self, token: &str) -> Result<Result<Caller, String>, Denial> {
        let api: Api<TokenReview> = Api::all(self.client()?.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
            },
            ..Default::default()
        };
        let answer = api.create(&PostParams::default(), &review).await.map_err(|e| {
            Denial::Unavailable(format!(
                "failed to create a tokenreview: {}",
                crate::cli::error_chain(&e)
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

    /// Whether `caller` may do `access`: a SubjectAccessReview, never cached.
    pub async fn authorize(&self, caller: &Caller, access: &Access) -> Result<(), Denial> {
        let api: Api<SubjectAccessReview> = Api::all(self.client()?.clone());
        let review = SubjectAccessReview {
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
        };
        let answer = api.create(&PostParams::default(), &review).await.map_err(|e| {
            Denial::Unavailable(format!(
                "failed to create a subjectaccessreview: {}",
                crate::cli::error_chain(&e)
            ))
        })?;
        let status = answer.status.unwrap_or_default();
        if status.allowed && status.denied != Some(true) {
            Ok(())
        } else {
            Err(Denial::Forbidden(access.missing(caller)))
        }
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
    fn cache_entries_expire_and_the_cache_stays_within_capacity() {
        let mut cache = Cache {
            entries: HashMap::new(),
            capacity: 2,
        };
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        cache.put(digest("a"), later, Ok(caller("a")), now);
        assert_eq!(cache.get(&digest("a"), now), Some(Ok(caller("a"))));
        assert_eq!(cache.get(&digest("a"), later), None, "expired at its deadline");
        for t in ["b", "c", "d", "e"] {
            cache.put(digest(t), later, Err("rejected".into()), now);
            assert!(cache.entries.len() <= 2);
        }
        assert!(cache.get(&digest("e"), now).is_some());
    }

    #[tokio::test]
    async fn without_a_client_every_request_is_unavailable_never_a_pass() {
        let auth = Authorizer::new(Err("no kubeconfig".into()), vec![], Duration::from_secs(1));
        let denied = auth.authenticate("t").await.unwrap_err();
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
}
