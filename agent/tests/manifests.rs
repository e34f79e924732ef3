//! The deployment manifests parse as the Kubernetes types they claim to be and keep the invariants
//! the agent and the CLI rely on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ResourceQuota, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde::Deserialize;
use serde_yaml_ng::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every YAML document in `path`.
fn documents(path: &Path) -> Vec<Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc).unwrap_or_else(|e| panic!("{} is not valid yaml: {e}", path.display()))
        })
        .collect()
}

/// Every Kubernetes object of the manifests (`deploy/*.yaml` and `deploy/examples/*.yaml`).
fn objects() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for dir in [deploy_dir(), deploy_dir().join("examples")] {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.extension().is_some_and(|e| e == "yaml") && name != "kustomization.yaml" {
                out.extend(documents(&path).into_iter().map(|doc| (name.clone(), doc)));
            }
        }
    }
    out
}

fn one<T: for<'de> Deserialize<'de>>(kind: &str, name: &str) -> T {
    let found: Vec<Value> = objects()
        .into_iter()
        .map(|(_, doc)| doc)
        .filter(|doc| doc["kind"].as_str() == Some(kind) && doc["metadata"]["name"].as_str() == Some(name))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind} {name}, found {}",
        found.len()
    );
    serde_yaml_ng::from_value(found[0].clone())
        .unwrap_or_else(|e| panic!("{kind} {name} does not parse: {e}"))
}

#[test]
fn every_manifest_parses_as_the_kubernetes_type_it_names() {
    let objects = objects();
    assert!(objects.len() >= 7, "{objects:?}");
    for (file, doc) in objects {
        let kind = doc["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: a document without kind"))
            .to_string();
        let parsed = match kind.as_str() {
            "Namespace" => serde_yaml_ng::from_value::<Namespace>(doc).map(drop),
            "ServiceAccount" => serde_yaml_ng::from_value::<ServiceAccount>(doc).map(drop),
            "ResourceQuota" => serde_yaml_ng::from_value::<ResourceQuota>(doc).map(drop),
            "DaemonSet" => serde_yaml_ng::from_value::<DaemonSet>(doc).map(drop),
            "ClusterRole" => serde_yaml_ng::from_value::<ClusterRole>(doc).map(drop),
            "Role" => serde_yaml_ng::from_value::<Role>(doc).map(drop),
            "ClusterRoleBinding" => serde_yaml_ng::from_value::<ClusterRoleBinding>(doc).map(drop),
            "RoleBinding" => serde_yaml_ng::from_value::<RoleBinding>(doc).map(drop),
            "Service" => serde_yaml_ng::from_value::<Service>(doc).map(drop),
            "ConfigMap" => serde_yaml_ng::from_value::<ConfigMap>(doc).map(drop),
            // A Prometheus Operator resource (no Rust type): it must at least name its API.
            "Probe" if doc["apiVersion"].as_str() == Some("monitoring.coreos.com/v1") => Ok(()),
            other => panic!("{file}: unexpected kind {other}"),
        };
        parsed.unwrap_or_else(|e| panic!("{file}: {kind} does not parse: {e}"));
    }
}

#[test]
fn kustomization_lists_every_top_level_manifest_and_nothing_missing() {
    let kustomization = &documents(&deploy_dir().join("kustomization.yaml"))[0];
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present);
    let namespace: Namespace = one("Namespace", "netdiag");
    assert_eq!(namespace.metadata.name.as_deref(), Some("netdiag"));
}

/// Every file under `dir`, as a path relative to `deploy/`.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            let relative = path.strip_prefix(deploy_dir()).unwrap();
            out.push(relative.to_string_lossy().into_owned());
        }
    }
    out
}

#[test]
fn the_readme_file_table_names_every_file_in_deploy() {
    let readme = std::fs::read_to_string(deploy_dir().join("README.md")).unwrap();
    let table: Vec<&str> = readme.lines().filter(|l| l.starts_with("| `")).collect();
    for file in files_under(&deploy_dir()) {
        if file == "README.md" {
            continue;
        }
        let name = Path::new(&file)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let dir = Path::new(&file)
            .parent()
            .map(|p| p.to_string_lossy().into_owned());
        let named = table.iter().any(|row| {
            row.contains(&format!("`{file}`"))
                || dir.as_ref().is_some_and(|d| {
                    !d.is_empty() && row.contains(&format!("`{d}/")) && row.contains(&format!("`{name}`"))
                })
        });
        assert!(named, "deploy/README.md's file table does not name {file}");
    }
}

#[test]
fn the_docs_say_the_agent_mounts_a_token_as_the_daemonset_does() {
    let ds: DaemonSet = one("DaemonSet", "netdiag-agent");
    let pod = ds.spec.unwrap().template.spec.unwrap();
    let projected_tokens = pod
        .volumes
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.projected.as_ref())
        .flat_map(|p| p.sources.clone().unwrap_or_default())
        .filter(|s| s.service_account_token.is_some())
        .count();
    assert_eq!(
        projected_tokens, 2,
        "one token for the API server, one for peer agents"
    );
    let account = std::fs::read_to_string(deploy_dir().join("serviceaccount.yaml")).unwrap();
    let readme = std::fs::read_to_string(deploy_dir().join("README.md")).unwrap();
    for (file, text) in [("serviceaccount.yaml", &account), ("README.md", &readme)] {
        for claim in [
            "no token is mounted",
            "reads nothing from the API server",
            "the agent has no token",
        ] {
            assert!(!text.contains(claim), "{file} still says {claim:?}");
        }
    }
    for said in [
        "TokenReview",
        "SubjectAccessReview",
        "9443",
        "9809",
        "cluster-wide",
    ] {
        assert!(readme.contains(said), "the threat model does not mention {said}");
    }
}

#[test]
fn daemonset_runs_the_agent_with_host_pid_its_own_network_and_only_the_needed_capabilities() {
    let ds: DaemonSet = one("DaemonSet", "netdiag-agent");
    assert_eq!(ds.metadata.namespace.as_deref(), Some("netdiag"));
    let spec = ds.spec.unwrap();
    let label = |labels: Option<&std::collections::BTreeMap<String, String>>| {
        labels.and_then(|l| l.get("app.kubernetes.io/name")).cloned()
    };
    assert_eq!(
        label(spec.selector.match_labels.as_ref()).as_deref(),
        Some("netdiag-agent")
    );
    let template_meta = spec.template.metadata.unwrap();
    assert_eq!(
        label(template_meta.labels.as_ref()).as_deref(),
        Some("netdiag-agent")
    );
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.host_pid, Some(true));
    assert_ne!(
        pod.host_network,
        Some(true),
        "the agent keeps its own pod network"
    );
    assert_eq!(pod.service_account_name.as_deref(), Some("netdiag-agent"));
    let _sa: ServiceAccount = one("ServiceAccount", "netdiag-agent");

    assert_eq!(pod.containers.len(), 1);
    let agent = &pod.containers[0];
    let args = agent.args.clone().unwrap_or_default();
    assert_eq!(
        args,
        [
            "serve",
            "--listen",
            "127.0.0.1:9808",
            "--allow-sources",
            "podIP,node"
        ],
        "the DaemonSet accepts only the sources the plugin needs"
    );
    assert_eq!(pod.priority_class_name.as_deref(), Some("system-node-critical"));

    let caps = agent
        .security_context
        .as_ref()
        .unwrap()
        .capabilities
        .as_ref()
        .unwrap();
    assert_eq!(caps.drop.clone().unwrap(), ["ALL"]);
    let added: BTreeSet<String> = caps.add.clone().unwrap().into_iter().collect();
    assert_eq!(
        added,
        BTreeSet::from([
            "SYS_ADMIN".into(),
            "SYS_PTRACE".into(),
            "NET_RAW".into(),
            "NET_ADMIN".into()
        ])
    );
    let security = agent.security_context.as_ref().unwrap();
    assert_ne!(security.privileged, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    // The API server refuses allowPrivilegeEscalation: false beside "CAP_SYS_ADMIN" spelled so.
    assert!(!added.iter().any(|c| c.starts_with("CAP_")), "{added:?}");
    // Not privileged, so AppArmor confines it unless told otherwise; the default profile forbids
    // reading the namespaces of processes outside it (the node's among them).
    let apparmor = agent
        .security_context
        .as_ref()
        .unwrap()
        .app_armor_profile
        .as_ref();
    assert_eq!(apparmor.map(|p| p.type_.as_str()), Some("Unconfined"));

    let ports = agent.ports.clone().unwrap();
    // The control port, the in-cluster endpoint's, and the metrics listener's.
    assert_eq!(ports.len(), 3);
    assert_eq!(
        (ports[0].name.as_deref(), ports[0].container_port),
        (Some("control"), 9808)
    );

    let env = agent.env.clone().unwrap();
    for (name, field) in [
        ("NODE_NAME", "spec.nodeName"),
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let var = env
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("env {name} missing"));
        let path = var
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str());
        assert_eq!(path, Some(field), "env {name}");
    }

    for (which, probe) in [
        ("readiness", &agent.readiness_probe),
        ("liveness", &agent.liveness_probe),
    ] {
        let command = probe
            .as_ref()
            .and_then(|p| p.exec.as_ref())
            .and_then(|e| e.command.clone());
        let command = command.unwrap_or_else(|| panic!("{which} probe is not an exec probe"));
        assert_eq!(&command[..2], ["netdiag-agent", "healthcheck"], "{which}");
    }

    let resources = agent.resources.as_ref().unwrap();
    for key in ["cpu", "memory"] {
        assert!(
            resources.requests.as_ref().unwrap().contains_key(key),
            "requests.{key}"
        );
    }
    assert!(
        resources.limits.as_ref().unwrap().contains_key("memory"),
        "limits.memory"
    );
}

fn allows(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
    rules.iter().any(|r| {
        r.api_groups
            .as_ref()
            .is_some_and(|g| g.iter().any(|g| g == group))
            && r.resources
                .as_ref()
                .is_some_and(|rs| rs.iter().any(|rs| rs == resource))
            && r.verbs.iter().any(|v| v == verb)
    })
}

/// Every (group, resource, verb) the rules grant, one per entry.
fn grants(rules: &[PolicyRule]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in rules {
        for group in rule.api_groups.clone().unwrap_or_default() {
            for resource in rule.resources.clone().unwrap_or_default() {
                for verb in &rule.verbs {
                    out.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    out
}

fn grant(group: &str, resource: &str, verb: &str) -> (String, String, String) {
    (group.into(), resource.into(), verb.into())
}

#[test]
fn cli_users_get_exactly_the_verbs_the_plugin_uses() {
    let cluster: ClusterRole = one("ClusterRole", "netdiag-user");
    let rules = cluster.rules.unwrap();
    assert!(
        rules
            .iter()
            .all(|r| r.resource_names.is_none() && r.non_resource_urls.is_none())
    );
    // The plugin lists these kinds and watches none; `get` of the same kinds lets the read
    // commands it prints be pasted (list already reveals every object).
    let kinds = [
        ("", "namespaces"),
        ("", "pods"),
        ("", "services"),
        ("discovery.k8s.io", "endpointslices"),
        ("networking.k8s.io", "networkpolicies"),
        // `--from deploy/NAME` (sts/, ds/, rs/) reads the workload's selector; completion lists them.
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("apps", "replicasets"),
        ("policy.networking.k8s.io", "clusternetworkpolicies"),
        ("policy.networking.k8s.io", "adminnetworkpolicies"),
        ("policy.networking.k8s.io", "baselineadminnetworkpolicies"),
    ];
    let mut expected: BTreeSet<_> = kinds
        .iter()
        .flat_map(|(group, kind)| [grant(group, kind, "list"), grant(group, kind, "get")])
        .collect();
    // Nodes by name (the source's, for its zone when endpoints carry zone hints), and listed for
    // whether an address target is a node's (its port a node port).
    expected.insert(grant("", "nodes", "get"));
    expected.insert(grant("", "nodes", "list"));
    assert_eq!(grants(&rules), expected);
    assert!(
        !allows(&rules, "", "pods/portforward", "create") && !allows(&rules, "", "pods/portforward", "get"),
        "port-forward must stay namespaced"
    );

    let role: Role = one("Role", "netdiag-user");
    assert_eq!(role.metadata.namespace.as_deref(), Some("netdiag"));
    // Find the agent pod by label, read the agent DaemonSet (its uid makes a pod genuine),
    // port-forward to it.
    let rules = role.rules.unwrap();
    let expected = BTreeSet::from([
        grant("", "pods", "list"),
        grant("apps", "daemonsets", "get"),
        grant("", "pods/portforward", "get"),
        grant("", "pods/portforward", "create"),
    ]);
    assert_eq!(grants(&rules), expected);
    assert_daemonset_read_by_name_only(&rules);

    let crb: ClusterRoleBinding = one("ClusterRoleBinding", "netdiag-user");
    assert_eq!(
        (crb.role_ref.kind.as_str(), crb.role_ref.name.as_str()),
        ("ClusterRole", "netdiag-user")
    );
    let rb: RoleBinding = one("RoleBinding", "netdiag-user");
    assert_eq!(rb.metadata.namespace.as_deref(), Some("netdiag"));
    assert_eq!(
        (rb.role_ref.kind.as_str(), rb.role_ref.name.as_str()),
        ("Role", "netdiag-user")
    );
}

/// The rules read DaemonSets only as `get` of the agent's, by name.
fn assert_daemonset_read_by_name_only(rules: &[PolicyRule]) {
    for rule in rules
        .iter()
        .filter(|r| r.resources.iter().flatten().any(|res| res == "daemonsets"))
    {
        assert_eq!(rule.verbs, ["get"]);
        assert_eq!(
            rule.resource_names.as_deref(),
            Some(&["netdiag-agent".to_string()][..])
        );
    }
}

/// A tool installed by `tests/scripts/install-deps` (in its tools venv); fails the calling test,
/// saying how to install it, when it is missing.
#[track_caller]
fn installed_tool(name: &str, env: &str) -> PathBuf {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| {
        let dir = std::env::var_os("NETDIAG_TOOLS_DIR").unwrap_or_else(|| "/opt/netdiag-tools".into());
        PathBuf::from(dir).join("bin").join(name)
    });
    assert!(
        path.exists(),
        "needs {name} at {}: run tests/scripts/install-deps, or set {env} to it",
        path.display()
    );
    path
}

/// Runs kubernetes-validate strictly against Kubernetes `version` on `files` (offline: the
/// package ships the schemas).
fn validate(validator: &Path, version: &str, files: &[PathBuf]) {
    let out = std::process::Command::new(validator)
        .args(["--strict", "--quiet", "--kubernetes-version", version])
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    assert!(
        out.status.success(),
        "manifests do not validate against Kubernetes {version}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The manifest files (`deploy/*.yaml` and `deploy/examples/*.yaml`, not kustomizations).
fn manifest_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [deploy_dir(), deploy_dir().join("examples")] {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "yaml") && !path.ends_with("kustomization.yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn the_critical_priority_quota_covers_the_agents_priority_class_in_its_namespace() {
    let quota: ResourceQuota = one("ResourceQuota", "netdiag-critical-pods");
    assert_eq!(quota.metadata.namespace.as_deref(), Some("netdiag"));
    let scope = quota
        .spec
        .unwrap()
        .scope_selector
        .unwrap()
        .match_expressions
        .unwrap();
    assert_eq!(scope.len(), 1);
    assert_eq!(
        (scope[0].scope_name.as_str(), scope[0].operator.as_str()),
        ("PriorityClass", "In")
    );
    assert_eq!(scope[0].values.clone().unwrap(), ["system-node-critical"]);
}

#[test]
fn manifests_validate_strictly_against_kubernetes_1_30_through_1_34() {
    let validator = installed_tool("kubernetes-validate", "NETDIAG_KUBERNETES_VALIDATE");
    let files = manifest_files();
    assert!(files.len() >= 6, "{files:?}");
    for version in ["1.30", "1.31", "1.32", "1.33", "1.34"] {
        validate(&validator, version, &files);
    }
}

/// `to` relative to the directory `from` (both absolute): kustomize takes relative paths only.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let (from, to): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for part in &to[common..] {
        out.push(part);
    }
    out
}

#[test]
fn the_kubernetes_1_29_component_renders_manifests_that_validate_strictly_against_1_29() {
    let validator = installed_tool("kubernetes-validate", "NETDIAG_KUBERNETES_VALIDATE");
    let kubectl = installed_tool("kubectl", "NETDIAG_KUBECTL");
    // An overlay as a 1.29 user writes it, outside deploy/.
    let overlay = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("k8s-1.29-{}", std::process::id()));
    std::fs::create_dir_all(&overlay).unwrap();
    let deploy = deploy_dir().canonicalize().unwrap();
    let base = relative(&overlay, &deploy);
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "resources: [{}]\ncomponents: [{}]\n",
            base.display(),
            base.join("compat/k8s-1.29").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(kubectl)
        .args(["kustomize"])
        .arg(&overlay)
        .output()
        .expect("run kubectl kustomize");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rendered = overlay.join("rendered.yaml");
    std::fs::write(&rendered, &out.stdout).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("container.apparmor.security.beta.kubernetes.io/agent: unconfined"),
        "{text}"
    );
    assert!(!text.contains("appArmorProfile"), "{text}");
    validate(
        &validator,
        "1.29",
        &[rendered, deploy.join("examples/user-bindings.yaml")],
    );
    std::fs::remove_dir_all(&overlay).unwrap();
}

#[test]
fn krew_manifest_renders_to_a_plugin_that_installs_kubectl_netdiag() {
    let template = std::fs::read_to_string(deploy_dir().join("krew/netdiag.yaml")).unwrap();
    // Render the krew-release-bot template the way the bot does for a tag.
    let tag = "v1.2.3";
    let mut rendered = String::new();
    for line in template.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("{{addURIAndSha \"") {
            let indent = &line[..line.len() - trimmed.len()];
            let uri = rest.split('"').next().unwrap().replace("{{ .TagName }}", tag);
            rendered.push_str(&format!(
                "{indent}uri: {uri}\n{indent}sha256: {}\n",
                "0".repeat(64)
            ));
        } else {
            rendered.push_str(&line.replace("{{ .TagName }}", tag));
            rendered.push('\n');
        }
    }
    let plugin: Value = serde_yaml_ng::from_str(&rendered).unwrap_or_else(|e| panic!("{e}\n{rendered}"));
    assert_eq!(
        plugin["apiVersion"].as_str(),
        Some("krew.googlecontainertools.github.com/v1alpha2")
    );
    assert_eq!(plugin["kind"].as_str(), Some("Plugin"));
    assert_eq!(plugin["metadata"]["name"].as_str(), Some("netdiag"));
    assert_eq!(plugin["spec"]["version"].as_str(), Some(tag));
    let platforms = plugin["spec"]["platforms"].as_sequence().unwrap();
    assert!(!platforms.is_empty());
    for platform in platforms {
        assert_eq!(platform["bin"].as_str(), Some("kubectl-netdiag"));
        // The plugin's archives: Linux and macOS (the agent is Linux's alone).
        let os = platform["selector"]["matchLabels"]["os"].as_str().unwrap();
        assert!(["linux", "darwin"].contains(&os), "{os}");
        let uri = platform["uri"].as_str().unwrap();
        assert!(
            uri.contains(tag) && uri.contains(&format!("_{os}_")) && uri.ends_with(".tar.gz"),
            "{uri}"
        );
    }
}

#[test]
fn build_image_makes_the_image_the_daemonset_runs_with_the_agent_on_path() {
    let ds: DaemonSet = one("DaemonSet", "netdiag-agent");
    let agent = &ds.spec.unwrap().template.spec.unwrap().containers[0];
    let image = agent.image.clone().unwrap();
    // deploy/build-image tags the image with the workspace version, which the DaemonSet names.
    assert_eq!(
        image,
        format!("ghcr.io/netdiag/netdiag-agent:{}", env!("CARGO_PKG_VERSION")),
        "the DaemonSet's image is not the one deploy/build-image builds for this version"
    );
    let script = std::fs::read_to_string(deploy_dir().join("build-image")).unwrap();
    assert!(script.contains("image_name=ghcr.io/netdiag/netdiag-agent\n"));
    // The DaemonSet gives only args, and its exec probes call `netdiag-agent` by name.
    assert!(agent.command.is_none());
    assert!(script.contains("--config.entrypoint=/usr/local/bin/netdiag-agent "));
    assert!(script.contains(r#""$1"/usr/local/bin/netdiag-agent"#));
    assert!(
        script.contains("--config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    );
    for probe in [&agent.readiness_probe, &agent.liveness_probe] {
        let command = probe
            .as_ref()
            .unwrap()
            .exec
            .as_ref()
            .unwrap()
            .command
            .clone()
            .unwrap();
        assert_eq!(command[0], "netdiag-agent");
    }
}

#[test]
fn the_endpoint_rbac_gives_the_agent_reviews_reads_and_peer_probes_and_checkers_only_checks() {
    let agent: ClusterRole = one("ClusterRole", "netdiag-agent-endpoint");
    let rules = agent.rules.unwrap();
    assert!(allows(&rules, "authentication.k8s.io", "tokenreviews", "create"));
    assert!(allows(
        &rules,
        "authorization.k8s.io",
        "subjectaccessreviews",
        "create"
    ));
    for (group, resource) in [
        ("", "namespaces"),
        ("", "pods"),
        ("", "services"),
        ("discovery.k8s.io", "endpointslices"),
        ("networking.k8s.io", "networkpolicies"),
    ] {
        assert!(allows(&rules, group, resource, "list"), "list {group}/{resource}");
    }
    assert!(
        allows(&rules, "", "nodes", "get"),
        "the source's Node, for its zone"
    );
    assert!(
        allows(&rules, "", "nodes", "list"),
        "the Nodes, for whether an address target is a node's"
    );
    assert!(allows(&rules, "netdiag.io", "probes", "create"));
    assert!(
        !allows(&rules, "netdiag.io", "checks", "create"),
        "the agent checks nothing on its own"
    );
    assert!(
        allows(&rules, "apps", "daemonsets", "get"),
        "peers are genuine by the DaemonSet's uid"
    );
    assert_daemonset_read_by_name_only(&rules);
    let binding: ClusterRoleBinding = one("ClusterRoleBinding", "netdiag-agent-endpoint");
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (
            subject.kind.as_str(),
            subject.name.as_str(),
            subject.namespace.as_deref()
        ),
        ("ServiceAccount", "netdiag-agent", Some("netdiag"))
    );

    let checker: ClusterRole = one("ClusterRole", "netdiag-checker");
    let rules = checker.rules.unwrap();
    assert!(allows(&rules, "netdiag.io", "checks", "create"));
    assert_eq!(rules.len(), 1, "checkers get checks only");
    assert!(
        !allows(&rules, "netdiag.io", "checks/hostnetwork", "create"),
        "probing as a node is a grant of its own"
    );
    let host: ClusterRole = one("ClusterRole", "netdiag-checker-hostnetwork");
    assert_eq!(
        grants(&host.rules.unwrap()),
        BTreeSet::from([grant("netdiag.io", "checks/hostnetwork", "create")])
    );
    let example: RoleBinding = one("RoleBinding", "netdiag-checks");
    assert_eq!(example.role_ref.name, "netdiag-checker");
    assert_eq!(example.metadata.namespace.as_deref(), Some("shop"));
}

#[test]
fn daemonset_serves_the_endpoint_with_a_netdiag_audience_token_and_an_optional_certificate() {
    let ds: DaemonSet = one("DaemonSet", "netdiag-agent");
    let pod = ds.spec.unwrap().template.spec.unwrap();
    let agent = &pod.containers[0];
    let env = agent.env.clone().unwrap();
    let listen = env.iter().find(|e| e.name == "NETDIAG_ENDPOINT_LISTEN");
    assert_eq!(listen.and_then(|e| e.value.as_deref()), Some("0.0.0.0:9443"));
    let ports = agent.ports.clone().unwrap();
    assert!(
        ports
            .iter()
            .any(|p| p.name.as_deref() == Some("endpoint") && p.container_port == 9443)
    );
    let volumes = pod.volumes.unwrap();
    let projected_audience = volumes
        .iter()
        .filter_map(|v| v.projected.as_ref())
        .flat_map(|p| p.sources.iter().flatten())
        .filter_map(|s| s.service_account_token.as_ref())
        .any(|t| t.audience.as_deref() == Some("netdiag") && t.path == "token");
    assert!(projected_audience, "a projected token with audience netdiag");
    let tls = volumes
        .iter()
        .find(|v| v.name == "tls")
        .and_then(|v| v.secret.as_ref())
        .unwrap();
    assert_eq!(
        tls.optional,
        Some(true),
        "the agent falls back to a self-signed certificate"
    );

    let svc: Service = one("Service", "netdiag-agent");
    let port = &svc.spec.unwrap().ports.unwrap()[0];
    assert_eq!(port.port, 9443);
}

#[test]
fn daemonset_runs_on_linux_nodes_with_recommended_labels_and_a_scrapeable_metrics_port() {
    let ds: DaemonSet = one("DaemonSet", "netdiag-agent");
    let template = ds.spec.as_ref().unwrap().template.clone();
    let pod = template.spec.unwrap();
    assert_eq!(
        pod.node_selector
            .as_ref()
            .and_then(|s| s.get("kubernetes.io/os"))
            .map(String::as_str),
        Some("linux")
    );
    for labels in [
        ds.metadata.labels.as_ref().unwrap(),
        template.metadata.as_ref().unwrap().labels.as_ref().unwrap(),
    ] {
        for key in ["name", "instance", "component", "part-of", "version"] {
            assert!(
                labels.contains_key(&format!("app.kubernetes.io/{key}")),
                "app.kubernetes.io/{key} missing: {labels:?}"
            );
        }
    }
    let agent = &pod.containers[0];
    let env = |name: &str| {
        agent
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    let listen: std::net::SocketAddr = env("NETDIAG_METRICS_LISTEN")
        .expect("a metrics listener")
        .parse()
        .unwrap();
    assert!(
        listen.ip().is_unspecified(),
        "Prometheus scrapes the pod IP: {listen}"
    );
    let port = agent
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .expect("a named metrics port");
    assert_eq!(port.container_port, i32::from(listen.port()));
    let annotations = template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .clone()
        .unwrap_or_default();
    assert_eq!(
        annotations.get("prometheus.io/port"),
        Some(&listen.port().to_string())
    );
    assert_eq!(env("NETDIAG_LOG_FORMAT").as_deref(), Some("json"));
}
