//! `up` on the real control plane: the same namespaces, links and fault rules as the stand-in
//! lab, then etcd, kube-apiserver, kube-controller-manager and kube-scheduler; the scenario's
//! objects created through the API (EndpointSlices come from the controller); `deploy/` applied
//! as shipped (the DaemonSet controller makes the agents' pods); the lab kubelet's part — each
//! pod's process, its status, the port-forward server — and kube-proxy and CoreDNS on top.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use super::api::{API_TIMEOUT, Cluster};
use super::bins::Binaries;
use super::components::{self as c, Layout};
use super::kubelet;
use super::pki::{Identity, Pki};
use crate::lab::Builder;
use crate::plan::{self, PodRole};
use crate::scenario::{Fault, IpFamily};
use crate::state::{ApiInfo, LabInfo};

/// The user the plugin runs as in the real lab: bound only by `deploy/rbac-user.yaml`.
pub const LAB_USER: &str = "netdiag-lab-user";

impl Builder<'_> {
    pub(crate) fn build_real(&self, bins: &Binaries, objects: Vec<Value>) -> Result<LabInfo> {
        let at = Layout {
            dir: self.state.dir.clone(),
        };
        // A state dir used before holds the last cluster's etcd data and certificates: a new lab
        // starts from none of it.
        for dir in ["etcd", "pki", "kubelet"] {
            let path = at.path(dir);
            if path.exists() {
                std::fs::remove_dir_all(&path)
                    .with_context(|| format!("failed to remove {}", path.display()))?;
            }
        }
        self.network()?;
        self.real_fault_rules()?;
        let me = std::env::current_exe().context("failed to find the lab's own executable")?;
        self.outside(&me)?;
        std::fs::create_dir_all(at.path("logs")).context("failed to create the lab's logs directory")?;
        let pki = self.write_pki(&at)?;
        self.write_static_tokens(&at)?;
        let mut control = vec![
            ("etcd", c::etcd(bins, self.plan, &at)?),
            ("kube-apiserver", c::apiserver(bins, self.plan, &pki, &at)?),
            (
                "kube-controller-manager",
                c::controller_manager(bins, self.plan, &pki, &at)?,
            ),
            ("kube-scheduler", c::scheduler(bins, self.plan, &at)?),
        ];
        let (relay_pid, url) = self.start_relay()?;
        pki.kubeconfig(&self.state.path("kubeconfig"), &url, "user")?;
        pki.kubeconfig(&self.state.path("admin.kubeconfig"), &url, "admin")?;

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to start the lab's async runtime")?;
        let populated = runtime.block_on(self.populate(bins, &pki, &at, objects));
        // A component that died explains a failure better than the wait that noticed it.
        c::check_running(&mut control, &at)?;
        let (pids, agent_names) = populated?;
        // A cut or shrunk link happens to a running cluster: after every component synced over it.
        self.link_faults()?;
        self.family_cuts()?;
        self.node_local_dns()?;
        let mut info = self.info(&pids, relay_pid, &url);
        info.api = ApiInfo { url, pid: relay_pid };
        // The DaemonSet named the agents' pods; the plan's names were placeholders.
        for (slot, name) in agent_names {
            let planned = self.plan.pods[slot].key();
            let real = format!("{}/{name}", plan::AGENT_NAMESPACE);
            for agent in info.agents.iter_mut().filter(|a| a.pod == planned) {
                agent.pod = real.clone();
            }
            for pod in info
                .pods
                .iter_mut()
                .filter(|p| format!("{}/{}", p.namespace, p.name) == planned)
            {
                pod.name = name.clone();
            }
        }
        self.state.write_json("lab.json", &info)?;
        self.start_kubelet()?;
        Ok(info)
    }

    /// The lab kubelet's long-running part (`netdiag-lab kubelet`): the pods that come and go
    /// after `up`. `down` stops it with the lab's other processes (its command line names the
    /// state dir).
    fn start_kubelet(&self) -> Result<()> {
        let me = std::env::current_exe().context("failed to find the lab's own executable")?;
        let log = std::fs::File::create(self.state.path("logs/kubelet.log"))
            .context("failed to create the kubelet's log")?;
        Command::new(me)
            .args(["kubelet", "--state"])
            .arg(&self.state.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("failed to start the lab kubelet")?;
        Ok(())
    }

    /// Everything after the API server: objects, kubelet work, kube-proxy, CoreDNS, agents.
    async fn populate(
        &self,
        bins: &Binaries,
        pki: &Pki,
        at: &Layout,
        objects: Vec<Value>,
    ) -> Result<(BTreeMap<usize, u32>, Vec<(usize, String)>)> {
        let mut cluster = Cluster::connect(&self.state.path("admin.kubeconfig")).await?;
        cluster.wait_ready(Instant::now() + API_TIMEOUT).await?;
        self.install_crds(&mut cluster, bins).await?;
        let late = self.late_services();
        let own_slices: Vec<String> = self
            .scenario
            .endpoint_slices
            .iter()
            .filter_map(|s| {
                s.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .collect();
        let agents: Vec<String> = self
            .plan
            .pods
            .iter()
            .filter(|p| p.role == PodRole::Agent)
            .map(|p| p.key())
            .collect();
        let (nodes, pods, rest) = sort_objects(objects, &late, &own_slices, &agents);
        for node in &nodes {
            let made = cluster.create(node).await?;
            cluster.write_status(node, &kubelet::node_status(node)).await?;
            // kube-apiserver's TaintNodesByCondition admission taints a new Node
            // `node.kubernetes.io/not-ready:NoSchedule`; the node-lifecycle controller lifts it once
            // the node reports Ready. That controller does not run here (tests/README.md), so the
            // lab lifts it as it would: otherwise only pods tolerating every taint (the agent's)
            // are ever scheduled or made by a DaemonSet.
            let taints = kubelet::taints_once_ready(&made.data);
            cluster.patch(node, &json!({"spec": {"taints": taints}})).await?;
        }
        for obj in &rest.early {
            self.create_object(&mut cluster, obj).await?;
        }
        for (i, _) in self.plan.nodes.iter().enumerate() {
            c::kubelet_streaming(bins, self.plan, i, pki, at)?;
        }
        self.apply_deploy().await?;
        // The scenario's RBAC (its callers' bindings to deploy/'s roles), which kube-apiserver's
        // SubjectAccessReview then answers from.
        for obj in &self.scenario.rbac {
            cluster.create(obj).await.with_context(|| {
                format!(
                    "failed to create the scenario's rbac {}",
                    super::api::describe(obj)
                )
            })?;
        }

        // The kubelet's part: run each pod bound to a node, then report it Running.
        let mut children: Vec<(usize, Child)> = Vec::new();
        let stale = self.stale_endpoints();
        let (orphans, pods): (Vec<Value>, Vec<Value>) = pods.into_iter().partition(is_adoptable_agent);
        for pod in &pods {
            cluster.create(&with_stale_labels(pod, &stale)).await?;
        }
        children.extend(self.start_app_pods(bins, at)?);
        let agents = kubelet::run_agents(self, &mut cluster, at, pki).await?;
        let names: Vec<(usize, String)> = agents.iter().map(|a| (a.slot, a.name.clone())).collect();
        children.extend(agents.into_iter().map(|a| (a.slot, a.child)));
        let ready_dir = self.state.path("ready");
        self.wait_ready(&mut children, &ready_dir, Instant::now() + API_TIMEOUT)?;
        for pod in &pods {
            cluster.write_status(pod, &pod["status"]).await?;
            if pod.pointer("/metadata/deletionTimestamp").is_some() {
                cluster.delete(pod, 30).await?;
            }
        }
        kubelet::report_agents(self, &mut cluster, &names).await?;
        create_orphan_agents(&mut cluster, &orphans).await?;

        // The dataplane: kube-proxy on every node, then the Services a fault needs it to miss.
        let mut proxies = BTreeMap::new();
        for (i, _) in self.plan.nodes.iter().enumerate() {
            proxies.insert(
                i,
                c::kube_proxy(bins, self.plan, i, self.scenario.proxy_mode, at)?,
            );
        }
        self.wait_proxies(&[], false).await?;
        let mut stopped = self.stop_proxies_for_faults(&mut proxies);
        for obj in &rest.late {
            self.create_object(&mut cluster, obj).await?;
        }
        stopped.extend(
            self.leave_stale_rules(&mut cluster, &mut proxies, &stale, &pods)
                .await?,
        );
        self.wait_proxies(&stopped, true).await?;

        let pids: BTreeMap<usize, u32> = children.iter().map(|(k, c)| (*k, c.id())).collect();
        Ok((pids, names))
    }

    /// Creates one of the scenario's objects. A Service is created as its user would write it:
    /// without the healthCheckNodePort the scenario leaves kube-apiserver to allocate. Then the
    /// lab, as the cluster's load-balancer controller, writes a LoadBalancer's address through
    /// the status subresource (a create sets no status).
    async fn create_object(&self, cluster: &mut Cluster, obj: &Value) -> Result<()> {
        if obj["kind"] != json!("Service") {
            cluster.create(obj).await?;
            return Ok(());
        }
        let key = super::api::describe(obj);
        let allocated = self
            .scenario
            .services
            .iter()
            .any(|s| format!("{}/{}", s.namespace, s.name) == key && s.health_check_node_port.is_none());
        let mut body = obj.clone();
        if let Some(spec) = body.get_mut("spec").and_then(Value::as_object_mut)
            && allocated
        {
            spec.remove("healthCheckNodePort");
        }
        cluster.create(&body).await?;
        if let Some(lb) = obj
            .pointer("/status/loadBalancer")
            .filter(|lb| lb.get("ingress").is_some())
        {
            cluster
                .write_status(obj, &json!({ "loadBalancer": lb }))
                .await
                .with_context(|| format!("failed to give Service {key} its load balancer's address"))?;
        }
        Ok(())
    }

    /// The certificates of the API server, each component, the lab's users and each kubelet,
    /// and the components' kubeconfigs (inside the underlay the API is at 127.0.0.1; from nodes
    /// and pods at the cluster address).
    fn write_pki(&self, at: &Layout) -> Result<Pki> {
        let pki = Pki::create(&at.path("pki"))?;
        let mut ips: Vec<IpAddr> = vec![
            plan::UNDERLAY_ROUTER_IP.into(),
            std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::Ipv4Addr::new(10, 96, 0, 1).into(),
        ];
        if self.plan.has(IpFamily::V6) {
            ips.push("fd00:10:96::1".parse::<IpAddr>()?);
            ips.push(plan::UNDERLAY_ROUTER_IP6.into());
        }
        pki.serving(
            "apiserver",
            "kube-apiserver",
            &[
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "localhost",
            ],
            &ips,
        )?;
        for (file, user, group) in [
            ("admin", "netdiag-lab-admin", Some("system:masters")),
            // In the group deploy/examples/user-bindings.yaml binds.
            ("user", LAB_USER, Some("netdiag-users")),
            (
                "kubelet-client",
                "kube-apiserver-kubelet-client",
                Some("system:masters"),
            ),
            // The controller manager runs its controllers under its own name (no per-controller
            // accounts), which needs more than the bootstrap role of that name grants.
            (
                "kube-controller-manager",
                "system:kube-controller-manager",
                Some("system:masters"),
            ),
            ("kube-scheduler", "system:kube-scheduler", None),
            ("kube-proxy", "system:kube-proxy", None),
            ("coredns", "system:coredns", None),
        ] {
            pki.client(&Identity { file, user, group })?;
        }
        for node in &self.plan.nodes {
            let mut ips: Vec<IpAddr> = vec![node.ip.into()];
            if self.plan.has(IpFamily::V6) {
                ips.push(node.ip6.into());
            }
            pki.serving(&format!("kubelet-{}", node.name), &node.name, &[&node.name], &ips)?;
        }
        let inside = format!("https://127.0.0.1:{}", c::APISERVER_PORT);
        let cluster = format!("https://{}:{}", plan::UNDERLAY_ROUTER_IP, c::APISERVER_PORT);
        pki.kubeconfig(
            &at.path("kube-controller-manager.kubeconfig"),
            &inside,
            "kube-controller-manager",
        )?;
        pki.kubeconfig(&at.path("kube-scheduler.kubeconfig"), &inside, "kube-scheduler")?;
        pki.kubeconfig(&at.path("kube-proxy.kubeconfig"), &cluster, "kube-proxy")?;
        pki.kubeconfig(&at.path("coredns.kubeconfig"), &cluster, "coredns")?;
        Ok(pki)
    }

    /// The scenario's bearer tokens as kube-apiserver's static token file: user tokens as
    /// they are, ServiceAccount tokens as that account's user and groups.
    fn write_static_tokens(&self, at: &Layout) -> Result<()> {
        let mut csv = String::new();
        for (n, t) in self.scenario.tokens.iter().enumerate() {
            let csv_safe = |v: &str| !v.is_empty() && !v.contains([',', '"', '\n', '\r']);
            if !csv_safe(&t.token) {
                bail!("token {n} of the scenario is empty or holds a comma, quote or newline");
            }
            let Some((user, mut groups)) = t.identity() else {
                bail!("token {n} of the scenario names no user or ServiceAccount");
            };
            groups.push("system:authenticated".into());
            if !csv_safe(&user) || groups.iter().any(|g| !csv_safe(g)) {
                bail!("token {n} of the scenario names a user or group with a comma, quote or newline");
            }
            csv += &format!("{},{user},lab-token-{n},\"{}\"\n", t.token, groups.join(","));
        }
        std::fs::write(at.path("tokens.csv"), csv).context("failed to write the static token file")
    }

    /// The relay from a host loopback port to the API server in the underlay; returns its pid
    /// and the URL the host uses.
    fn start_relay(&self) -> Result<(u32, String)> {
        let me = std::env::current_exe().context("failed to find the lab's own executable")?;
        let to = SocketAddr::from((plan::UNDERLAY_ROUTER_IP, c::APISERVER_PORT));
        let mut child = Command::new(me)
            .args(["relay", "--state"])
            .arg(&self.state.dir)
            .arg("--netns")
            .arg(crate::netns::named(&self.plan.underlay_netns))
            .args(["--to", &to.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("failed to start the API relay")?;
        let mut line = String::new();
        BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| anyhow!("relay without stdout"))?,
        )
        .read_line(&mut line)
        .context("failed to read the API relay's port")?;
        let port: u16 = line
            .trim()
            .parse()
            .with_context(|| format!("the API relay printed {line:?}, not a port"))?;
        Ok((child.id(), format!("https://127.0.0.1:{port}")))
    }

    /// The deny and reply-drop faults as rules of their own; real kube-proxy writes the Service
    /// rules.
    fn real_fault_rules(&self) -> Result<()> {
        for node in &self.plan.nodes {
            for family in &self.plan.families {
                let (tool, ext) = match family {
                    IpFamily::V4 => ("iptables-restore", "faults.iptables"),
                    IpFamily::V6 => ("ip6tables-restore", "faults.ip6tables"),
                };
                let text = crate::kubeproxy::fault_rules(self.plan, &self.scenario.faults, *family);
                self.run_file(
                    &format!("{}.{ext}", node.netns),
                    &text,
                    "ip",
                    &["netns", "exec", &node.netns, tool, "--noflush"],
                )
                .with_context(|| format!("failed to program the fault rules of {}", node.name))?;
            }
        }
        Ok(())
    }

    /// One-family link cuts, in the mangle table of each node (see `real_fault_rules`).
    fn family_cuts(&self) -> Result<()> {
        for (i, node) in self.plan.nodes.iter().enumerate() {
            for family in &self.plan.families {
                let text =
                    crate::kubeproxy::family_cut_rules_restore(self.plan, i, &self.scenario.faults, *family);
                if text.is_empty() {
                    continue;
                }
                let (tool, ext) = match family {
                    IpFamily::V4 => ("iptables-restore", "cut.iptables"),
                    IpFamily::V6 => ("ip6tables-restore", "cut.ip6tables"),
                };
                self.run_file(
                    &format!("{}.{ext}", node.netns),
                    &text,
                    "ip",
                    &["netns", "exec", &node.netns, tool, "--noflush"],
                )
                .with_context(|| format!("failed to cut {} on {}", family.as_k8s(), node.name))?;
            }
        }
        Ok(())
    }

    async fn install_crds(&self, cluster: &mut Cluster, bins: &Binaries) -> Result<()> {
        let mut kinds = Vec::new();
        for entry in
            std::fs::read_dir(&bins.crds).with_context(|| format!("no CRDs in {}", bins.crds.display()))?
        {
            let path = entry?.path();
            let text = std::fs::read_to_string(&path)?;
            let crd: Value =
                serde_yaml_ng::from_str(&text).with_context(|| format!("{} is not a CRD", path.display()))?;
            cluster.create(&crd).await?;
            let group = crd
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let kind = crd
                .pointer("/spec/names/kind")
                .and_then(Value::as_str)
                .unwrap_or_default();
            for v in crd
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if v["served"] == json!(true) {
                    kinds.push(json!({"apiVersion": format!("{group}/{}", v["name"].as_str().unwrap_or("")), "kind": kind}));
                }
            }
        }
        // Served once discovery lists them.
        let deadline = Instant::now() + API_TIMEOUT;
        for kind in kinds {
            while cluster.list(&kind, None, "").await.is_err() {
                crate::signals::check()?;
                if Instant::now() > deadline {
                    bail!(
                        "the CRD of {} was not served within {}s",
                        kind,
                        API_TIMEOUT.as_secs()
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// `kubectl apply -k deploy/` as the administrator, validated by the server.
    async fn apply_deploy(&self) -> Result<()> {
        let kubectl = crate::runner::kubectl_path();
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        // The manifests, then the example bindings of the plugin's users (the lab's user is in
        // their group), both as shipped.
        for (how, what) in [
            ("-k", deploy.clone()),
            ("-f", deploy.join("examples/user-bindings.yaml")),
        ] {
            let out = tokio::process::Command::new(&kubectl)
                .arg("--kubeconfig")
                .arg(self.state.path("admin.kubeconfig"))
                .args(["apply", "--validate=strict", how])
                .arg(&what)
                .stdin(Stdio::null())
                .output()
                .await
                .with_context(|| format!("failed to run {}", kubectl.display()))?;
            if !out.status.success() {
                bail!(
                    "kubectl apply {how} {} failed: {}",
                    what.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        // CoreDNS's read access, as a cluster's DNS add-on brings it.
        let bindings = String::from(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: system:coredns}\n\
             roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:coredns}\n\
             subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: system:coredns}]\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: system:coredns}\n\
             rules:\n- {apiGroups: [\"\"], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}\n\
             - {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}\n",
        );
        let mut child = tokio::process::Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(self.state.path("admin.kubeconfig"))
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        use tokio::io::AsyncWriteExt as _;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(bindings.as_bytes()).await?;
        }
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            bail!(
                "binding the lab's users failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// The `service-rule-stale` faults as (node index, the pod that leaves, the Service's
    /// selector): the pod starts as the Service's endpoint and leaves it once the node's
    /// kube-proxy is stopped, so that node keeps the rule to it, as a kube-proxy that missed the
    /// update does.
    fn stale_endpoints(&self) -> Vec<StaleEndpoint> {
        let mut out = Vec::new();
        for f in &self.scenario.faults {
            let Fault::ServiceRuleStale { service, node, to } = f else {
                continue;
            };
            let Some(node) = self.plan.nodes.iter().position(|n| &n.name == node) else {
                continue;
            };
            let Some(svc) = self.plan.services.iter().find(|s| &s.key() == service) else {
                continue;
            };
            let Some(pod) = self.plan.pod(to) else { continue };
            out.push(StaleEndpoint {
                node,
                pod: pod.key(),
                ips: pod.addrs(),
                selector: svc.selector.clone().unwrap_or_default(),
                labels: pod.spec.labels.clone(),
            });
        }
        out
    }

    /// For each stale endpoint: once its node's rules translate to it, stop that kube-proxy and
    /// give the pod its own labels back (it leaves the Service). Returns the stopped nodes.
    async fn leave_stale_rules(
        &self,
        cluster: &mut Cluster,
        proxies: &mut BTreeMap<usize, Child>,
        stale: &[StaleEndpoint],
        pods: &[Value],
    ) -> Result<Vec<usize>> {
        let mut stopped = Vec::new();
        let deadline = Instant::now() + API_TIMEOUT;
        for s in stale {
            let netns = &self.plan.nodes[s.node].netns;
            while !s.ips.iter().all(|ip| {
                node_ruleset(netns, self.scenario.proxy_mode).is_ok_and(|r| r.contains(&ip.to_string()))
            }) {
                if Instant::now() > deadline {
                    bail!(
                        "kube-proxy on {} never sent the Service to {}",
                        self.plan.nodes[s.node].name,
                        s.pod
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if let Some(mut child) = proxies.remove(&s.node) {
                kill_tree(&mut child);
                stopped.push(s.node);
            }
            let Some(pod) = pods.iter().find(|p| super::api::describe(p) == s.pod) else {
                continue;
            };
            let mut labels = serde_json::Map::new();
            for key in s.selector.keys() {
                labels.insert(key.clone(), s.labels.get(key).map_or(Value::Null, |v| json!(v)));
            }
            cluster
                .patch(pod, &json!({"metadata": {"labels": labels}}))
                .await?;
        }
        // The running kube-proxies drop the pod from their rules.
        for (i, node) in self.plan.nodes.iter().enumerate() {
            if stopped.contains(&i) {
                continue;
            }
            for s in stale {
                let mode = self.scenario.proxy_mode;
                while s.ips.iter().any(|ip| {
                    node_ruleset(&node.netns, mode).is_ok_and(|r| r.contains(&dnat_token(mode, *ip, None)))
                }) {
                    crate::signals::check()?;
                    if Instant::now() > deadline {
                        bail!(
                            "kube-proxy on {} kept sending the Service to {} after it left",
                            node.name,
                            s.pod
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Ok(stopped)
    }

    /// Services that must be created after a node's kube-proxy stopped (`service-rules-missing`).
    fn late_services(&self) -> Vec<String> {
        self.scenario
            .faults
            .iter()
            .filter_map(|f| match f {
                Fault::ServiceRulesMissing { service, .. } => Some(service.clone()),
                _ => None,
            })
            .collect()
    }

    /// Stops the kube-proxy of each node a `service-rules-missing` fault names; returns them.
    fn stop_proxies_for_faults(&self, proxies: &mut BTreeMap<usize, Child>) -> Vec<usize> {
        let mut stopped = Vec::new();
        for f in &self.scenario.faults {
            let Fault::ServiceRulesMissing { node, .. } = f else {
                continue;
            };
            let Some(i) = self.plan.nodes.iter().position(|n| &n.name == node) else {
                continue;
            };
            if let Some(mut child) = proxies.remove(&i) {
                kill_tree(&mut child);
                stopped.push(i);
            }
        }
        stopped
    }

    /// Waits until every running kube-proxy is healthy and its rules hold each Service's
    /// ClusterIPs, node ports and load balancer address, and the endpoints the EndpointSlice
    /// controller gives each port (as the stand-in derives them), matched as whole rule tokens.
    /// `late` Services count once they exist.
    async fn wait_proxies(&self, stopped: &[usize], late: bool) -> Result<()> {
        let deadline = Instant::now() + API_TIMEOUT;
        let slices =
            crate::objects::endpoint_slices(self.scenario, self.plan, k8s_openapi::jiff::Timestamp::now())?;
        for (i, node) in self.plan.nodes.iter().enumerate() {
            if stopped.contains(&i) {
                continue;
            }
            let ns = crate::netns::named(&node.netns);
            let health = SocketAddr::from((node.ip, c::KUBE_PROXY_HEALTHZ_PORT));
            loop {
                crate::signals::check()?;
                let healthy = matches!(
                    crate::netns::http_get_status(&ns, health, "/healthz", Duration::from_millis(300)),
                    Ok(200)
                );
                if healthy && self.programmed(node, &slices, late)? {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "kube-proxy on {} did not program the Services within {}s; its log: {}",
                        node.name,
                        API_TIMEOUT.as_secs(),
                        self.state
                            .path(&format!("logs/kube-proxy-{}.log", node.name))
                            .display()
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Whether the node's rules hold every ClusterIP, node port and load balancer address (the
    /// status patch reaches kube-proxy as a later update than the Service) and the endpoints
    /// kube-proxy there uses (a port without them has its REJECT or DROP in the filter table, or
    /// the nftables maps for them, which the ruleset includes).
    fn programmed(
        &self,
        node: &crate::plan::NodePlan,
        slices: &[k8s_openapi::api::discovery::v1::EndpointSlice],
        late: bool,
    ) -> Result<bool> {
        let skip = if late { Vec::new() } else { self.late_services() };
        let mode = self.scenario.proxy_mode;
        let rules = node_ruleset(&node.netns, mode)?;
        for svc in self.plan.services.iter().filter(|s| !skip.contains(&s.key())) {
            if svc
                .vips()
                .iter()
                .any(|vip| !has_token(&rules, &vip_token(mode, *vip)))
            {
                return Ok(false);
            }
            if !external_programmed(svc, &rules, mode) {
                return Ok(false);
            }
            for family in svc.families.iter().filter(|_| svc.cluster_ip.is_some()) {
                for port in &svc.ports {
                    let endpoints = crate::kubeproxy::reachable_endpoints(
                        svc,
                        port.name.as_deref(),
                        port.protocol,
                        slices,
                        *family,
                        node,
                    );
                    if endpoints
                        .iter()
                        .any(|(ip, p)| !has_token(&rules, &dnat_token(mode, *ip, Some(*p))))
                    {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    /// Starts the process of every application and DNS pod (agents are the DaemonSet's) and
    /// tells the node's port-forward server where each pod's namespace is.
    fn start_app_pods(&self, bins: &Binaries, at: &Layout) -> Result<Vec<(usize, Child)>> {
        for pod in &self.plan.pods {
            kubelet::register_pod(at, &self.plan.nodes[pod.node].name, pod)?;
        }
        let ready_dir = self.state.path("ready");
        self.write_resolv_confs(&ready_dir)?;
        let coredns = (!self.plan.dns_down)
            .then(|| c::coredns(bins, self.plan, at))
            .transpose()?;
        let me = std::env::current_exe().context("failed to find the lab's own executable")?;
        // With DNS down the DNS pod runs the idle pod app, as in the stand-in lab.
        let mut children = self.spawn_pods(&me, Path::new("/dev/null"), &ready_dir, |p| {
            p.role == PodRole::App || (p.role == PodRole::Dns && self.plan.dns_down)
        })?;
        if let Some(child) = coredns {
            let k = self
                .plan
                .pods
                .iter()
                .position(|p| p.role == PodRole::Dns)
                .ok_or_else(|| anyhow!("the plan has no DNS pod"))?;
            children.push((k, child));
        }
        Ok(children)
    }
}

/// The node's Service rules as text: `iptables-save` and `ip6tables-save`, or the nftables ruleset.
fn node_ruleset(netns: &str, mode: crate::scenario::ProxyMode) -> Result<String> {
    let commands: &[&[&str]] = match mode {
        crate::scenario::ProxyMode::Iptables => &[&["iptables-save"], &["ip6tables-save"]],
        crate::scenario::ProxyMode::Nftables => &[&["nft", "list", "ruleset"]],
    };
    let mut text = String::new();
    for cmd in commands {
        let out = Command::new("ip")
            .args(["netns", "exec", netns])
            .args(*cmd)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .with_context(|| format!("failed to run {}", cmd.join(" ")))?;
        text.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    Ok(text)
}

/// Whether a NodePort or LoadBalancer Service's node ports and load balancer address are in
/// the node's rules (true for any other Service).
fn external_programmed(
    svc: &crate::plan::ServicePlan,
    rules: &str,
    mode: crate::scenario::ProxyMode,
) -> bool {
    if let Some(lb) = svc.load_balancer_ip
        && !has_token(rules, &vip_token(mode, lb.into()))
    {
        return false;
    }
    svc.ports.iter().all(|p| {
        p.node_port
            .is_none_or(|n| has_node_port(rules, mode, p.protocol, n))
    })
}

/// Whether kube-proxy's rules hold node port `port`: a rule of KUBE-NODEPORTS (or, for a port
/// it rejects or drops, of KUBE-EXTERNAL-SERVICES) matching it in iptables mode; an element
/// `PROTOCOL . PORT` of the node-port maps in nftables mode (not the tail of a `service-ips`
/// element `IP . PROTOCOL . PORT`).
fn has_node_port(
    rules: &str,
    mode: crate::scenario::ProxyMode,
    protocol: crate::scenario::Protocol,
    port: u16,
) -> bool {
    let proto = protocol.as_iptables();
    match mode {
        crate::scenario::ProxyMode::Iptables => rules
            .lines()
            .filter(|l| l.starts_with("-A KUBE-NODEPORTS ") || l.starts_with("-A KUBE-EXTERNAL-SERVICES "))
            .any(|l| l.contains(&format!("-p {proto} ")) && has_token(l, &format!("--dport {port}"))),
        crate::scenario::ProxyMode::Nftables => {
            let element = format!("{proto} . {port} ");
            rules
                .match_indices(&element)
                .any(|(at, _)| !rules[..at].ends_with(". "))
        }
    }
}

/// Whether `token` occurs in `rules` not followed by a digit (port 80 is not a prefix of 8080).
fn has_token(rules: &str, token: &str) -> bool {
    rules
        .match_indices(token)
        .any(|(at, _)| !rules[at + token.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

/// How a ClusterIP appears in kube-proxy's rules, as a whole token: `-d VIP/32 ` in an
/// `iptables-save`, `VIP . ` (an element key) in the nftables table.
fn vip_token(mode: crate::scenario::ProxyMode, vip: IpAddr) -> String {
    match mode {
        crate::scenario::ProxyMode::Iptables => {
            let len = if vip.is_ipv6() { 128 } else { 32 };
            format!("-d {vip}/{len} ")
        }
        crate::scenario::ProxyMode::Nftables => format!("{vip} . "),
    }
}

/// How a DNAT to an endpoint appears in kube-proxy's rules, as a whole token (with the port, or
/// any port): `--to-destination IP:PORT` / `[IP]:PORT`, or a `numgen` map element `: IP . PORT`.
fn dnat_token(mode: crate::scenario::ProxyMode, ip: IpAddr, port: Option<u16>) -> String {
    let port = port.map(|p| p.to_string()).unwrap_or_default();
    match mode {
        crate::scenario::ProxyMode::Iptables if ip.is_ipv6() => format!("--to-destination [{ip}]:{port}"),
        crate::scenario::ProxyMode::Iptables => format!("--to-destination {ip}:{port}"),
        crate::scenario::ProxyMode::Nftables if port.is_empty() => format!(": {ip} . "),
        crate::scenario::ProxyMode::Nftables => format!(": {ip} . {port}"),
    }
}

/// Kills a component started with `ip netns exec` (its own process group) and reaps it.
pub fn kill_tree(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    let _ = child.wait();
}

/// The scenario's objects sorted into what `up` creates when: Nodes, Pods (the lab's own agents
/// and their DaemonSet left out: `deploy/` makes them), and the rest — early, or late for the Services a fault
/// needs created after a kube-proxy stopped. Derived EndpointSlices are left out: the
/// controller makes them; a scenario's own slices stay.
struct Rest {
    early: Vec<Value>,
    late: Vec<Value>,
}

fn sort_objects(
    objects: Vec<Value>,
    late: &[String],
    own_slices: &[String],
    agents: &[String],
) -> (Vec<Value>, Vec<Value>, Rest) {
    let mut nodes = Vec::new();
    let mut pods = Vec::new();
    let mut rest = Rest {
        early: Vec::new(),
        late: Vec::new(),
    };
    let mut ordered: Vec<Value> = Vec::new();
    for obj in objects {
        let kind = obj["kind"].as_str().unwrap_or_default().to_string();
        let key = super::api::describe(&obj);
        match kind.as_str() {
            "Node" => nodes.push(obj),
            "Pod" if agents.contains(&key) => {}
            // The stand-in's agent DaemonSet: `deploy/` ships the real one. Created first, it
            // would be rolled by the apply, and its first pods (no volumes) deleted under `up`.
            "DaemonSet" if key == format!("{}/netdiag-agent", crate::plan::AGENT_NAMESPACE) => {}
            "Pod" => pods.push(with_hold(obj)),
            "EndpointSlice"
                if !own_slices
                    .iter()
                    .any(|n| obj.pointer("/metadata/name") == Some(&json!(n))) => {}
            "Service" if late.contains(&key) => rest.late.push(obj),
            _ => ordered.push(obj),
        }
    }
    // Namespaces first; the API server refuses objects in a namespace that does not exist.
    ordered.sort_by_key(|o| o["kind"] != json!("Namespace"));
    rest.early = ordered;
    (nodes, pods, rest)
}

/// A pod that backs a Service only until a kube-proxy has stopped (`service-rule-stale`).
struct StaleEndpoint {
    node: usize,
    pod: String,
    ips: Vec<IpAddr>,
    selector: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
}

/// `pod` with the selector labels of every stale Service it must first back.
fn with_stale_labels(pod: &Value, stale: &[StaleEndpoint]) -> Value {
    let key = super::api::describe(pod);
    let mut pod = pod.clone();
    for s in stale.iter().filter(|s| key == s.pod) {
        for (k, v) in &s.selector {
            pod["metadata"]["labels"][k] = json!(v);
        }
    }
    pod
}

/// A scenario pod with the agents' label in their namespace and no controller (an impostor):
/// kube-controller-manager's DaemonSet controller adopts such an orphan. Made before the
/// DaemonSet's own pod on its node, it would stand in for that pod (and the lab would wait for an
/// agent that never comes), so it is made after them.
fn is_adoptable_agent(pod: &Value) -> bool {
    let label = pod
        .pointer("/metadata/labels/app.kubernetes.io~1name")
        .and_then(Value::as_str);
    let controlled = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r["controller"] == json!(true)));
    pod.pointer("/metadata/namespace").and_then(Value::as_str) == Some(crate::plan::AGENT_NAMESPACE)
        && label == Some("netdiag-agent")
        && !controlled
}

/// Makes the impostors once the agents run. The DaemonSet controller then adopts each and
/// deletes it as a second pod on its node, as on any cluster: one already gone is not an error.
async fn create_orphan_agents(cluster: &mut Cluster, orphans: &[Value]) -> Result<()> {
    for pod in orphans {
        cluster.create(pod).await?;
        if let Err(e) = cluster.write_status(pod, &pod["status"]).await {
            let gone = e
                .downcast_ref::<kube::Error>()
                .is_some_and(|k| matches!(k, kube::Error::Api(s) if s.is_not_found()));
            if !gone {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// A terminating pod is a pod deleted while a finalizer holds it; the lab's finalizer.
pub const HOLD_FINALIZER: &str = "lab.netdiag.dev/hold";

fn with_hold(mut pod: Value) -> Value {
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        pod["metadata"]["finalizers"] = json!([HOLD_FINALIZER]);
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Protocol, ProxyMode};

    /// What kube-proxy's iptables mode wrote for NodePort and LoadBalancer Services (`iptables-save`
    /// lines; the ClusterIP rule on port 30080 added).
    const IPTABLES: &str = "\
-A KUBE-EXTERNAL-SERVICES -d 203.0.113.10/32 -p tcp -m comment --comment \"shop/web-lb:http has no local endpoints\" -m tcp --dport 80 -j DROP
-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment \"shop/web-lb:http has no local endpoints\" -m addrtype --dst-type LOCAL -m tcp --dport 30081 -j DROP
-A KUBE-NODEPORTS -p tcp -m comment --comment \"shop/web-lb:http health check node port\" -m tcp --dport 32190 -j ACCEPT
-A KUBE-NODEPORTS -p udp -m comment --comment \"shop/web-np:dns\" -m udp --dport 30053 -j KUBE-EXT-6AXRDPSRYTENHQTI
-A KUBE-SERVICES -d 10.96.1.1/32 -p tcp -m comment --comment \"shop/web-np:http cluster IP\" -m tcp --dport 30080 -j KUBE-SVC-L7VHADGQUOMCRAVS
";

    /// What its nftables mode wrote (`nft list ruleset` excerpts).
    const NFTABLES: &str = "\
\t\telements = { tcp . 30081 comment \"shop/web-lb:http\" : drop,
\t\t\t     tcp . 30082 comment \"shop/web-lb2:http\" : drop }
\t\telements = { 10.96.1.1 . tcp . 30080 : goto service-2TLE77DG-shop/web-np/tcp/http,
\t\t\t     203.0.113.10 . tcp . 80 : goto external-ETG7BTWI-shop/web-lb/tcp/http }
\t\telements = { udp . 30053 : goto external-ERXQ7VAU-shop/web-np/udp/dns,
\t\t\t     tcp . 30083 : goto external-ZJK2SWEP-shop/web-missing/tcp/http }
";

    #[test]
    fn node_ports_are_found_in_the_node_port_rules_not_in_a_service_port() {
        let iptables = |protocol, port| has_node_port(IPTABLES, ProxyMode::Iptables, protocol, port);
        assert!(iptables(Protocol::Udp, 30053));
        assert!(
            iptables(Protocol::Tcp, 30081),
            "a dropped node port is programmed"
        );
        assert!(!iptables(Protocol::Tcp, 30053), "another protocol");
        assert!(
            !iptables(Protocol::Tcp, 30080),
            "a ClusterIP's port 30080 is no node port"
        );
        assert!(!iptables(Protocol::Tcp, 3008), "a prefix of a port");
        let nft = |protocol, port| has_node_port(NFTABLES, ProxyMode::Nftables, protocol, port);
        assert!(nft(Protocol::Udp, 30053));
        assert!(nft(Protocol::Tcp, 30083));
        assert!(nft(Protocol::Tcp, 30082), "a dropped node port is programmed");
        assert!(
            !nft(Protocol::Tcp, 30080),
            "a ClusterIP's port 30080 is no node port"
        );
        assert!(!nft(Protocol::Tcp, 3008));
    }

    #[test]
    fn a_load_balancer_counts_as_programmed_once_its_address_and_node_ports_are() {
        let scenario = crate::scenario::Scenario::parse(
            "name: t\nnodes: [a]\nservices:\n\
             - {namespace: shop, name: web-lb, type: LoadBalancer, loadBalancerIP: 203.0.113.10, \
                ports: [{port: 80, nodePort: 30081}]}\n\
             - {namespace: shop, name: web-lb2, type: LoadBalancer, loadBalancerIP: 203.0.113.11, \
                ports: [{port: 8081, nodePort: 30082}]}\n",
        )
        .unwrap();
        let plan = crate::plan::Plan::new(&scenario, "nl000001", false).unwrap();
        let (lb, lb2) = (&plan.services[1], &plan.services[2]);
        assert!(external_programmed(lb, IPTABLES, ProxyMode::Iptables));
        assert!(external_programmed(lb, NFTABLES, ProxyMode::Nftables));
        assert!(
            !external_programmed(lb2, IPTABLES, ProxyMode::Iptables),
            "neither address nor port"
        );
        assert!(
            !external_programmed(lb2, NFTABLES, ProxyMode::Nftables),
            "the port, not the address"
        );
        assert!(
            external_programmed(&plan.services[0], "", ProxyMode::Nftables),
            "kube-dns has neither"
        );
    }
}
