//! The API stand-in (`netdiag-lab api-serve`): the lab's objects as Kubernetes JSON over plain HTTP
//! on 127.0.0.1 — discovery, get and list with label and field selectors, server-side Tables for
//! kubectl, `Status` errors — and `pods/portforward` over WebSocket into a pod's network namespace,
//! as kubelet does it.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::serve::ListenerExt;
use futures::{SinkExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, APIVersions, GroupVersionForDiscovery,
    ServerAddressByClientCIDR, Status, StatusDetails,
};
use k8s_openapi::apimachinery::pkg::version::Info;
use kube::core::{Expression, Selector, SelectorExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::lab::ApiData;
use crate::objects::{RESOURCES, ResourceType, resource_of};
use crate::rbac::{Attributes, UserInfo};

pub struct Store {
    objects: Objects,
    pod_netns: BTreeMap<String, String>,
    address: String,
    /// Bearer tokens and RBAC objects for the review APIs ([`crate::reviews`]).
    pub(crate) tokens: Vec<crate::rbac::TokenSpec>,
    pub(crate) rbac: crate::rbac::Rbac,
}

impl Store {
    pub fn new(data: ApiData, address: String) -> Result<Self> {
        let mut objects = Objects::default();
        for o in data.objects {
            objects.insert(resource_of(&o)?, o);
        }
        let rbac = crate::rbac::Rbac::from_objects(&data.rbac).map_err(anyhow::Error::msg)?;
        Ok(Store {
            objects,
            pod_netns: data.pod_netns,
            address,
            tokens: data.tokens,
            rbac,
        })
    }
}

/// The stored objects, kept as the API server's storage keys them (type, namespace, name), so a get
/// is a lookup and a namespace's list reads that namespace only, whatever else the cluster holds.
#[derive(Default)]
struct Objects(HashMap<TypeKey, BTreeMap<String, BTreeMap<String, Value>>>);

/// A served type: group, version, plural.
type TypeKey = (&'static str, &'static str, &'static str);

fn type_key(rt: &ResourceType) -> TypeKey {
    (rt.group, rt.version, rt.plural)
}

impl Objects {
    fn insert(&mut self, rt: ResourceType, obj: Value) {
        let meta = |field: &str| str_at(&obj, &format!("/metadata/{field}")).to_string();
        let (namespace, name) = (meta("namespace"), meta("name"));
        self.0
            .entry(type_key(&rt))
            .or_default()
            .entry(namespace)
            .or_default()
            .insert(name, obj);
    }

    /// The object of `rt` named `name` in `namespace` (`None`: cluster-scoped).
    fn get(&self, rt: &ResourceType, namespace: Option<&str>, name: &str) -> Option<&Value> {
        self.0.get(&type_key(rt))?.get(namespace.unwrap_or(""))?.get(name)
    }

    /// The objects of `rt` in `namespace` (`None`: every namespace), by namespace and name.
    fn of(&self, rt: &ResourceType, namespace: Option<&str>) -> impl Iterator<Item = &Value> {
        self.0.get(&type_key(rt)).into_iter().flat_map(move |by_ns| {
            by_ns
                .iter()
                .filter(move |(ns, _)| namespace.is_none_or(|want| want == ns.as_str()))
                .flat_map(|(_, by_name)| by_name.values())
        })
    }
}

/// Runs the stand-in for the lab in `state_dir` until killed; prints its URL on stdout once listening.
pub fn serve(state_dir: PathBuf) -> Result<()> {
    let data: ApiData = serde_json::from_slice(
        &std::fs::read(state_dir.join("api.json")).context("failed to read api.json in the state dir")?,
    )
    .context("api.json is not valid")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let cluster_listener = match &data.cluster_listen {
            Some((netns, at)) => Some(bind_in(netns, at)?),
            None => None,
        };
        let store = Arc::new(Store::new(data, addr.to_string())?);
        if let Some(listener) = cluster_listener {
            tokio::spawn(axum::serve(listener.tap_io(no_delay), router(store.clone())).into_future());
        }
        println!("http://{addr}");
        // Nothing more goes to stdout: `up` stops reading it.
        axum::serve(listener.tap_io(no_delay), router(store)).await?;
        Ok(())
    })
}

/// Like the Kubernetes API server (Go sets TCP_NODELAY on every connection), each write leaves
/// at once instead of waiting for the ACK of the one before.
fn no_delay(stream: &mut tokio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
}

/// A listener on `addr` inside the named network namespace (where pods and agents reach it).
fn bind_in(netns: &str, addr: &str) -> Result<tokio::net::TcpListener> {
    let addr: SocketAddr = addr.parse().context("bad cluster listen address")?;
    let std = crate::netns::run_in(&crate::netns::named(netns), move || {
        std::net::TcpListener::bind(addr)
    })?
    .with_context(|| format!("failed to listen on {addr} in {netns}"))?;
    std.set_nonblocking(true)?;
    Ok(tokio::net::TcpListener::from_std(std)?)
}

pub fn router(store: Arc<Store>) -> Router {
    Router::new()
        .route(
            crate::reviews::TOKEN_REVIEW_PATH,
            axum::routing::post(crate::reviews::token_review),
        )
        .route(
            crate::reviews::ACCESS_REVIEW_PATH,
            axum::routing::post(crate::reviews::access_review),
        )
        .route(
            crate::reviews::SELF_ACCESS_REVIEW_PATH,
            axum::routing::post(crate::reviews::self_access_review),
        )
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/portforward",
            any(portforward),
        )
        .fallback(get_handler)
        .with_state(store)
}

fn json_response(code: StatusCode, body: &impl serde::Serialize) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
}

fn status(code: StatusCode, reason: &str, message: String, details: Option<StatusDetails>) -> Response {
    json_response(
        code,
        &Status {
            code: Some(i32::from(code.as_u16())),
            message: Some(message),
            reason: Some(reason.into()),
            status: Some("Failure".into()),
            details,
            ..Default::default()
        },
    )
}

fn not_found(rt: &ResourceType, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "{}{} \"{name}\" not found",
            rt.plural,
            if rt.group.is_empty() {
                String::new()
            } else {
                format!(".{}", rt.group)
            }
        ),
        Some(StatusDetails {
            name: Some(name.into()),
            group: (!rt.group.is_empty()).then(|| rt.group.into()),
            kind: Some(rt.plural.into()),
            ..Default::default()
        }),
    )
}

fn bad_request(message: String) -> Response {
    status(StatusCode::BAD_REQUEST, "BadRequest", message, None)
}

fn discovery_resources(group: &str, version: &str) -> Option<APIResourceList> {
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut resources: Vec<APIResource> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| APIResource {
            name: r.plural.into(),
            singular_name: r.singular.into(),
            kind: r.kind.into(),
            namespaced: r.namespaced,
            short_names: (!r.short_names.is_empty())
                .then(|| r.short_names.iter().map(|s| s.to_string()).collect()),
            verbs: vec!["get".into(), "list".into()],
            ..Default::default()
        })
        .collect();
    if resources.is_empty() {
        return crate::reviews::discovery(group, version);
    }
    if group.is_empty() {
        resources.push(APIResource {
            name: "pods/portforward".into(),
            singular_name: String::new(),
            kind: "PodPortForwardOptions".into(),
            namespaced: true,
            verbs: vec!["create".into(), "get".into()],
            ..Default::default()
        });
    }
    Some(APIResourceList {
        group_version: gv,
        resources,
    })
}

fn groups() -> APIGroupList {
    // Each group with its versions in RESOURCES order; the first is the preferred one.
    let mut versions: Vec<(&str, Vec<&str>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        match versions.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, vs)) if !vs.contains(&r.version) => vs.push(r.version),
            Some(_) => {}
            None => versions.push((r.group, vec![r.version])),
        }
    }
    versions.extend(crate::reviews::REVIEW_GROUPS.iter().map(|g| (*g, vec!["v1"])));
    APIGroupList {
        groups: versions
            .into_iter()
            .map(|(g, vs)| {
                let versions: Vec<GroupVersionForDiscovery> = vs
                    .into_iter()
                    .map(|v| GroupVersionForDiscovery {
                        group_version: format!("{g}/{v}"),
                        version: v.into(),
                    })
                    .collect();
                APIGroup {
                    name: g.into(),
                    preferred_version: versions.first().cloned(),
                    versions,
                    server_address_by_client_cidrs: None,
                }
            })
            .collect(),
    }
}

#[derive(Debug)]
enum FieldOp {
    Eq,
    Ne,
}

/// Parses a field selector (`key=value`, `key==value`, `key!=value`, comma-separated) for
/// resource type `rt`, refusing keys the API server does not support for it, as it does.
fn parse_field_selector(rt: &ResourceType, s: &str) -> Result<Vec<(String, FieldOp, String)>, String> {
    s.split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|term| {
            let (key, op, value) = if let Some((k, v)) = term.split_once("!=") {
                (k, FieldOp::Ne, v)
            } else if let Some((k, v)) = term.split_once("==") {
                (k, FieldOp::Eq, v)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, FieldOp::Eq, v)
            } else {
                return Err(format!(
                    "invalid field selector term {term:?}: expected key=value or key!=value"
                ));
            };
            let key = key.trim();
            if !selectable_fields(rt).contains(&key) {
                return Err(format!("field label not supported: {key}"));
            }
            Ok((key.to_string(), op, value.trim().to_string()))
        })
        .collect()
}

/// The field labels the API server accepts in a fieldSelector for each resource type.
fn selectable_fields(rt: &ResourceType) -> Vec<&'static str> {
    let mut out = vec!["metadata.name"];
    if rt.namespaced {
        out.push("metadata.namespace");
    }
    out.extend_from_slice(match rt.plural {
        "pods" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ][..],
        "nodes" => &["spec.unschedulable"][..],
        "namespaces" => &["name", "status.phase"][..],
        "services" => &["spec.clusterIP", "spec.type"][..],
        _ => &[][..],
    });
    out
}

/// The value of a selectable field: the string at its dotted path; a missing field is empty, or
/// `false` for the boolean fields the API server renders as text.
fn field_value(obj: &Value, key: &str) -> String {
    let key = if key == "name" { "metadata.name" } else { key };
    match key.split('.').try_fold(obj, |v, k| v.get(k)) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        _ if matches!(key, "spec.hostNetwork" | "spec.unschedulable") => "false".into(),
        _ => String::new(),
    }
}

/// Parses a label selector string (`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`).
pub fn parse_label_selector(s: &str) -> Result<Selector, String> {
    let mut terms = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    let is_key = |c: char| c.is_ascii_alphanumeric() || "-_./".contains(c);
    let is_value = |v: &str| v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    let value = |v: &str, term: &str| -> Result<String, String> {
        let v = v.trim();
        if is_value(v) {
            Ok(v.to_string())
        } else {
            Err(format!(
                "invalid label selector term {term:?}: {v:?} is not a label value"
            ))
        }
    };
    let set = |rest: &str, term: &str| -> Result<std::collections::BTreeSet<String>, String> {
        let inner = rest
            .trim()
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| format!("invalid label selector term {term:?}: expected a (value, ...) set"))?;
        inner
            .split(',')
            .map(|v| value(v, term))
            .filter(|v| v.as_ref().map_or(true, |v| !v.is_empty()))
            .collect()
    };
    let mut exprs = Vec::new();
    for term in terms.into_iter().map(str::trim).filter(|t| !t.is_empty()) {
        // A key, then an operator (or nothing): the grammar of the API server's selector parser.
        let (negated, body) = match term.strip_prefix('!') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, term),
        };
        let key_end = body.find(|c: char| !is_key(c)).unwrap_or(body.len());
        let (key, rest) = body.split_at(key_end);
        let rest = rest.trim_start();
        if key.is_empty() {
            return Err(format!("invalid label selector term {term:?}: no label key"));
        }
        let key = key.to_string();
        let expr = if negated {
            if !rest.is_empty() {
                return Err(format!(
                    "invalid label selector term {term:?}: `!key` takes no operator"
                ));
            }
            Expression::DoesNotExist(key)
        } else if rest.is_empty() {
            Expression::Exists(key)
        } else if let Some(v) = rest.strip_prefix("!=") {
            Expression::NotEqual(key, value(v, term)?)
        } else if let Some(v) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
            Expression::Equal(key, value(v, term)?)
        } else if let Some(r) = rest.strip_prefix("notin") {
            Expression::NotIn(key, set(r, term)?)
        } else if let Some(r) = rest.strip_prefix("in") {
            Expression::In(key, set(r, term)?)
        } else {
            return Err(format!("invalid label selector term {term:?}"));
        };
        exprs.push(expr);
    }
    Ok(exprs.into_iter().collect())
}

fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

async fn get_handler(
    State(store): State<Arc<Store>>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if method != axum::http::Method::GET {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("the lab's api stand-in is read-only; {method} is not supported"),
            None,
        );
    }
    let path = uri.path().trim_end_matches('/');
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(response) = discovery(&store, &segs) {
        return response;
    }
    let ResourceRoute { rt, namespace, name } = match resource_route(&segs, path) {
        Ok(route) => route,
        Err(response) => return *response,
    };
    let verb = if name.is_some() { "get" } else { "list" };
    // kube-apiserver authorizes a Namespace's get in that namespace (a RoleBinding there allows it).
    let scope = match (rt.plural, name) {
        ("namespaces", Some(ns)) => Some(ns),
        _ => namespace,
    };
    let access = Attributes {
        verb: verb.into(),
        group: rt.group.into(),
        resource: rt.plural.into(),
        namespace: scope.unwrap_or_default().into(),
        name: name.unwrap_or_default().into(),
        ..Attributes::default()
    };
    if let Err(refused) = admit(&store, &headers, access) {
        return *refused;
    }
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return bad_request("watch is not supported by the lab's api stand-in".into());
    }
    let as_table = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"));
    match name {
        Some(name) => get_one(&store, &rt, namespace, name, as_table),
        None => list(&store, &rt, namespace, &query, as_table),
    }
}

/// Authenticates and authorizes a request as kube-apiserver does: a bearer token stands for a
/// scenario's user, whom RBAC must allow `access` (its user and groups are filled in here); a
/// request without one is the lab's administrator, as the real lab's admin client certificate is.
/// `Err` is the 401 or 403 to answer; `Ok` the user, `None` for the administrator.
pub(crate) fn admit(
    store: &Store,
    headers: &HeaderMap,
    mut access: Attributes,
) -> Result<Option<UserInfo>, Box<Response>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let unauthorized = || {
        Box::new(status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized".into(),
            None,
        ))
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    let (user, _) =
        crate::rbac::authenticate(&store.tokens, token.trim(), &[]).map_err(|_| unauthorized())?;
    access.user = user.username.clone();
    access.groups = user.groups.clone();
    match store.rbac.authorize(&access) {
        Ok(_) => Ok(Some(user)),
        Err(_) => Err(Box::new(forbidden(&access))),
    }
}

/// kube-apiserver's 403 for a request RBAC refuses, worded as its `forbiddenMessage`.
fn forbidden(access: &Attributes) -> Response {
    let resource = match access.subresource.as_str() {
        "" => access.resource.clone(),
        sub => format!("{}/{sub}", access.resource),
    };
    let scope = match access.namespace.as_str() {
        "" => "at the cluster scope".to_string(),
        ns => format!("in the namespace {ns:?}"),
    };
    let qualified = match access.group.as_str() {
        "" => access.resource.clone(),
        group => format!("{}.{group}", access.resource),
    };
    let what = match access.name.as_str() {
        "" => qualified,
        name => format!("{qualified} {name:?}"),
    };
    let message = format!(
        "{what} is forbidden: User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
        access.user, access.verb, access.group
    );
    let details = StatusDetails {
        name: Some(access.name.clone()).filter(|n| !n.is_empty()),
        group: Some(access.group.clone()),
        kind: Some(access.resource.clone()),
        ..Default::default()
    };
    status(StatusCode::FORBIDDEN, "Forbidden", message, Some(details))
}

/// The version, health and API group discovery paths; `None` for every other path.
fn discovery(store: &Store, segs: &[&str]) -> Option<Response> {
    let response = match segs {
        ["version"] => json_response(
            StatusCode::OK,
            &Info {
                major: "1".into(),
                minor: "34".into(),
                git_version: "v1.34.0-netdiag-lab".into(),
                git_commit: "0000000000000000000000000000000000000000".into(),
                git_tree_state: "clean".into(),
                build_date: "2025-08-27T00:00:00Z".into(),
                go_version: "go1.24".into(),
                compiler: "gc".into(),
                platform: "linux/amd64".into(),
                ..Default::default()
            },
        ),
        ["healthz"] | ["readyz"] | ["livez"] => (StatusCode::OK, "ok").into_response(),
        ["api"] => json_response(
            StatusCode::OK,
            &APIVersions {
                versions: vec!["v1".into()],
                server_address_by_client_cidrs: vec![ServerAddressByClientCIDR {
                    client_cidr: "0.0.0.0/0".into(),
                    server_address: store.address.clone(),
                }],
            },
        ),
        ["apis"] => json_response(StatusCode::OK, &groups()),
        ["apis", group] => match groups().groups.into_iter().find(|g| g.name == *group) {
            Some(g) => json_response(StatusCode::OK, &g),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("api group {group} not found"),
                None,
            ),
        },
        _ => return None,
    };
    Some(response)
}

/// What a resource path names: objects of one type, in one namespace or all, or one by name.
struct ResourceRoute<'a> {
    rt: ResourceType,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
}

/// The resource type, namespace and name a resource path names, or the response for a path that
/// names none (a group version's resource list, or not found).
fn resource_route<'a>(segs: &[&'a str], path: &str) -> Result<ResourceRoute<'a>, Box<Response>> {
    let not_found = || {
        Box::new(status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find {path}"),
            None,
        ))
    };
    let (group, version, rest) = match segs {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(not_found()),
    };
    if rest.is_empty() {
        return Err(match discovery_resources(group, version) {
            Some(list) => Box::new(json_response(StatusCode::OK, &list)),
            None => not_found(),
        });
    }
    let find = |plural: &str| {
        RESOURCES
            .iter()
            .find(|r| r.plural == plural && r.group == group && r.version == version)
    };
    // (resource type, namespace filter, name)
    let (rt, namespace, name) = match rest {
        [res] => (find(res), None, None),
        ["namespaces", ns, res] => (find(res), Some(*ns), None),
        ["namespaces", ns, res, name] => (find(res), Some(*ns), Some(*name)),
        [res, name] => match find(res) {
            Some(rt) if !rt.namespaced => (Some(rt), None, Some(*name)),
            _ => (None, None, None),
        },
        _ => (None, None, None),
    };
    match rt.copied() {
        Some(rt) if namespace.is_none() || rt.namespaced => Ok(ResourceRoute { rt, namespace, name }),
        _ => Err(not_found()),
    }
}

/// One object by name.
fn get_one(
    store: &Store,
    rt: &ResourceType,
    namespace: Option<&str>,
    name: &str,
    as_table: bool,
) -> Response {
    match store.objects.get(rt, namespace, name) {
        Some(obj) if as_table => table_response(rt, &[obj]),
        Some(obj) => json_response(StatusCode::OK, obj),
        None => not_found(rt, name),
    }
}

/// The objects of `rt` in `namespace` that the label and field selectors of `query` select.
fn list(
    store: &Store,
    rt: &ResourceType,
    namespace: Option<&str>,
    query: &HashMap<String, String>,
    as_table: bool,
) -> Response {
    let labels = match query
        .get("labelSelector")
        .map(|s| parse_label_selector(s))
        .transpose()
    {
        Ok(s) => s,
        Err(e) => return bad_request(e),
    };
    let fields = match query
        .get("fieldSelector")
        .map(|s| parse_field_selector(rt, s))
        .transpose()
    {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => return bad_request(e),
    };
    let items: Vec<&Value> = store
        .objects
        .of(rt, namespace)
        .filter(|o| labels.as_ref().is_none_or(|s| s.matches(&labels_of(o))))
        .filter(|o| {
            fields.iter().all(|(path, op, value)| {
                let actual = field_value(o, path);
                let actual = actual.as_str();
                match op {
                    FieldOp::Eq => actual == value,
                    FieldOp::Ne => actual != value,
                }
            })
        })
        .collect();
    if as_table {
        return table_response(rt, &items);
    }
    let (page, next) = match page_of(query, items.len()) {
        Ok(page) => page,
        Err(message) => return bad_request(message),
    };
    let mut metadata = json!({"resourceVersion": "1"});
    if let Some(next) = next {
        metadata["continue"] = json!(format!("{CONTINUE_PREFIX}{next}"));
        metadata["remainingItemCount"] = json!(items.len() - next);
    }
    let body = ListBody {
        api_version: rt.api_version(),
        kind: format!("{}List", rt.kind),
        metadata,
        items: items[page].iter().copied().map(ListItem).collect(),
    };
    json_response(StatusCode::OK, &body)
}

/// The stand-in's continue token: the position of the next item in the selected list. Opaque to
/// clients, as the API server's is; the store never changes, so a position stays valid.
const CONTINUE_PREFIX: &str = "lab-continue-";

/// The items of a selected list of `len` that one response carries, as the API server pages a
/// list: `limit` items at most (none or 0: all) from where `continue` says, and the position of
/// the next page when items remain.
fn page_of(
    query: &HashMap<String, String>,
    len: usize,
) -> Result<(std::ops::Range<usize>, Option<usize>), String> {
    let start = match query.get("continue").filter(|t| !t.is_empty()) {
        None => 0,
        Some(token) => token
            .strip_prefix(CONTINUE_PREFIX)
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= len)
            .ok_or_else(|| format!("continue key is not valid: {token}"))?,
    };
    let limit = match query.get("limit").filter(|l| !l.is_empty()) {
        None => 0,
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| format!("limit: invalid value {text:?}"))?,
    };
    let end = if limit == 0 { len } else { (start + limit).min(len) };
    Ok((start..end, (end < len).then_some(end)))
}

/// A list response, its items written from the stored objects without copying them (at
/// hundreds of pods the copies cost the stand-in milliseconds a list).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ListBody<'a> {
    api_version: String,
    kind: String,
    metadata: Value,
    items: Vec<ListItem<'a>>,
}

/// A stored object as a list item: as the API server does, without apiVersion and kind (the
/// List names them).
struct ListItem<'a>(&'a Value);

impl serde::Serialize for ListItem<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Some(fields) = self.0.as_object() else {
            return self.0.serialize(serializer);
        };
        let kept = fields.iter().filter(|(k, _)| *k != "apiVersion" && *k != "kind");
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in kept {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

fn age(obj: &Value) -> String {
    let Some(ts) = obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<k8s_openapi::jiff::Timestamp>().ok())
    else {
        return "<unknown>".into();
    };
    let secs = (k8s_openapi::jiff::Timestamp::now().as_second() - ts.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn join_or(items: Vec<String>, empty: &str) -> String {
    if items.is_empty() {
        empty.to_string()
    } else {
        items.join(",")
    }
}

/// A Service's EXTERNAL-IP column: a LoadBalancer's ingress addresses (`<pending>` before it has
/// one), with `spec.externalIPs`.
fn external_ips(svc: &Value) -> String {
    let strings = |at: &str| -> Vec<String> {
        svc.pointer(at)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    };
    let mut ips = Vec::new();
    if str_at(svc, "/spec/type") == "LoadBalancer" {
        let ingress = svc
            .pointer("/status/loadBalancer/ingress")
            .and_then(Value::as_array);
        ips.extend(
            ingress
                .into_iter()
                .flatten()
                .filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()).map(String::from)),
        );
        ips.extend(strings("/spec/externalIPs"));
        return join_or(ips, "<pending>");
    }
    join_or(strings("/spec/externalIPs"), "<none>")
}

fn selector_text(sel: Option<&Value>) -> String {
    let Some(map) = sel.and_then(Value::as_object) else {
        return "<none>".into();
    };
    join_or(
        map.iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect(),
        "<none>",
    )
}

/// Columns (name, type, priority) and cells of the server-side Table kubectl prints.
fn table_columns(rt: &ResourceType) -> Vec<(&'static str, &'static str, i32)> {
    match rt.plural {
        "pods" => vec![
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
        ],
        "services" => vec![
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
            ("Selector", "string", 1),
        ],
        "endpointslices" => vec![
            ("Name", "string", 0),
            ("AddressType", "string", 0),
            ("Ports", "string", 0),
            ("Endpoints", "string", 0),
            ("Age", "string", 0),
        ],
        "networkpolicies" => vec![
            ("Name", "string", 0),
            ("Pod-Selector", "string", 0),
            ("Age", "string", 0),
        ],
        "namespaces" => vec![
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Age", "string", 0),
        ],
        "clusternetworkpolicies" | "adminnetworkpolicies" | "baselineadminnetworkpolicies" => {
            vec![("Name", "string", 0), ("Age", "string", 0)]
        }
        "daemonsets" => vec![
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
        ],
        _ => vec![
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
        ],
    }
}

fn table_cells(rt: &ResourceType, o: &Value) -> Vec<Value> {
    let name = Value::from(str_at(o, "/metadata/name"));
    match rt.plural {
        "pods" => {
            let statuses = o.pointer("/status/containerStatuses").and_then(Value::as_array);
            let total = statuses.map_or(0, Vec::len);
            let ready = statuses.map_or(0, |s| s.iter().filter(|c| c["ready"] == true).count());
            vec![
                name,
                format!("{ready}/{total}").into(),
                str_at(o, "/status/phase").into(),
                "0".into(),
                age(o).into(),
                str_at(o, "/status/podIP").into(),
                str_at(o, "/spec/nodeName").into(),
            ]
        }
        "services" => {
            let ports = o
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            // As kubectl's printer writes them: `PORT:NODEPORT/PROTOCOL` for a node port.
            let ports = ports
                .iter()
                .map(|p| {
                    let protocol = p["protocol"].as_str().unwrap_or("TCP");
                    match p.get("nodePort").and_then(Value::as_u64) {
                        Some(node_port) => format!("{}:{node_port}/{protocol}", p["port"]),
                        None => format!("{}/{protocol}", p["port"]),
                    }
                })
                .collect();
            vec![
                name,
                str_at(o, "/spec/type").into(),
                str_at(o, "/spec/clusterIP").into(),
                external_ips(o).into(),
                join_or(ports, "<none>").into(),
                age(o).into(),
                selector_text(o.pointer("/spec/selector")).into(),
            ]
        }
        "endpointslices" => {
            let ports = o
                .get("ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let ports = ports.iter().map(|p| p["port"].to_string()).collect();
            let eps = o
                .get("endpoints")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let addrs = eps
                .iter()
                .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
                .map(|a| a.as_str().unwrap_or("").to_string())
                .collect();
            vec![
                name,
                str_at(o, "/addressType").into(),
                join_or(ports, "<unset>").into(),
                join_or(addrs, "<unset>").into(),
                age(o).into(),
            ]
        }
        "networkpolicies" => {
            let sel = o.pointer("/spec/podSelector/matchLabels");
            vec![name, selector_text(sel).into(), age(o).into()]
        }
        "namespaces" => vec![name, str_at(o, "/status/phase").into(), age(o).into()],
        "clusternetworkpolicies" | "adminnetworkpolicies" | "baselineadminnetworkpolicies" => {
            vec![name, age(o).into()]
        }
        "daemonsets" => vec![
            name,
            o.pointer("/status/desiredNumberScheduled")
                .cloned()
                .unwrap_or_default(),
            o.pointer("/status/currentNumberScheduled")
                .cloned()
                .unwrap_or_default(),
            o.pointer("/status/numberReady").cloned().unwrap_or_default(),
            age(o).into(),
        ],
        _ => {
            let ip = o
                .pointer("/status/addresses")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
                .and_then(|x| x["address"].as_str())
                .unwrap_or("");
            vec![
                name,
                "Ready".into(),
                "<none>".into(),
                age(o).into(),
                str_at(o, "/status/nodeInfo/kubeletVersion").into(),
                ip.into(),
            ]
        }
    }
}

fn table_response(rt: &ResourceType, items: &[&Value]) -> Response {
    let columns: Vec<Value> = table_columns(rt)
        .into_iter()
        .map(|(name, ty, priority)| {
            json!({"name": name, "type": ty, "format": if name == "Name" { "name" } else { "" },
                   "description": "", "priority": priority})
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            json!({
                "cells": table_cells(rt, o),
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]},
            })
        })
        .collect();
    let body = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "1"},
        "columnDefinitions": columns,
        "rows": rows,
    });
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/json;as=Table;v=v1;g=meta.k8s.io",
        )],
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response()
}

/// `pods/portforward`: the WebSocket channel protocol (`v5.channel.k8s.io`, `v4.channel.k8s.io`).
/// Port i uses data channel 2i and error channel 2i+1; the first frame on each carries the port
/// number little-endian. Each port is a TCP connection to 127.0.0.1:PORT made inside the pod's
/// network namespace, as kubelet makes it.
async fn portforward(
    State(store): State<Arc<Store>>,
    UrlPath((namespace, name)): UrlPath<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // The WebSocket upgrade is a GET; since Kubernetes 1.35 kube-apiserver also asks for `create`.
    for verb in ["get", "create"] {
        let access = Attributes {
            verb: verb.into(),
            resource: "pods".into(),
            subresource: "portforward".into(),
            namespace: namespace.clone(),
            name: name.clone(),
            ..Attributes::default()
        };
        if let Err(refused) = admit(&store, &headers, access) {
            return *refused;
        }
    }
    let pods = RESOURCES
        .iter()
        .find(|r| r.plural == "pods")
        .expect("pods is a served resource");
    let Some(netns) = store.pod_netns.get(&format!("{namespace}/{name}")).cloned() else {
        return not_found(pods, &name);
    };
    let ports: Result<Vec<u16>, _> = query
        .get("ports")
        .map(String::as_str)
        .unwrap_or("")
        .split(',')
        .map(|p| p.trim().parse::<u16>())
        .collect();
    let ports = match ports {
        Ok(p) if !p.is_empty() && p.iter().all(|&x| x != 0) => p,
        _ => return bad_request("portforward needs ports=PORT[,PORT...] with ports in 1..=65535".into()),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return bad_request(format!(
                "pods/portforward on the lab's api stand-in speaks only the websocket channel protocol: {e}"
            ));
        }
    };
    let pod = format!("{namespace}/{name}");
    ws.protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
        .on_upgrade(move |socket| async move {
            if let Err(e) = relay(socket, ports, crate::netns::named(&netns), pod.clone()).await {
                eprintln!("portforward to pod {pod} ended: {e:#}");
            }
        })
        .into_response()
}

enum FromPod {
    Data(usize, Bytes),
    Closed(usize),
}

/// Reads what the client still sends (its close frame, late data) for up to a second, so the close
/// handshake completes instead of the connection being reset.
async fn drain(stream: &mut futures::stream::SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
}

async fn relay(socket: WebSocket, ports: Vec<u16>, netns: PathBuf, pod: String) -> Result<()> {
    let (mut sink, mut stream) = socket.split();
    for (i, port) in ports.iter().enumerate() {
        for ch in [2 * i as u8, 2 * i as u8 + 1] {
            let [lo, hi] = port.to_le_bytes();
            sink.send(Message::Binary(Bytes::from(vec![ch, lo, hi]))).await?;
        }
    }
    let (tx, mut rx) = mpsc::channel::<FromPod>(64);
    let mut writers: Vec<Option<tokio::net::tcp::OwnedWriteHalf>> = Vec::new();
    let mut open = 0;
    for (i, &port) in ports.iter().enumerate() {
        let ns = netns.clone();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let conn =
            tokio::task::spawn_blocking(move || crate::netns::connect_tcp(&ns, addr, Duration::from_secs(5)))
                .await?
                .and_then(|s| {
                    // As kubelet's Go dialer does.
                    s.set_nodelay(true)?;
                    s.set_nonblocking(true)?;
                    tokio::net::TcpStream::from_std(s)
                });
        match conn {
            Ok(conn) => {
                let (mut read, write) = conn.into_split();
                writers.push(Some(write));
                open += 1;
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    loop {
                        match read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if tx
                                    .send(FromPod::Data(i, Bytes::copy_from_slice(&buf[..n])))
                                    .await
                                    .is_err()
                                {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = tx.send(FromPod::Closed(i)).await;
                });
            }
            Err(e) => {
                writers.push(None);
                let msg = format!(
                    "error forwarding port {port} to pod {pod}: failed to connect to localhost:{port} inside the \
                     pod's network namespace: {e}"
                );
                let mut frame = vec![2 * i as u8 + 1];
                frame.extend_from_slice(msg.as_bytes());
                sink.send(Message::Binary(Bytes::from(frame))).await?;
            }
        }
    }
    drop(tx);
    if open == 0 {
        let _ = sink.send(Message::Close(None)).await;
        drain(&mut stream).await;
        return Ok(());
    }
    loop {
        tokio::select! {
            from_pod = rx.recv() => match from_pod {
                None => return Ok(()),
                Some(FromPod::Data(i, data)) => {
                    let mut frame = Vec::with_capacity(data.len() + 1);
                    frame.push(2 * i as u8);
                    frame.extend_from_slice(&data);
                    sink.send(Message::Binary(Bytes::from(frame))).await?;
                }
                Some(FromPod::Closed(i)) => {
                    writers[i] = None;
                    open -= 1;
                    if open == 0 {
                        let _ = sink.send(Message::Close(None)).await;
                        drain(&mut stream).await;
                        return Ok(());
                    }
                }
            },
            from_client = stream.next() => match from_client {
                Some(Ok(Message::Binary(b))) if !b.is_empty() => {
                    let ch = b[0] as usize;
                    if ch == 255 {
                        // v5 CLOSE signal: the client finished writing to the stream in b[1].
                        if let Some(Some(w)) = b.get(1).and_then(|s| writers.get_mut(*s as usize / 2)) {
                            let _ = w.shutdown().await;
                        }
                    } else if ch.is_multiple_of(2)
                        && let Some(Some(w)) = writers.get_mut(ch / 2)
                    {
                        w.write_all(&b[1..]).await?;
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    // Let the websocket answer the close handshake before the connection drops.
                    drain(&mut stream).await;
                    return Ok(());
                }
                None | Some(Err(_)) => return Ok(()),
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_supports_equality_sets_and_existence() {
        let l = labels(&[("app", "pay"), ("tier", "web")]);
        let yes = [
            "app=pay",
            "app==pay,tier",
            "app in (pay, x)",
            "tier notin (db)",
            "!missing",
            "app!=x",
            "",
        ];
        for s in yes {
            assert!(parse_label_selector(s).unwrap().matches(&l), "{s} should match");
        }
        for s in ["app=x", "app in (a,b)", "!tier", "missing", "app=pay,tier=db"] {
            assert!(
                !parse_label_selector(s).unwrap().matches(&l),
                "{s} should not match"
            );
        }
        assert!(parse_label_selector("app in pay").is_err());
        for s in ["app=a=b", "=x", "app in (a b)", "!app=x", "app ~ x"] {
            assert!(parse_label_selector(s).is_err(), "{s} is not a selector");
        }
        assert!(parse_label_selector("app in(pay)").unwrap().matches(&l));
        assert!(
            parse_label_selector("app.kubernetes.io/name notin (x),!missing")
                .unwrap()
                .matches(&l)
        );
    }

    #[test]
    fn field_selector_reads_dotted_paths_missing_strings_are_empty_and_missing_booleans_false() {
        let pods = RESOURCES.iter().find(|r| r.plural == "pods").unwrap();
        let pod = json!({"metadata": {"name": "a"}, "spec": {"nodeName": "node-b"}});
        let f = parse_field_selector(pods, "spec.nodeName=node-b,metadata.name!=b").unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(field_value(&pod, &f[0].0), "node-b");
        assert_eq!(field_value(&pod, "status.podIP"), "");
        assert_eq!(field_value(&pod, "spec.hostNetwork"), "false");
        assert!(parse_field_selector(pods, "nonsense").is_err());
    }

    #[test]
    fn service_rows_show_node_ports_and_load_balancer_addresses_as_kubectl_prints_them() {
        let services = RESOURCES.iter().find(|r| r.plural == "services").unwrap();
        let lb = json!({
            "metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.1.1",
                     "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP", "nodePort": 30053}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}
        });
        let cells = table_cells(services, &lb);
        assert_eq!(cells[3], "203.0.113.10");
        assert_eq!(cells[4], "80:30080/TCP,53:30053/UDP");
        let pending = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": []}});
        assert_eq!(table_cells(services, &pending)[3], "<pending>");
        let plain =
            json!({"metadata": {"name": "s"}, "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}});
        assert_eq!(table_cells(services, &plain)[3], "<none>");
        assert_eq!(table_cells(services, &plain)[4], "80/TCP");
    }

    #[test]
    fn field_selector_refuses_fields_the_api_server_does_not_index() {
        let find = |plural: &str| RESOURCES.iter().find(|r| r.plural == plural).unwrap();
        assert_eq!(
            parse_field_selector(find("pods"), "spec.containers=x").unwrap_err(),
            "field label not supported: spec.containers"
        );
        assert!(parse_field_selector(find("services"), "spec.clusterIP=None").is_ok());
        assert!(parse_field_selector(find("endpointslices"), "addressType=IPv4").is_err());
        assert!(parse_field_selector(find("nodes"), "metadata.namespace=x").is_err());
        assert!(parse_field_selector(find("namespaces"), "status.phase=Active").is_ok());
    }

    fn store() -> Arc<Store> {
        store_with(vec![], vec![])
    }

    fn store_with(tokens: Vec<crate::rbac::TokenSpec>, rbac: Vec<Value>) -> Arc<Store> {
        let scenario = crate::scenario::Scenario::parse(
            "name: t\nnodes: [a, b]\npods:\n- {namespace: shop, name: p0, node: a, labels: {app: pay}}\n\
             - {namespace: shop, name: p1, node: b, labels: {app: pay, tier: web}}\n\
             - {namespace: db, name: d0, node: b, labels: {app: db}}\n\
             services:\n- {namespace: shop, name: pay, selector: {app: pay}, ports: [{port: 80}]}\n",
        )
        .unwrap();
        let plan = crate::plan::Plan::new(&scenario, "nl000001", false).unwrap();
        let objects =
            crate::objects::all_objects(&scenario, &plan, k8s_openapi::jiff::Timestamp::UNIX_EPOCH).unwrap();
        let pod_netns = plan.pods.iter().map(|p| (p.key(), p.netns.clone())).collect();
        Arc::new(
            Store::new(
                ApiData {
                    objects,
                    pod_netns,
                    tokens,
                    rbac,
                    cluster_listen: None,
                },
                "127.0.0.1:1".into(),
            )
            .unwrap(),
        )
    }

    /// A store where `shop-dev` (group shop-developers) is bound as the shipped namespace example
    /// binds a team, and `nobody` is bound to nothing.
    fn namespace_user_store() -> Arc<Store> {
        let user = |token: &str, name: &str, groups: &[&str]| crate::rbac::TokenSpec {
            token: token.into(),
            user: Some(name.into()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            service_account: None,
            audiences: vec![],
        };
        let mut rbac = Vec::new();
        for text in [
            crate::rbac::SHIPPED_USER_RBAC,
            crate::rbac::BASIC_USER_RBAC,
            include_str!("../../deploy/examples/namespace-user-bindings.yaml"),
        ] {
            rbac.extend(crate::rbac::yaml_objects(text).unwrap());
        }
        store_with(
            vec![
                user("dev-token", "shop-dev", &["shop-developers"]),
                user("nobody-token", "nobody", &[]),
            ],
            rbac,
        )
    }

    async fn request(
        store: Arc<Store>,
        req: axum::http::request::Builder,
        body: Value,
    ) -> (StatusCode, Value) {
        use tower::ServiceExt;
        let body = axum::body::Body::from(body.to_string());
        let resp = router(store).oneshot(req.body(body).unwrap()).await.unwrap();
        let code = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn get_as(token: &str, uri: &str) -> (StatusCode, Value) {
        let req = axum::http::Request::get(uri).header(header::AUTHORIZATION, format!("Bearer {token}"));
        request(namespace_user_store(), req, Value::Null).await
    }

    #[tokio::test]
    async fn reads_are_held_to_the_callers_rbac_as_kube_apiserver_holds_them() {
        // A team bound in shop reads shop, its Namespace, and the agents' pods in netdiag.
        for uri in [
            "/api/v1/namespaces/shop/pods",
            "/api/v1/namespaces/shop/pods/p0",
            "/api/v1/namespaces/shop",
            "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies",
            "/api/v1/namespaces/netdiag/pods?labelSelector=app.kubernetes.io%2Fname%3Dnetdiag-agent",
        ] {
            assert_ne!(get_as("dev-token", uri).await.0, StatusCode::FORBIDDEN, "{uri}");
        }
        let (code, body) = get_as("dev-token", "/api/v1/namespaces/db/pods").await;
        assert_eq!(code, StatusCode::FORBIDDEN);
        assert_eq!(
            body["message"],
            "pods is forbidden: User \"shop-dev\" cannot list resource \"pods\" in API group \"\" in the namespace \"db\""
        );
        assert_eq!(body["reason"], "Forbidden");
        let (code, body) = get_as("dev-token", "/api/v1/pods").await;
        assert_eq!(code, StatusCode::FORBIDDEN);
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .ends_with("at the cluster scope"),
            "{body}"
        );
        let (code, body) = get_as("dev-token", "/api/v1/namespaces/db").await;
        assert_eq!(code, StatusCode::FORBIDDEN);
        assert_eq!(
            body["message"],
            "namespaces \"db\" is forbidden: User \"shop-dev\" cannot get resource \"namespaces\" in API group \"\" in the namespace \"db\""
        );
        let (code, body) = get_as(
            "dev-token",
            "/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies",
        )
        .await;
        assert_eq!(code, StatusCode::FORBIDDEN);
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("adminnetworkpolicies.policy.networking.k8s.io is forbidden"),
            "{body}"
        );
        // A user bound to nothing reads nothing; an unknown token is not a user; a request
        // without a token is the lab's administrator.
        assert_eq!(
            get_as("nobody-token", "/api/v1/namespaces/shop/pods").await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            get_as("stolen", "/api/v1/namespaces/shop/pods").await.0,
            StatusCode::UNAUTHORIZED
        );
        let admin = axum::http::Request::get("/api/v1/pods");
        assert_eq!(
            request(namespace_user_store(), admin, Value::Null).await.0,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn port_forwarding_and_self_reviews_are_authorized_too() {
        let req = |uri: &str, token: &str| {
            axum::http::Request::post(uri).header(header::AUTHORIZATION, format!("Bearer {token}"))
        };
        // Port-forwarding to a pod in shop is not granted by the example (only to the agents).
        let (code, body) = request(
            namespace_user_store(),
            req(
                "/api/v1/namespaces/shop/pods/p0/portforward?ports=80",
                "dev-token",
            ),
            Value::Null,
        )
        .await;
        assert_eq!(code, StatusCode::FORBIDDEN);
        assert!(
            body["message"].as_str().unwrap().contains("\"pods/portforward\""),
            "{body}"
        );
        // `kubectl auth can-i` as the user: answered from the same RBAC.
        let can_i = |verb: &str, resource: &str, group: &str, namespace: &str| {
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                   "spec": {"resourceAttributes": {"verb": verb, "resource": resource, "group": group, "namespace": namespace}}})
        };
        let path = crate::reviews::SELF_ACCESS_REVIEW_PATH;
        let (code, review) = request(
            namespace_user_store(),
            req(path, "dev-token"),
            can_i("list", "pods", "", "shop"),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED);
        assert_eq!(review["status"]["allowed"], true, "{review}");
        let (_, review) = request(
            namespace_user_store(),
            req(path, "dev-token"),
            can_i("list", "adminnetworkpolicies", "policy.networking.k8s.io", ""),
        )
        .await;
        assert_eq!(review["status"]["allowed"], false, "{review}");
        // Asking others' access (SubjectAccessReview) is the agents' right, not a user's.
        let (code, _) = request(
            namespace_user_store(),
            req(crate::reviews::ACCESS_REVIEW_PATH, "dev-token"),
            json!({"spec": {"user": "x", "resourceAttributes": {"verb": "get", "resource": "pods"}}}),
        )
        .await;
        assert_eq!(code, StatusCode::FORBIDDEN);
    }

    async fn get(uri: &str, accept: Option<&str>) -> (StatusCode, Value) {
        use tower::ServiceExt;
        let mut req = axum::http::Request::get(uri);
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        let resp = router(store())
            .oneshot(req.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        let code = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    fn names(list: &Value) -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[tokio::test]
    async fn lists_filter_by_namespace_label_and_field_selectors() {
        let (code, all) = get("/api/v1/pods", None).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(all["kind"], "PodList");
        assert_eq!(all["apiVersion"], "v1");
        assert_eq!(all["metadata"]["resourceVersion"], "1");
        assert!(
            all["items"][0].get("kind").is_none() && all["items"][0].get("apiVersion").is_none(),
            "list items name no kind, as the API server sends them: {}",
            all["items"][0]
        );
        // In the API server's order: by namespace, then name (its storage keys).
        assert_eq!(names(&all), ["d0", "coredns-0", "p0", "p1"]);
        assert_eq!(
            names(&get("/api/v1/namespaces/shop/pods", None).await.1),
            ["p0", "p1"]
        );
        assert_eq!(
            names(&get("/api/v1/pods?labelSelector=app%3Dpay,tier", None).await.1),
            ["p1"]
        );
        assert_eq!(
            names(&get("/api/v1/pods?fieldSelector=spec.nodeName%3Db", None).await.1),
            ["d0", "p1"]
        );
        let ip = "10.244.2.3";
        assert_eq!(
            names(
                &get(&format!("/api/v1/pods?fieldSelector=status.podIP%3D{ip}"), None)
                    .await
                    .1
            ),
            ["d0"]
        );
        // Paged as the API server pages: `limit` at a time, `continue` to the next page.
        let first = get("/api/v1/pods?limit=3", None).await.1;
        assert_eq!(names(&first), ["d0", "coredns-0", "p0"]);
        assert_eq!(first["metadata"]["remainingItemCount"], 1);
        let token = first["metadata"]["continue"].as_str().unwrap().to_string();
        let rest = get(&format!("/api/v1/pods?limit=3&continue={token}"), None)
            .await
            .1;
        assert_eq!(names(&rest), ["p1"]);
        assert!(rest["metadata"].get("continue").is_none(), "{rest}");
        let selected = get("/api/v1/pods?limit=1&fieldSelector=spec.nodeName%3Db", None)
            .await
            .1;
        assert_eq!(names(&selected), ["d0"]);
        assert!(selected["metadata"]["continue"].is_string());
        let (code, _) = get("/api/v1/pods?limit=1&continue=bogus", None).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        let (code, status) = get("/api/v1/pods?fieldSelector=spec.containers%3Dx", None).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert_eq!(status["message"], "field label not supported: spec.containers");
        let slices = get("/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices", None)
            .await
            .1;
        assert_eq!(slices["kind"], "EndpointSliceList");
        assert_eq!(slices["items"][0]["endpoints"].as_array().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn scenario_admin_policies_are_listed_cluster_wide() {
        use tower::ServiceExt;
        let scenario = crate::scenario::Scenario::parse(
            "name: t\nnodes: [a]\npods:\n- {namespace: shop, name: p0, node: a}\nobjects:\n\
             - apiVersion: policy.networking.k8s.io/v1alpha2\n  kind: ClusterNetworkPolicy\n  \
             metadata: {name: deny-ops}\n  spec: {tier: Admin, priority: 1, subject: {namespaces: {}}}\n",
        )
        .unwrap();
        let plan = crate::plan::Plan::new(&scenario, "nl000001", false).unwrap();
        let objects =
            crate::objects::all_objects(&scenario, &plan, k8s_openapi::jiff::Timestamp::UNIX_EPOCH).unwrap();
        let pod_netns = plan.pods.iter().map(|p| (p.key(), p.netns.clone())).collect();
        let data = ApiData {
            objects,
            pod_netns,
            tokens: vec![],
            rbac: vec![],
            cluster_listen: None,
        };
        let store = Arc::new(Store::new(data, "127.0.0.1:1".into()).unwrap());
        let list = |uri: &'static str| {
            let store = store.clone();
            async move {
                let req = axum::http::Request::get(uri)
                    .body(axum::body::Body::empty())
                    .unwrap();
                let resp = router(store).oneshot(req).await.unwrap();
                let code = resp.status();
                let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
                (code, serde_json::from_slice::<Value>(&bytes).unwrap())
            }
        };
        let (code, cnps) = list("/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(cnps["kind"], "ClusterNetworkPolicyList");
        assert_eq!(names(&cnps), ["deny-ops"]);
        let (code, anps) = list("/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies").await;
        assert_eq!(code, StatusCode::OK);
        assert!(names(&anps).is_empty());
    }

    #[tokio::test]
    async fn get_returns_the_object_or_a_not_found_status() {
        let (code, pod) = get("/api/v1/namespaces/shop/pods/p0", None).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(pod["kind"], "Pod");
        let (code, ns) = get("/api/v1/namespaces/db", None).await;
        assert_eq!((code, ns["kind"].as_str()), (StatusCode::OK, Some("Namespace")));
        let (code, status) = get("/api/v1/namespaces/db/pods/p0", None).await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(status["message"], "pods \"p0\" not found");
        let (code, status) = get("/api/v1/pods?labelSelector=app%20in%20pay", None).await;
        assert_eq!(
            (code, status["reason"].as_str()),
            (StatusCode::BAD_REQUEST, Some("BadRequest"))
        );
        assert_eq!(
            get("/apis/apps/v1/deployments", None).await.0,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn kubectl_gets_a_table_when_it_asks_for_one() {
        let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
        let (code, table) = get("/api/v1/namespaces/shop/services", Some(accept)).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(table["kind"], "Table");
        let columns: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            columns[..5],
            ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)"]
        );
        let row = &table["rows"][0];
        assert_eq!(row["cells"][0], "pay");
        assert_eq!(row["cells"][2], "10.96.1.1");
        assert_eq!(row["cells"][4], "80/TCP");
        assert_eq!(row["object"]["metadata"]["namespace"], "shop");
    }

    #[test]
    fn discovery_lists_every_served_resource_with_its_group() {
        let core = discovery_resources("", "v1").unwrap();
        let names: Vec<&str> = core.resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["namespaces", "nodes", "pods", "services", "pods/portforward"]
        );
        let v = serde_json::to_value(&core).unwrap();
        assert_eq!(v["kind"], "APIResourceList");
        assert_eq!(
            discovery_resources("networking.k8s.io", "v1").unwrap().resources[0].name,
            "networkpolicies"
        );
        assert_eq!(
            discovery_resources("apps", "v1").unwrap().resources[0].name,
            "daemonsets"
        );
        let groups: Vec<String> = groups().groups.into_iter().map(|g| g.name).collect();
        assert_eq!(
            groups,
            [
                "discovery.k8s.io",
                "networking.k8s.io",
                "apps",
                "policy.networking.k8s.io",
                "authentication.k8s.io",
                "authorization.k8s.io"
            ]
        );
        let reviews = discovery_resources("authorization.k8s.io", "v1").unwrap();
        assert_eq!(reviews.resources[0].name, "subjectaccessreviews");
        assert_eq!(reviews.resources[0].verbs, ["create"]);
    }

    #[test]
    fn admin_policy_kinds_are_discoverable_in_both_versions_and_listed_from_scenario_objects() {
        let group = groups()
            .groups
            .into_iter()
            .find(|g| g.name == "policy.networking.k8s.io")
            .unwrap();
        let versions: Vec<&str> = group.versions.iter().map(|v| v.version.as_str()).collect();
        assert_eq!(versions, ["v1alpha2", "v1alpha1"]);
        assert_eq!(group.preferred_version.unwrap().version, "v1alpha2");
        let names = |v| -> Vec<String> {
            discovery_resources("policy.networking.k8s.io", v)
                .unwrap()
                .resources
                .into_iter()
                .map(|r| r.name)
                .collect()
        };
        assert_eq!(names("v1alpha2"), ["clusternetworkpolicies"]);
        assert_eq!(
            names("v1alpha1"),
            ["adminnetworkpolicies", "baselineadminnetworkpolicies"]
        );
        let cnp = serde_json::json!({"apiVersion": "policy.networking.k8s.io/v1alpha2",
            "kind": "ClusterNetworkPolicy", "metadata": {"name": "deny"}});
        let rt = crate::objects::resource_of(&cnp).unwrap();
        assert!(!rt.namespaced);
        assert_eq!(rt.plural, "clusternetworkpolicies");
    }
}
