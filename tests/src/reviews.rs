//! The API stand-in's review APIs: `authentication.k8s.io/v1` TokenReview and
//! `authorization.k8s.io/v1` SubjectAccessReview (create only), answered from the scenario's
//! tokens and RBAC objects through [`crate::rbac`], plus their discovery documents.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIResource, APIResourceList};
use serde_json::{Value, json};

use crate::apiserver::Store;
use crate::rbac::{self, Attributes};

/// The groups the review APIs live in.
pub const REVIEW_GROUPS: [&str; 2] = ["authentication.k8s.io", "authorization.k8s.io"];

pub const TOKEN_REVIEW_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
pub const ACCESS_REVIEW_PATH: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
pub const SELF_ACCESS_REVIEW_PATH: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";

/// Discovery of `GROUP/v1` for a review group.
pub fn discovery(group: &str, version: &str) -> Option<APIResourceList> {
    let kinds: &[(&str, &str)] = match (group, version) {
        ("authentication.k8s.io", "v1") => &[("tokenreviews", "TokenReview")],
        ("authorization.k8s.io", "v1") => &[
            ("subjectaccessreviews", "SubjectAccessReview"),
            ("selfsubjectaccessreviews", "SelfSubjectAccessReview"),
        ],
        _ => return None,
    };
    let resource = |(name, kind): &(&str, &str)| APIResource {
        name: name.to_string(),
        singular_name: name.trim_end_matches('s').into(),
        kind: kind.to_string(),
        namespaced: false,
        verbs: vec!["create".into()],
        ..Default::default()
    };
    Some(APIResourceList {
        group_version: format!("{group}/{version}"),
        resources: kinds.iter().map(resource).collect(),
    })
}

/// Admits a review's `create` (`resource` in `group`), as [`crate::apiserver::admit`] does.
fn admit_create(
    store: &Store,
    headers: &HeaderMap,
    group: &str,
    resource: &str,
) -> Result<Option<rbac::UserInfo>, Box<Response>> {
    let access = Attributes {
        verb: "create".into(),
        group: group.into(),
        resource: resource.into(),
        ..Attributes::default()
    };
    crate::apiserver::admit(store, headers, access)
}

/// The resource attributes a review's `spec` asks about, for `user` in `groups`.
fn asked(spec: &Value, user: String, groups: Vec<String>) -> Option<Attributes> {
    let res = spec.get("resourceAttributes")?;
    let text = |key: &str| {
        res.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Some(Attributes {
        user,
        groups,
        verb: text("verb"),
        group: text("group"),
        resource: text("resource"),
        subresource: text("subresource"),
        namespace: text("namespace"),
        name: text("name"),
    })
}

/// The `status` of a review of `attrs` (`None`: not a resource request).
fn access_status(store: &Store, attrs: Option<Attributes>) -> Value {
    match attrs {
        Some(attrs) => serde_json::to_value(rbac::review_status(&store.rbac, &attrs)).unwrap_or_default(),
        None => json!({"allowed": false, "reason": "the lab authorizes resource requests only"}),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// A review's body, in JSON or (a SelfSubjectAccessReview from kubectl) Kubernetes protobuf;
/// another content type gets kube-apiserver's 415, a body that is not the review a 400.
fn review_body(headers: &HeaderMap, body: &[u8], kind: &str) -> Result<Value, Box<Response>> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if content_type.starts_with(protobuf::CONTENT_TYPE) && kind == "SelfSubjectAccessReview" {
        return protobuf::self_subject_access_review(body)
            .ok_or_else(|| Box::new(bad_request(&format!("the body is not a {kind}"))));
    }
    if !content_type.starts_with("application/json") {
        return Err(Box::new(
            (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "UnsupportedMediaType", "code": 415,
                        "message": format!("the body of the request was in an unknown format - accepted media types include: application/json; got {content_type}")})),
        )
            .into_response(),
        ));
    }
    serde_json::from_slice(body).map_err(|_| Box::new(bad_request(&format!("the body is not a {kind}"))))
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "BadRequest", "code": 400, "message": message})),
    )
        .into_response()
}

/// `POST tokenreviews`: the user behind `spec.token`, for `spec.audiences`.
pub async fn token_review(
    State(store): State<Arc<Store>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = admit_create(&store, &headers, "authentication.k8s.io", "tokenreviews") {
        return *refused;
    }
    let review = match review_body(&headers, &body, "TokenReview") {
        Ok(review) => review,
        Err(response) => return *response,
    };
    let token = review
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let audiences = strings(review.pointer("/spec/audiences").unwrap_or(&Value::Null));
    let status = match rbac::authenticate(&store.tokens, token, &audiences) {
        Ok((user, audiences)) => json!({
            "authenticated": true,
            "user": {"username": user.username, "uid": user.uid, "groups": user.groups},
            "audiences": audiences,
        }),
        Err(error) => json!({"authenticated": false, "error": error}),
    };
    created("authentication.k8s.io/v1", "TokenReview", &review, status)
}

/// `POST subjectaccessreviews`: whether RBAC allows `spec.resourceAttributes` to the user.
pub async fn access_review(
    State(store): State<Arc<Store>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = admit_create(&store, &headers, "authorization.k8s.io", "subjectaccessreviews") {
        return *refused;
    }
    let review = match review_body(&headers, &body, "SubjectAccessReview") {
        Ok(review) => review,
        Err(response) => return *response,
    };
    let spec = &review["spec"];
    let user = spec
        .get("user")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let status = access_status(&store, asked(spec, user, strings(&spec["groups"])));
    created("authorization.k8s.io/v1", "SubjectAccessReview", &review, status)
}

/// `POST selfsubjectaccessreviews` (`kubectl auth can-i`): whether RBAC allows
/// `spec.resourceAttributes` to the requesting user; the lab's administrator may do anything.
pub async fn self_access_review(
    State(store): State<Arc<Store>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let user = match admit_create(
        &store,
        &headers,
        "authorization.k8s.io",
        "selfsubjectaccessreviews",
    ) {
        Ok(user) => user,
        Err(refused) => return *refused,
    };
    let review = match review_body(&headers, &body, "SelfSubjectAccessReview") {
        Ok(review) => review,
        Err(response) => return *response,
    };
    let status = match user {
        Some(user) => access_status(&store, asked(&review["spec"], user.username, user.groups)),
        None => json!({"allowed": true, "reason": "the lab's administrator"}),
    };
    created(
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        &review,
        status,
    )
}

fn created(api_version: &str, kind: &str, review: &Value, status: Value) -> Response {
    (
        StatusCode::CREATED,
        Json(json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"creationTimestamp": null},
            "spec": review.get("spec").cloned().unwrap_or(json!({})),
            "status": status,
        })),
    )
        .into_response()
}

/// The part of Kubernetes' protobuf encoding kubectl's `auth can-i` sends: a
/// SelfSubjectAccessReview (`k8s.io/api/authorization/v1/generated.proto`) in the `runtime.Unknown`
/// envelope behind the magic `k8s\0`.
mod protobuf {
    use prost::Message;
    use serde_json::{Value, json};

    pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
    const MAGIC: &[u8] = b"k8s\0";

    #[derive(Clone, PartialEq, Message)]
    struct Unknown {
        #[prost(bytes = "vec", optional, tag = "2")]
        raw: Option<Vec<u8>>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct SelfSubjectAccessReview {
        #[prost(message, optional, tag = "2")]
        spec: Option<SelfSubjectAccessReviewSpec>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct SelfSubjectAccessReviewSpec {
        #[prost(message, optional, tag = "1")]
        resource_attributes: Option<ResourceAttributes>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct ResourceAttributes {
        #[prost(string, optional, tag = "1")]
        namespace: Option<String>,
        #[prost(string, optional, tag = "2")]
        verb: Option<String>,
        #[prost(string, optional, tag = "3")]
        group: Option<String>,
        #[prost(string, optional, tag = "4")]
        version: Option<String>,
        #[prost(string, optional, tag = "5")]
        resource: Option<String>,
        #[prost(string, optional, tag = "6")]
        subresource: Option<String>,
        #[prost(string, optional, tag = "7")]
        name: Option<String>,
    }

    /// The review as the JSON the handlers read; `None` when `body` is not one.
    pub fn self_subject_access_review(body: &[u8]) -> Option<Value> {
        let envelope = Unknown::decode(body.strip_prefix(MAGIC)?).ok()?;
        let review = SelfSubjectAccessReview::decode(envelope.raw?.as_slice()).ok()?;
        let spec = match review.spec.and_then(|s| s.resource_attributes) {
            Some(r) => json!({"resourceAttributes": {
                "namespace": r.namespace, "verb": r.verb, "group": r.group, "version": r.version,
                "resource": r.resource, "subresource": r.subresource, "name": r.name,
            }}),
            None => json!({}),
        };
        Some(
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": spec}),
        )
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_review_in_its_envelope_reads_as_its_json() {
            let attributes = ResourceAttributes {
                namespace: Some("shop".into()),
                verb: Some("list".into()),
                resource: Some("pods".into()),
                ..Default::default()
            };
            let review = SelfSubjectAccessReview {
                spec: Some(SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(attributes),
                }),
            };
            let envelope = Unknown {
                raw: Some(review.encode_to_vec()),
            };
            let body = [MAGIC, &envelope.encode_to_vec()].concat();
            let json = self_subject_access_review(&body).unwrap();
            assert_eq!(json["spec"]["resourceAttributes"]["namespace"], "shop");
            assert_eq!(json["spec"]["resourceAttributes"]["verb"], "list");
            assert_eq!(json["spec"]["resourceAttributes"]["group"], Value::Null);
            assert!(
                self_subject_access_review(&envelope.encode_to_vec()).is_none(),
                "no magic"
            );
        }
    }
}
