//! Authentication and authorization for the API stand-in, from the scenario: bearer tokens name
//! users, groups or ServiceAccounts (TokenReview), and Roles, ClusterRoles, RoleBindings and
//! ClusterRoleBindings are evaluated with RBAC's rules (SubjectAccessReview): verbs, apiGroups,
//! resources (with `*` and `*/subresource`), resourceNames, bindings scoped to their namespace,
//! subjects of kind User, Group and ServiceAccount. Pure: no I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A bearer token the stand-in's TokenReview accepts (scenario field `tokens`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenSpec {
    pub token: String,
    /// A user name; or give `serviceAccount`.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// `NAMESPACE/NAME`: the token is that ServiceAccount's.
    #[serde(default)]
    pub service_account: Option<String>,
    /// Audiences the token is valid for; empty means any.
    #[serde(default)]
    pub audiences: Vec<String>,
}

impl TokenSpec {
    /// The user name and groups the token stands for (without `system:authenticated`).
    pub fn identity(&self) -> Option<(String, Vec<String>)> {
        let mut groups = self.groups.clone();
        let username = match (&self.service_account, &self.user) {
            (Some(sa), _) => {
                let (ns, name) = sa.split_once('/').unwrap_or(("default", sa));
                groups.extend([
                    "system:serviceaccounts".to_string(),
                    format!("system:serviceaccounts:{ns}"),
                ]);
                format!("system:serviceaccount:{ns}:{name}")
            }
            (None, Some(user)) => user.clone(),
            (None, None) => return None,
        };
        Some((username, groups))
    }
}

/// An authenticated user, as TokenReview's `status.user` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// The user behind `token` and the audiences it is valid for among `requested`; `Err` says why
/// the token is rejected.
pub fn authenticate(
    tokens: &[TokenSpec],
    token: &str,
    requested: &[String],
) -> Result<(UserInfo, Vec<String>), String> {
    let spec = tokens
        .iter()
        .find(|t| t.token == token)
        .ok_or_else(|| "invalid bearer token".to_string())?;
    let audiences: Vec<String> = if spec.audiences.is_empty() {
        requested.to_vec()
    } else if requested.is_empty() {
        spec.audiences.clone()
    } else {
        requested
            .iter()
            .filter(|a| spec.audiences.contains(a))
            .cloned()
            .collect()
    };
    if !requested.is_empty() && audiences.is_empty() {
        return Err(format!(
            "token audiences {:?} do not include any of {:?}",
            spec.audiences, requested
        ));
    }
    let (username, mut groups) = spec
        .identity()
        .ok_or_else(|| "the token names no user".to_string())?;
    groups.push("system:authenticated".into());
    let uid = format!("uid-{username}");
    Ok((
        UserInfo {
            username,
            uid,
            groups,
        },
        audiences,
    ))
}

/// The RBAC the deployment ships for the in-cluster endpoint, which the lab serves too.
pub const SHIPPED_ENDPOINT_RBAC: &str = include_str!("../../deploy/rbac-endpoint.yaml");

/// The RBAC the deployment ships for people running the plugin (the real lab applies all of
/// `deploy/`; the stand-in serves it too, bound only where a scenario binds it).
pub const SHIPPED_USER_RBAC: &str = include_str!("../../deploy/rbac-user.yaml");

/// kube-apiserver's bootstrap `system:basic-user`: every authenticated user may ask what it may
/// do (`kubectl auth can-i`).
pub const BASIC_USER_RBAC: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: 'system:basic-user'}
rules:
  - apiGroups: [authorization.k8s.io]
    resources: [selfsubjectaccessreviews, selfsubjectrulesreviews]
    verbs: [create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: 'system:basic-user'}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: 'system:basic-user'}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: 'system:authenticated'}]
";

/// The agents' ServiceAccount.
pub const AGENT_SERVICE_ACCOUNT: &str = "netdiag/netdiag-agent";

/// The objects of a multi-document YAML text.
pub fn yaml_objects(text: &str) -> Result<Vec<Value>, String> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).map_err(|e| e.to_string()))
        .filter(|v| !matches!(v, Ok(Value::Null)))
        .collect()
}

/// What a SubjectAccessReview asks about a resource request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub user: String,
    pub groups: Vec<String>,
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    /// Empty for a cluster-scoped request.
    pub namespace: String,
    pub name: String,
}

/// The RBAC objects of a scenario.
#[derive(Debug, Clone, Default)]
pub struct Rbac {
    roles: Vec<Role>,
    cluster_roles: Vec<ClusterRole>,
    role_bindings: Vec<RoleBinding>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
}

/// The RBAC kinds of `rbac.authorization.k8s.io/v1`.
pub fn is_rbac_kind(obj: &Value) -> bool {
    obj.get("apiVersion").and_then(Value::as_str) == Some("rbac.authorization.k8s.io/v1")
        && matches!(
            obj.get("kind").and_then(Value::as_str),
            Some("Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding")
        )
}

impl Rbac {
    /// Reads the RBAC objects among `objects`; others are ignored, a malformed one is an error.
    pub fn from_objects(objects: &[Value]) -> Result<Self, String> {
        let mut rbac = Rbac::default();
        for obj in objects.iter().filter(|o| is_rbac_kind(o)) {
            let kind = obj["kind"].as_str().unwrap_or_default();
            let bad = |e: serde_json::Error| format!("{kind} {} is not valid: {e}", obj["metadata"]["name"]);
            match kind {
                "Role" => rbac.roles.push(serde_json::from_value(obj.clone()).map_err(bad)?),
                "ClusterRole" => rbac
                    .cluster_roles
                    .push(serde_json::from_value(obj.clone()).map_err(bad)?),
                "RoleBinding" => rbac
                    .role_bindings
                    .push(serde_json::from_value(obj.clone()).map_err(bad)?),
                _ => rbac
                    .cluster_role_bindings
                    .push(serde_json::from_value(obj.clone()).map_err(bad)?),
            }
        }
        Ok(rbac)
    }

    fn cluster_role_rules(&self, name: &str) -> &[PolicyRule] {
        self.cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
            .and_then(|r| r.rules.as_deref())
            .unwrap_or_default()
    }

    fn role_rules(&self, namespace: &str, name: &str) -> &[PolicyRule] {
        self.roles
            .iter()
            .find(|r| {
                r.metadata.namespace.as_deref() == Some(namespace) && r.metadata.name.as_deref() == Some(name)
            })
            .and_then(|r| r.rules.as_deref())
            .unwrap_or_default()
    }

    /// `Ok(reason)` naming the binding that allows `attrs`, or `Err(reason)` when none does.
    pub fn authorize(&self, attrs: &Attributes) -> Result<String, String> {
        for b in &self.cluster_role_bindings {
            let name = b.metadata.name.as_deref().unwrap_or_default();
            if subjects_match(b.subjects.as_deref(), "", attrs)
                && b.role_ref.kind == "ClusterRole"
                && self
                    .cluster_role_rules(&b.role_ref.name)
                    .iter()
                    .any(|r| rule_allows(r, attrs))
            {
                return Ok(format!("RBAC: allowed by ClusterRoleBinding \"{name}\""));
            }
        }
        if !attrs.namespace.is_empty() {
            for b in &self.role_bindings {
                let ns = b.metadata.namespace.as_deref().unwrap_or_default();
                if ns != attrs.namespace || !subjects_match(b.subjects.as_deref(), ns, attrs) {
                    continue;
                }
                let rules = match b.role_ref.kind.as_str() {
                    "ClusterRole" => self.cluster_role_rules(&b.role_ref.name),
                    "Role" => self.role_rules(ns, &b.role_ref.name),
                    _ => &[],
                };
                if rules.iter().any(|r| rule_allows(r, attrs)) {
                    let name = b.metadata.name.as_deref().unwrap_or_default();
                    return Ok(format!("RBAC: allowed by RoleBinding \"{name}/{ns}\""));
                }
            }
        }
        Err(String::new())
    }
}

/// Whether a binding's `subjects` include the requesting user. A ServiceAccount subject without a
/// namespace means one in the binding's namespace (`binding_ns`), as the RBAC authorizer has it.
fn subjects_match(subjects: Option<&[Subject]>, binding_ns: &str, attrs: &Attributes) -> bool {
    subjects
        .unwrap_or_default()
        .iter()
        .any(|s| match s.kind.as_str() {
            "User" => s.name == attrs.user,
            "Group" => attrs.groups.contains(&s.name),
            "ServiceAccount" => {
                let ns = s
                    .namespace
                    .as_deref()
                    .filter(|n| !n.is_empty())
                    .unwrap_or(binding_ns);
                !ns.is_empty() && attrs.user == format!("system:serviceaccount:{ns}:{}", s.name)
            }
            _ => false,
        })
}

fn has(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

/// RBAC's `RuleAllows` for a resource request.
fn rule_allows(rule: &PolicyRule, attrs: &Attributes) -> bool {
    let groups = rule.api_groups.as_deref().unwrap_or_default();
    let resources = rule.resources.as_deref().unwrap_or_default();
    let names = rule.resource_names.as_deref().unwrap_or_default();
    let resource_matches = if attrs.subresource.is_empty() {
        has(resources, &attrs.resource)
    } else {
        let combined = format!("{}/{}", attrs.resource, attrs.subresource);
        resources
            .iter()
            .any(|r| r == "*" || *r == combined || *r == format!("*/{}", attrs.subresource))
    };
    has(&rule.verbs, &attrs.verb)
        && has(groups, &attrs.group)
        && resource_matches
        && (names.is_empty() || names.contains(&attrs.name))
}

/// The `status` of a SubjectAccessReview for `attrs`.
pub fn review_status(rbac: &Rbac, attrs: &Attributes) -> BTreeMap<&'static str, Value> {
    let mut status = BTreeMap::new();
    match rbac.authorize(attrs) {
        Ok(reason) => {
            status.insert("allowed", Value::Bool(true));
            status.insert("reason", Value::String(reason));
        }
        Err(_) => {
            status.insert("allowed", Value::Bool(false));
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mk_rbac(objects: Value) -> Rbac {
        Rbac::from_objects(objects.as_array().unwrap()).unwrap()
    }

    fn checker_rbac() -> Rbac {
        mk_rbac(json!([
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": "netdiag-checker"},
             "rules": [{"apiGroups": ["netdiag.io"], "resources": ["checks"], "verbs": ["create"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "ci-checks", "namespace": "shop"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "netdiag-checker"},
             "subjects": [{"kind": "User", "name": "alice"},
                          {"kind": "Group", "name": "oncall"},
                          {"kind": "ServiceAccount", "name": "ci"}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": "one-pod", "namespace": "web"},
             "rules": [{"apiGroups": ["netdiag.io"], "resources": ["checks"], "verbs": ["*"],
                        "resourceNames": ["frontend"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "bob-frontend", "namespace": "web"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "one-pod"},
             "subjects": [{"kind": "User", "name": "bob"}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": "agent"},
             "rules": [{"apiGroups": ["*"], "resources": ["probes"], "verbs": ["create"]},
                       {"apiGroups": [""], "resources": ["*/portforward"], "verbs": ["create"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": "agents"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "agent"},
             "subjects": [{"kind": "Group", "name": "system:serviceaccounts:netdiag"}]}
        ]))
    }

    fn check(user: &str, groups: &[&str], namespace: &str, name: &str) -> Attributes {
        Attributes {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            verb: "create".into(),
            group: "netdiag.io".into(),
            resource: "checks".into(),
            namespace: namespace.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_role_binding_allows_only_in_its_own_namespace() {
        let rbac = checker_rbac();
        assert!(rbac.authorize(&check("alice", &[], "shop", "checkout")).is_ok());
        assert!(
            rbac.authorize(&check("alice", &[], "kube-system", "coredns-0"))
                .is_err()
        );
        assert!(
            rbac.authorize(&check("alice", &[], "", "")).is_err(),
            "not cluster-wide"
        );
    }

    #[test]
    fn subjects_match_by_user_group_and_service_account_in_the_binding_namespace() {
        let rbac = checker_rbac();
        assert!(rbac.authorize(&check("carol", &["oncall"], "shop", "x")).is_ok());
        assert!(
            rbac.authorize(&check("system:serviceaccount:shop:ci", &[], "shop", "x"))
                .is_ok()
        );
        assert!(
            rbac.authorize(&check("system:serviceaccount:web:ci", &[], "shop", "x"))
                .is_err()
        );
        assert!(rbac.authorize(&check("mallory", &["dev"], "shop", "x")).is_err());
    }

    #[test]
    fn verbs_groups_and_resource_names_must_all_match() {
        let rbac = checker_rbac();
        assert!(
            rbac.authorize(&check("bob", &[], "web", "frontend")).is_ok(),
            "verb *"
        );
        assert!(
            rbac.authorize(&check("bob", &[], "web", "backend")).is_err(),
            "resourceNames"
        );
        let mut other_group = check("alice", &[], "shop", "x");
        other_group.group = "example.com".into();
        assert!(rbac.authorize(&other_group).is_err());
        let mut other_verb = check("alice", &[], "shop", "x");
        other_verb.verb = "delete".into();
        assert!(rbac.authorize(&other_verb).is_err());
    }

    #[test]
    fn cluster_bindings_apply_everywhere_with_wildcard_groups_and_subresources() {
        let rbac = checker_rbac();
        let groups = ["system:serviceaccounts", "system:serviceaccounts:netdiag"];
        let mut probe = check(
            "system:serviceaccount:netdiag:netdiag-agent",
            &groups,
            "",
            "node-a",
        );
        probe.resource = "probes".into();
        assert!(rbac.authorize(&probe).is_ok());
        let mut pf = probe.clone();
        (pf.group, pf.resource, pf.subresource, pf.namespace) =
            ("".into(), "pods".into(), "portforward".into(), "shop".into());
        assert!(rbac.authorize(&pf).is_ok(), "*/portforward");
        pf.subresource = "exec".into();
        assert!(rbac.authorize(&pf).is_err());
        let other_sa = check(
            "system:serviceaccount:shop:ci",
            &["system:serviceaccounts:shop"],
            "",
            "node-a",
        );
        assert!(
            rbac.authorize(&Attributes {
                resource: "probes".into(),
                ..other_sa
            })
            .is_err()
        );
    }

    #[test]
    fn tokens_name_users_and_service_accounts_and_respect_audiences() {
        let tokens = vec![
            TokenSpec {
                token: "t-alice".into(),
                user: Some("alice".into()),
                groups: vec!["oncall".into()],
                service_account: None,
                audiences: vec![],
            },
            TokenSpec {
                token: "t-agent".into(),
                user: None,
                groups: vec![],
                service_account: Some("netdiag/netdiag-agent".into()),
                audiences: vec!["netdiag".into()],
            },
        ];
        let (alice, _) = authenticate(&tokens, "t-alice", &["netdiag".into()]).unwrap();
        assert_eq!(alice.username, "alice");
        assert_eq!(alice.groups, ["oncall", "system:authenticated"]);
        let (agent, aud) = authenticate(&tokens, "t-agent", &["netdiag".into()]).unwrap();
        assert_eq!(agent.username, "system:serviceaccount:netdiag:netdiag-agent");
        assert!(
            agent
                .groups
                .contains(&"system:serviceaccounts:netdiag".to_string())
        );
        assert_eq!(aud, ["netdiag"]);
        assert!(authenticate(&tokens, "t-agent", &["https://kubernetes.default.svc".into()]).is_err());
        assert!(authenticate(&tokens, "nope", &[]).is_err());
    }
}
