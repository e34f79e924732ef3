//! The API stand-in's review APIs: `authentication.k8s.io/v1` TokenReview and
//! `authorization.k8s.io/v1` SubjectAccessReview (create only), answered from the scenario's
//! tokens and RBAC objects through [`crate::rbac`], plus their discovery documents.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIResource, APIResourceList};
use serde_json::{Value, json};

use crate::apiserver::Store;
use crate::rbac::{self, Attributes};

/// The groups the review APIs live in.
pub const REVIEW_GROUPS: [&str; 2] = ["authentication.k8s.io", "authorization.k8s.io"];

pub const TOKEN_REVIEW_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
pub const ACCESS_REVIEW_PATH: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

/// Discovery of `GROUP/v1` for a review group.
pub fn discovery(group: &str, version: &str) -> Option<APIResourceList> {
    let (name, kind) = match (group, version) {
        ("authentication.k8s.io", "v1") => ("tokenreviews", "TokenReview"),
        ("authorization.k8s.io", "v1") => ("subjectaccessreviews", "SubjectAccessReview"),
        _ => return None,
    };
    Some(APIResourceList {
        group_version: format!("{group}/{version}"),
        resources: vec![APIResource {
            name: name.into(),
            singular_name: name.trim_end_matches('s').into(),
            kind: kind.into(),
            namespaced: false,
            verbs: vec!["create".into()],
            ..Default::default()
        }],
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
        .unwrap_or_default()
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
pub async fn token_review(State(store): State<Arc<Store>>, body: axum::body::Bytes) -> Response {
    let Ok(review) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("the body is not a TokenReview");
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
pub async fn access_review(State(store): State<Arc<Store>>, body: axum::body::Bytes) -> Response {
    let Ok(review) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("the body is not a SubjectAccessReview");
    };
    let spec = &review["spec"];
    let Some(res) = spec.get("resourceAttributes") else {
        let status = json!({"allowed": false, "reason": "the lab authorizes resource requests only"});
        return created("authorization.k8s.io/v1", "SubjectAccessReview", &review, status);
    };
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let attrs = Attributes {
        user: text(spec, "user"),
        groups: strings(&spec["groups"]),
        verb: text(res, "verb"),
        group: text(res, "group"),
        resource: text(res, "resource"),
        subresource: text(res, "subresource"),
        namespace: text(res, "namespace"),
        name: text(res, "name"),
    };
    let status = serde_json::to_value(rbac::review_status(&store.rbac, &attrs)).unwrap_or_default();
    created("authorization.k8s.io/v1", "SubjectAccessReview", &review, status)
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
