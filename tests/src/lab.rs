//! `up` and `down`: building a scenario out of real namespaces, veths, routes, iptables rules and
//! processes, and removing all of it again.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::netns;
use crate::objects::{all_objects, endpoint_slices};
use crate::plan::{self, AGENT_PORT, Plan, PodPlan, PodRole, UNDERLAY_ROUTER_IP};
use crate::scenario::{Fault, IpFamily, Protocol, Scenario, TargetPort};
use crate::state::{
    AgentInfo, ApiInfo, DnsInfo, Journal, LabInfo, NodeInfo, PodInfo, ServiceInfo, ServicePortInfo, StateDir,
};

/// How long `up` waits for the pods' processes, DNS, agents and the API stand-in.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

pub struct UpOptions {
    pub scenario: PathBuf,
    pub state: PathBuf,
    pub agent_bin: Option<PathBuf>,
    pub no_agents: bool,
    pub control_plane: ControlPlane,
}

/// What serves the lab's Kubernetes API and programs its Services.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ControlPlane {
    /// etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy and CoreDNS,
    /// built from their Go modules (the first time takes minutes; then cached).
    Real,
    /// The lab's API stand-in, kube-proxy-style rules written by the lab, and dnsmasq.
    #[default]
    StandIn,
}

/// What the API stand-in serves: read by `netdiag-lab api-serve` from `api.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiData {
    pub objects: Vec<serde_json::Value>,
    /// `namespace/name` of each pod → its network namespace name.
    pub pod_netns: BTreeMap<String, String>,
    /// Tokens the TokenReview API accepts.
    #[serde(default)]
    pub tokens: Vec<crate::rbac::TokenSpec>,
    /// RBAC objects the SubjectAccessReview API evaluates.
    #[serde(default)]
    pub rbac: Vec<serde_json::Value>,
    /// A second listener (network namespace, address) where pods and agents reach the API.
    #[serde(default)]
    pub cluster_listen: Option<(String, String)>,
}

/// Where `netdiag-agent` is: the given path, or beside this executable.
pub fn find_sibling(given: Option<&Path>, name: &str, hint: &str) -> Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .context("failed to find the lab's own executable")?
            .parent()
            .map(|d| d.join(name))
            .ok_or_else(|| anyhow!("the lab's executable has no parent directory"))?,
    };
    if !path.is_file() {
        bail!("{name} not found at {}; {hint}", path.display());
    }
    Ok(path)
}

pub fn up(opts: &UpOptions) -> Result<LabInfo> {
    let scenario = Scenario::load(&opts.scenario)?;
    let agent_bin = if opts.no_agents {
        None
    } else {
        Some(find_sibling(
            opts.agent_bin.as_deref(),
            "netdiag-agent",
            "build it with `cargo build -p netdiag-agent`, pass --agent-bin PATH, or use --no-agents",
        )?)
    };
    let prefix = loop {
        let p = plan::random_prefix().context("failed to read /dev/urandom")?;
        if !netns::named(&format!("{p}-u")).exists() {
            break p;
        }
    };
    let others = other_labs_up();
    if agent_bin.is_some() && !others.is_empty() {
        eprintln!(
            "netdiag-lab: warning: other labs are up on this machine ({}); labs share pod addresses, so an \
             agent that finds pods by IP may pick another lab's pod",
            others.join(", ")
        );
    }
    // Everything that can reject the scenario runs before the state dir is touched.
    let plan = Plan::new(&scenario, &prefix, agent_bin.is_some())?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let objects = all_objects(&scenario, &plan, now)?;
    let slices = endpoint_slices(&scenario, &plan, now)?;
    if !nix::unistd::Uid::effective().is_root() {
        bail!("netdiag-lab up needs root: it creates network namespaces, veths and iptables rules");
    }
    let bins = match opts.control_plane {
        ControlPlane::Real => Some(crate::cluster::bins::binaries()?),
        ControlPlane::StandIn => None,
    };

    let state = StateDir::create(&opts.state)?;
    if let Some(journal) = state.read_journal()?
        && journal.netns.iter().any(|n| netns::named(n).exists())
    {
        bail!(
            "state dir {} holds a lab that is still up (prefix {}); run `netdiag-lab down --state {}` first",
            state.dir.display(),
            journal.prefix,
            state.dir.display()
        );
    }

    for name in ["journal.json", "lab.json", "kubeconfig"] {
        let _ = std::fs::remove_file(state.path(name));
    }
    state.write_json(
        "journal.json",
        &Journal {
            prefix: prefix.clone(),
            netns: plan.all_netns(),
        },
    )?;
    let builder = Builder {
        state: &state,
        scenario: &scenario,
        plan: &plan,
        agent_bin: agent_bin.as_deref(),
        real: bins.is_some(),
    };
    let built = match &bins {
        Some(bins) => builder.build_real(bins, objects),
        None => builder.build(objects, &slices),
    }
    .and_then(|info| crate::signals::check().map(|()| info));
    match built {
        Ok(info) => Ok(info),
        Err(e) => {
            if let Err(cleanup) = down(&state.dir) {
                eprintln!("netdiag-lab: cleaning up after the failed up also failed: {cleanup:#}");
            }
            Err(e)
        }
    }
}

pub(crate) struct Builder<'a> {
    pub(crate) state: &'a StateDir,
    pub(crate) scenario: &'a Scenario,
    pub(crate) plan: &'a Plan,
    pub(crate) agent_bin: Option<&'a Path>,
    /// On the real control plane (CoreDNS, not dnsmasq, is the DNS pod's process).
    pub(crate) real: bool,
}

/// Runs `program args` feeding `stdin`, failing with its stderr.
fn run(program: &str, args: &[&str], stdin: &str) -> Result<()> {
    let shown = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to start {shown}"))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes())?;
    let out = child
        .wait_with_output()
        .with_context(|| format!("failed to run {shown}"))?;
    if !out.status.success() {
        let first_line = stdin.lines().next().unwrap_or("");
        bail!(
            "{shown} failed ({}): {} (input starts with {first_line:?})",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `work` for every item on its own thread and returns the first error.
fn parallel<T: Sync>(items: &[T], work: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    std::thread::scope(|s| {
        let handles: Vec<_> = items.iter().map(|item| s.spawn(|| work(item))).collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| anyhow!("a setup thread panicked"))?)
    })
}

impl Builder<'_> {
    /// Writes `content` to a file in the state dir and runs `program args FILE`. The path in the
    /// command line lets `down` find and stop setup commands a killed `up` left running.
    pub(crate) fn run_file(&self, name: &str, content: &str, program: &str, args: &[&str]) -> Result<()> {
        let dir = self.state.path("setup");
        std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
        let file = dir.join(name);
        std::fs::write(&file, content).with_context(|| format!("failed to write {}", file.display()))?;
        let file = path_str(&file)?;
        let mut argv = args.to_vec();
        argv.push(&file);
        run(program, &argv, "")
    }

    fn build(
        &self,
        objects: Vec<serde_json::Value>,
        slices: &[k8s_openapi::api::discovery::v1::EndpointSlice],
    ) -> Result<LabInfo> {
        self.network()?;
        self.rules(slices)?;
        self.link_faults()?;
        self.node_local_dns()?;
        let ready_dir = self.state.path("ready");
        let me = std::env::current_exe().context("failed to find the lab's own executable")?;
        self.outside(&me)?;
        let (tokens, rbac) = crate::endpoint_lab::write_agent_credentials(self.state, self.scenario)?;
        let mut children = self.start_pods(&me, slices, &ready_dir)?;

        std::fs::write(
            self.state.path("api.json"),
            serde_json::to_vec(&ApiData {
                objects,
                pod_netns: self
                    .plan
                    .pods
                    .iter()
                    .map(|p| (p.key(), p.netns.clone()))
                    .collect(),
                tokens,
                rbac,
                cluster_listen: Some((
                    self.plan.underlay_netns.clone(),
                    crate::endpoint_lab::cluster_api_addr().to_string(),
                )),
            })?,
        )?;
        let (api_pid, url) = start_api(&me, self.state)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        self.wait_ready(&mut children, &ready_dir, deadline)?;

        let pids: BTreeMap<usize, u32> = children.iter().map(|(k, c)| (*k, c.id())).collect();
        let info = self.info(&pids, api_pid, &url);
        self.state.write_kubeconfig(&url)?;
        self.state.write_json("lab.json", &info)?;
        Ok(info)
    }

    /// The lab's sysctls: forwarding on the routers, no per-destination ICMP rate limit anywhere,
    /// and no duplicate address detection where IPv6 is used.
    fn kernel_settings(&self, all: &[String]) -> Result<()> {
        let plan = self.plan;
        let forwarding = [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.all.forwarding", "1"),
            ("net.ipv4.conf.default.proxy_arp", "1"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
            ("net.ipv6.conf.all.forwarding", "1"),
        ];
        let routers: Vec<&str> = std::iter::once(plan.underlay_netns.as_str())
            .chain(plan.nodes.iter().map(|n| n.netns.as_str()))
            .collect();
        parallel(&routers, |ns| Ok(netns::sysctl(&netns::named(ns), &forwarding)?))?;
        // ICMP errors are not rate-limited per destination: a REJECT's or a closed UDP port's
        // unreachable must come back on every run, or checks repeated within a second would read
        // silence once the kernel's burst for that peer is spent (real nodes do limit them; the
        // judge reads silence as such, but the lab must give the same answer every run).
        let icmp = [("net.ipv4.icmp_ratelimit", "0"), ("net.ipv6.icmp.ratelimit", "0")];
        parallel(all, |ns| Ok(netns::sysctl(&netns::named(ns), &icmp)?))?;
        if plan.has(IpFamily::V6) {
            // No duplicate address detection on the links made next: a tentative link-local
            // address delays neighbour discovery, and the first connections, by a second or two.
            let no_dad = [
                ("net.ipv6.conf.all.accept_dad", "0"),
                ("net.ipv6.conf.default.accept_dad", "0"),
            ];
            parallel(all, |ns| Ok(netns::sysctl(&netns::named(ns), &no_dad)?))?;
        }
        Ok(())
    }

    /// Namespaces, forwarding sysctls, links, addresses and routes.
    pub(crate) fn network(&self) -> Result<()> {
        let plan = self.plan;
        let all = plan.all_netns();
        let batch: String = all.iter().map(|n| format!("netns add {n}\n")).collect();
        self.run_file("netns.batch", &batch, "ip", &["-batch"])
            .context("failed to create the lab's network namespaces")?;

        self.kernel_settings(&all)?;

        let mut links = format!(
            "link add br0 netns {} type bridge mcast_snooping 0\n",
            plan.underlay_netns
        );
        for node in &plan.nodes {
            links += &format!(
                "link add eth0 netns {} type veth peer name {} netns {}\n",
                node.netns, node.underlay_port, plan.underlay_netns
            );
        }
        for pod in &plan.pods {
            links += &format!(
                "link add eth0 netns {} type veth peer name {} netns {}\n",
                pod.netns, pod.host_if, plan.nodes[pod.node].netns
            );
        }
        if let Some(outside) = &plan.outside_netns {
            links += &format!(
                "link add eth0 netns {outside} type veth peer name {} netns {}\n",
                crate::outside::ROUTER_PORT,
                plan.underlay_netns
            );
        }
        self.run_file("links.batch", &links, "ip", &["-batch"])
            .context("failed to create the lab's links")?;

        // Answer the pods' proxy ARP at once (as Calico does), not after up to 0.8 s.
        let nodes: Vec<usize> = (0..plan.nodes.len()).collect();
        parallel(&nodes, |&i| {
            let keys: Vec<String> = plan
                .pods
                .iter()
                .filter(|p| p.node == i)
                .map(|p| format!("net.ipv4.neigh.{}.proxy_delay", p.host_if))
                .collect();
            let settings: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "0")).collect();
            Ok(netns::sysctl(&netns::named(&plan.nodes[i].netns), &settings)?)
        })?;

        let mut configs: Vec<(String, String)> = Vec::new();
        let mut underlay = format!(
            "link set lo up\nlink set br0 up\naddr add {UNDERLAY_ROUTER_IP}/24 dev br0\nroute add blackhole {}\n",
            plan::SERVICE_CIDR
        );
        for node in &plan.nodes {
            underlay += &format!(
                "link set {p} master br0\nlink set {p} up\n",
                p = node.underlay_port
            );
        }
        // The router knows every node's pod CIDR (as a fabric peering with the nodes would), so
        // pods reach the API server's cluster address and its answers find their way back.
        for node in &plan.nodes {
            underlay += &format!("route add {} via {}\n", node.pod_cidr(), node.ip);
        }
        // LoadBalancer addresses are served by no host here: only kube-proxy on the nodes
        // captures them. The router drops what reaches it, always the same way (its "no route"
        // ICMP errors are rate-limited host-wide after a burst of five).
        let load_balancers: BTreeSet<Ipv4Addr> =
            plan.services.iter().filter_map(|s| s.load_balancer_ip).collect();
        for ip in load_balancers {
            underlay += &format!("route add blackhole {ip}/32\n");
        }
        if let (Some(outside), Some((router, beyond))) = (&plan.outside_netns, crate::outside::network(plan))
        {
            underlay += &router;
            configs.push((outside.clone(), beyond));
        }
        configs.push((plan.underlay_netns.clone(), underlay));
        for (i, node) in plan.nodes.iter().enumerate() {
            let mut c = format!(
                "link set lo up\naddr add {}/24 dev eth0\nlink set eth0 up\nroute add default via {UNDERLAY_ROUTER_IP}\n\
                 route add blackhole {}\n",
                node.ip,
                node.pod_cidr()
            );
            for (j, other) in plan.nodes.iter().enumerate() {
                if j != i {
                    c += &format!("route add {} via {}\n", other.pod_cidr(), other.ip);
                }
            }
            for pod in plan.pods.iter().filter(|p| p.node == i) {
                c += &format!(
                    "link set {h} up\nroute add {}/32 dev {h}\n",
                    pod.ip,
                    h = pod.host_if
                );
            }
            configs.push((node.netns.clone(), c));
        }
        for pod in &plan.pods {
            configs.push((
                pod.netns.clone(),
                format!(
                    "link set lo up\naddr add {}/32 dev eth0\nlink set eth0 up\n\
                     route add {gw} dev eth0 scope link\nroute add default via {gw} dev eth0\n",
                    pod.ip,
                    gw = plan::POD_GATEWAY_IP
                ),
            ));
        }
        if plan.has(IpFamily::V6) {
            for (ns, batch) in &mut configs {
                batch.push_str(&network6(plan, ns));
            }
        }
        parallel(&configs, |(ns, batch)| {
            self.run_file(&format!("{ns}.batch"), batch, "ip", &["-n", ns, "-batch"])
                .with_context(|| format!("failed to configure namespace {ns}"))
        })
    }

    /// kube-proxy's rules and the deny rules, in every node namespace, per address family.
    fn rules(&self, slices: &[k8s_openapi::api::discovery::v1::EndpointSlice]) -> Result<()> {
        self.family_rules(slices, "iptables", crate::kubeproxy::node_rules)?;
        if self.plan.has(IpFamily::V6) {
            self.family_rules(slices, "ip6tables", crate::kubeproxy::node_rules6)?;
        }
        Ok(())
    }

    /// One family's rules (`tool` is `iptables` or `ip6tables`), rendered by `render` for each
    /// node, kept in the state dir as `TOOL.txt` and loaded with `TOOL-restore`.
    fn family_rules(
        &self,
        slices: &[k8s_openapi::api::discovery::v1::EndpointSlice],
        tool: &str,
        render: fn(&Plan, usize, &[k8s_openapi::api::discovery::v1::EndpointSlice], &[Fault]) -> String,
    ) -> Result<()> {
        let plan = self.plan;
        let rules: Vec<(String, String)> = (0..plan.nodes.len())
            .map(|i| {
                (
                    plan.nodes[i].netns.clone(),
                    render(plan, i, slices, &self.scenario.faults),
                )
            })
            .collect();
        std::fs::write(
            self.state.path(&format!("{tool}.txt")),
            rules
                .iter()
                .map(|(ns, r)| format!("# {ns}\n{r}"))
                .collect::<String>(),
        )?;
        let restore = format!("{tool}-restore");
        parallel(&rules, |(ns, text)| {
            self.run_file(
                &format!("{ns}.{tool}"),
                text,
                "ip",
                &["netns", "exec", ns, &restore],
            )
            .with_context(|| format!("failed to program {tool} in node namespace {ns}"))
        })
    }

    /// NodeLocal DNSCache, as the lab runs it: on each node, the cache's address on the node's
    /// loopback (the upstream cache puts it on a dummy `nodelocaldns` link, a kind of link this
    /// kernel lacks) and dnsmasq bound to it, forwarding every query to the kube-dns
    /// ClusterIP (the upstream cache is CoreDNS; dnsmasq is the lab's stand-in). A node with a
    /// `node-local-dns-down` fault keeps the address and runs nothing on it.
    pub(crate) fn node_local_dns(&self) -> Result<()> {
        let plan = self.plan;
        if !plan.node_local_dns {
            return Ok(());
        }
        let cache = plan::NODE_LOCAL_DNS_IP;
        for node in &plan.nodes {
            let ns = node.netns.as_str();
            let address = format!("{cache}/32");
            run("ip", &["-n", ns, "addr", "add", &address, "dev", "lo"], "")?;
            let down = self
                .scenario
                .faults
                .iter()
                .any(|f| matches!(f, Fault::NodeLocalDnsDown { node: n } if *n == node.name));
            if down {
                continue;
            }
            let log = self.state.path(&format!("logs/node-local-dns-{}.log", node.name));
            std::fs::create_dir_all(self.state.path("logs"))?;
            let args: Vec<String> = [
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--cache-size=0",
                "--log-facility=-",
            ]
            .iter()
            .map(|a| a.to_string())
            .chain([
                format!("--listen-address={cache}"),
                format!("--server={}", plan::DNS_SERVICE_IP),
                "--user=root".into(),
            ])
            .collect();
            crate::cluster::components::spawn_in(ns, Path::new("dnsmasq"), &args, &log)
                .with_context(|| format!("failed to start the node-local DNS cache of {}", node.name))?;
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while netns::connect_tcp(
                &netns::named(ns),
                SocketAddr::from((cache, 53)),
                Duration::from_millis(200),
            )
            .is_err()
            {
                if std::time::Instant::now() > deadline {
                    bail!(
                        "the node-local DNS cache of {} did not start; its log: {}",
                        node.name,
                        log.display()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// The link-cut and link-mtu faults, on the nodes' ports in the underlay.
    pub(crate) fn link_faults(&self) -> Result<()> {
        let plan = self.plan;
        let mut faults = String::new();
        for fault in &self.scenario.faults {
            let port = |node: &str| {
                plan.nodes
                    .iter()
                    .find(|n| n.name == node)
                    .map(|n| n.underlay_port.clone())
                    .unwrap_or_default()
            };
            match fault {
                // A cut of one family is an ip6tables/iptables drop on the node (see kubeproxy).
                Fault::LinkCut { node, family: None } => faults += &format!("link set {} down\n", port(node)),
                Fault::LinkMtu { node, mtu } => faults += &format!("link set {} mtu {mtu}\n", port(node)),
                _ => {}
            }
        }
        if !faults.is_empty() {
            self.run_file(
                "faults.batch",
                &faults,
                "ip",
                &["-n", &plan.underlay_netns, "-batch"],
            )
            .context("failed to apply link faults")?;
        }
        if self
            .scenario
            .faults
            .iter()
            .any(|f| matches!(f, Fault::LinkMtu { .. }))
        {
            self.offloads_off()?;
        }
        Ok(())
    }

    /// Segmentation and receive offloads off on both ends of every node link, so that TCP is sent
    /// in segments the size of the path (with offloads a veth hands oversized aggregates through
    /// a smaller MTU): a link-mtu fault then black-holes large TCP segments as a real link does.
    fn offloads_off(&self) -> Result<()> {
        let plan = self.plan;
        let mut ends: Vec<(&str, &str)> = vec![];
        for node in &plan.nodes {
            ends.push((&node.netns, "eth0"));
            ends.push((&plan.underlay_netns, &node.underlay_port));
        }
        parallel(&ends, |(ns, dev)| {
            run(
                "ip",
                &[
                    "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off",
                ],
                "",
            )
            .with_context(|| format!("failed to turn offloads off on {dev} in {ns} (is ethtool installed?)"))
        })
    }

    /// Every pod's kubelet-style resolv.conf (under `/etc/netns`, which `ip netns exec` mounts
    /// over `/etc`), and empty logs and ready-file directories.
    pub(crate) fn write_resolv_confs(&self, ready_dir: &Path) -> Result<()> {
        let plan = self.plan;
        for pod in &plan.pods {
            let dir = Path::new("/etc/netns").join(&pod.netns);
            std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
            let conf = plan::resolv_conf_via(&pod.spec.namespace, plan.dns_nameserver());
            std::fs::write(dir.join("resolv.conf"), conf)
                .with_context(|| format!("failed to write {}/resolv.conf", dir.display()))?;
        }
        std::fs::create_dir_all(self.state.path("logs"))?;
        let _ = std::fs::remove_dir_all(ready_dir);
        std::fs::create_dir_all(ready_dir)?;
        Ok(())
    }

    /// Every pod's resolv.conf and process (pod app, dnsmasq or agent), started in the background.
    fn start_pods(
        &self,
        me: &Path,
        slices: &[k8s_openapi::api::discovery::v1::EndpointSlice],
        ready_dir: &Path,
    ) -> Result<Vec<(usize, Child)>> {
        let plan = self.plan;
        self.write_resolv_confs(ready_dir)?;
        let dnsmasq_conf = self.state.path("dnsmasq.conf");
        std::fs::write(
            &dnsmasq_conf,
            crate::dns::dnsmasq_conf(plan, slices, &self.scenario.objects),
        )?;
        self.spawn_pods(me, &dnsmasq_conf, ready_dir, |_| true)
    }

    /// Starts the process of each pod `which` selects (pod app, dnsmasq or agent).
    pub(crate) fn spawn_pods(
        &self,
        me: &Path,
        dnsmasq_conf: &Path,
        ready_dir: &Path,
        which: impl Fn(&PodPlan) -> bool,
    ) -> Result<Vec<(usize, Child)>> {
        let plan = self.plan;
        let logs = self.state.path("logs");
        let mut children: Vec<(usize, Child)> = Vec::new();
        for (k, pod) in plan.pods.iter().enumerate().filter(|(_, p)| which(p)) {
            let mut argv: Vec<String> = vec!["netns".into(), "exec".into(), pod.netns.clone()];
            match (pod.role, self.agent_bin) {
                (PodRole::Dns, _) if !plan.dns_down => {
                    argv.extend([
                        "dnsmasq".into(),
                        "-C".into(),
                        path_str(dnsmasq_conf)?,
                        "--log-facility=-".into(),
                    ]);
                }
                (PodRole::Agent, Some(agent)) => {
                    argv.extend([
                        path_str(agent)?,
                        "serve".into(),
                        "--listen".into(),
                        format!("127.0.0.1:{AGENT_PORT}"),
                        "--node".into(),
                        plan.nodes[pod.node].name.clone(),
                        "--node-netns".into(),
                        path_str(&netns::named(&plan.nodes[pod.node].netns))?,
                        "--pod".into(),
                        pod.key(),
                    ]);
                    argv.extend(crate::endpoint_lab::agent_args(self.state)?);
                }
                _ => {
                    argv.extend([path_str(me)?, "pod-app".into(), "--pod".into(), pod.key()]);
                    argv.extend(["--ready-file".into(), path_str(&ready_dir.join(k.to_string()))?]);
                    for l in &pod.spec.listen {
                        let proto = match l.protocol {
                            Protocol::Tcp => "tcp",
                            Protocol::Udp => "udp",
                        };
                        let at = SocketAddr::new(l.bind_address(&plan.families), l.port);
                        argv.extend(["--listen".into(), format!("{proto}:{at}")]);
                    }
                }
            }
            let log =
                std::fs::File::create(logs.join(format!("{}_{}.log", pod.spec.namespace, pod.spec.name)))?;
            let child = Command::new("ip")
                .args(&argv)
                .envs(matches!(pod.role, PodRole::Agent).then(|| {
                    (
                        "KUBECONFIG",
                        self.state.path(crate::endpoint_lab::AGENT_KUBECONFIG),
                    )
                }))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .process_group(0)
                .spawn()
                .with_context(|| format!("failed to start the process of pod {}", pod.key()))?;
            children.push((k, child));
        }
        Ok(children)
    }

    pub(crate) fn wait_ready(
        &self,
        children: &mut [(usize, Child)],
        ready_dir: &Path,
        deadline: Instant,
    ) -> Result<()> {
        let plan = self.plan;
        let mut pending: Vec<usize> = (0..children.len()).collect();
        while !pending.is_empty() {
            crate::signals::check()?;
            let mut still = Vec::new();
            for idx in pending {
                let (k, child) = &mut children[idx];
                let pod = &plan.pods[*k];
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "the process of pod {} exited early ({status}); its log: {}",
                        pod.key(),
                        self.log_of(pod).display()
                    );
                }
                if !self.is_ready(*k, pod, ready_dir) {
                    still.push(idx);
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                let names: Vec<String> = pending.iter().map(|&i| plan.pods[children[i].0].key()).collect();
                let what = if names.iter().any(|n| n.starts_with("netdiag/")) {
                    " (an agent must answer GET /readyz on 127.0.0.1:9808 in its pod)"
                } else {
                    ""
                };
                bail!(
                    "pods {} were not ready within {}s{what}; logs in {}",
                    names.join(", "),
                    READY_TIMEOUT.as_secs(),
                    self.state.path("logs").display()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn is_ready(&self, k: usize, pod: &PodPlan, ready_dir: &Path) -> bool {
        let ns = netns::named(&pod.netns);
        let probe = Duration::from_millis(200);
        match pod.role {
            // CoreDNS answers before its `kubernetes` plugin has synced; its `ready` plugin says when.
            PodRole::Dns if !self.plan.dns_down && self.real => {
                let ready = SocketAddr::from((
                    Ipv4Addr::LOCALHOST,
                    crate::cluster::components::COREDNS_READY_PORT,
                ));
                matches!(netns::http_get_status(&ns, ready, "/ready", probe), Ok(200))
            }
            PodRole::Dns if !self.plan.dns_down => {
                netns::connect_tcp(&ns, SocketAddr::from((pod.ip, 53)), probe).is_ok()
            }
            PodRole::Agent if self.agent_bin.is_some() => {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, AGENT_PORT));
                matches!(netns::http_get_status(&ns, addr, "/readyz", probe), Ok(200))
            }
            _ => ready_dir.join(k.to_string()).exists(),
        }
    }

    fn log_of(&self, pod: &PodPlan) -> PathBuf {
        self.state
            .path("logs")
            .join(format!("{}_{}.log", pod.spec.namespace, pod.spec.name))
    }

    pub(crate) fn info(&self, pids: &BTreeMap<usize, u32>, api_pid: u32, url: &str) -> LabInfo {
        let plan = self.plan;
        let role = |r: PodRole| match r {
            PodRole::App => "app",
            PodRole::Dns => "dns",
            PodRole::Agent => "agent",
        };
        let dns = plan.dns_pod();
        LabInfo {
            scenario: self.scenario.name.clone(),
            prefix: plan.prefix.clone(),
            underlay_netns: plan.underlay_netns.clone(),
            nodes: plan
                .nodes
                .iter()
                .map(|n| NodeInfo {
                    name: n.name.clone(),
                    netns: n.netns.clone(),
                    ip: n.ip.to_string(),
                    pod_cidr: n.pod_cidr(),
                })
                .collect(),
            pods: plan
                .pods
                .iter()
                .enumerate()
                .map(|(k, p)| PodInfo {
                    namespace: p.spec.namespace.clone(),
                    name: p.spec.name.clone(),
                    node: plan.nodes[p.node].name.clone(),
                    netns: p.netns.clone(),
                    ip: p.ip.to_string(),
                    ip6: p.ip6.map(|ip| ip.to_string()),
                    ready: p.spec.ready,
                    role: role(p.role).into(),
                    pid: pids[&k],
                })
                .collect(),
            services: plan
                .services
                .iter()
                .map(|s| ServiceInfo {
                    namespace: s.namespace.clone(),
                    name: s.name.clone(),
                    cluster_ip: s.cluster_ip.map(|ip| ip.to_string()),
                    cluster_ips: s.vips().iter().map(|ip| ip.to_string()).collect(),
                    ports: s
                        .ports
                        .iter()
                        .map(|p| ServicePortInfo {
                            name: p.name.clone(),
                            port: p.port,
                            protocol: p.protocol.as_k8s().into(),
                            target_port: match p.effective_target() {
                                TargetPort::Number(n) => n.to_string(),
                                TargetPort::Name(n) => n,
                            },
                            node_port: p.node_port,
                        })
                        .collect(),
                    service_type: s.is_external().then(|| s.service_type.as_k8s().into()),
                    load_balancer_ip: s.load_balancer_ip.map(|ip| ip.to_string()),
                    load_balancer_source_ranges: s
                        .load_balancer_source_ranges
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                })
                .collect(),
            dns: DnsInfo {
                cluster_ip: plan::DNS_SERVICE_IP.to_string(),
                pod: dns.key(),
                pod_ip: dns.ip.to_string(),
                netns: dns.netns.clone(),
                running: !plan.dns_down,
            },
            agents: plan
                .pods
                .iter()
                .enumerate()
                .filter(|(_, p)| p.role == PodRole::Agent)
                .map(|(k, p)| AgentInfo {
                    node: plan.nodes[p.node].name.clone(),
                    pod: p.key(),
                    netns: p.netns.clone(),
                    pid: pids[&k],
                })
                .collect(),
            api: ApiInfo {
                url: url.to_string(),
                pid: api_pid,
            },
        }
    }
}

/// The IPv6 half of a namespace's `ip -batch` configuration: the same layout as IPv4, with a
/// link-local gateway on every host-side veth in place of proxy ARP. Addresses skip duplicate
/// address detection so they are usable at once.
fn network6(plan: &Plan, ns: &str) -> String {
    let router = plan::UNDERLAY_ROUTER_IP6;
    let gw = plan::POD_GATEWAY_IP6;
    if ns == plan.underlay_netns {
        let mut c = format!(
            "addr add {router}/64 dev br0 nodad\nroute add blackhole {}\n",
            plan::SERVICE_CIDR6
        );
        for node in &plan.nodes {
            c += &format!("route add {} via {}\n", node.pod_cidr6(), node.ip6);
        }
        return c;
    }
    if let Some((i, node)) = plan.nodes.iter().enumerate().find(|(_, n)| n.netns == ns) {
        let mut c = format!(
            "addr add {}/64 dev eth0 nodad\nroute add ::/0 via {router}\nroute add blackhole {}\n",
            node.ip6,
            node.pod_cidr6()
        );
        for other in plan.nodes.iter().filter(|o| o.name != node.name) {
            c += &format!("route add {} via {}\n", other.pod_cidr6(), other.ip6);
        }
        for pod in plan.pods.iter().filter(|p| p.node == i) {
            if let Some(ip6) = pod.ip6 {
                c += &format!(
                    "addr add {gw}/64 dev {h} nodad\nroute add {ip6}/128 dev {h}\n",
                    h = pod.host_if
                );
            }
        }
        return c;
    }
    match plan.pods.iter().find(|p| p.netns == ns).and_then(|p| p.ip6) {
        Some(ip6) => format!("addr add {ip6}/128 dev eth0 nodad\nroute add ::/0 via {gw} dev eth0\n"),
        None => String::new(),
    }
}

fn path_str(p: &Path) -> Result<String> {
    p.to_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("path {} is not utf-8", p.display()))
}

/// Starts the API stand-in in the background and returns its pid and URL.
fn start_api(me: &Path, state: &StateDir) -> Result<(u32, String)> {
    let log = std::fs::File::create(state.path("logs/api.log"))?;
    let mut child = Command::new(me)
        .args(["api-serve", "--state", &path_str(&state.dir)?])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("failed to start the api stand-in")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .context("failed to read the api stand-in's address")?;
    let url = line.trim().to_string();
    if !url.starts_with("http://") {
        let status = child.try_wait()?;
        bail!(
            "the api stand-in did not start ({status:?}); its log: {}",
            state.path("logs/api.log").display()
        );
    }
    Ok((child.id(), url))
}

/// Prefixes of the labs that are up now (their underlay namespace `PREFIX-u` exists).
fn other_labs_up() -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let prefix = name.strip_suffix("-u")?;
            let hex = prefix.strip_prefix("nl")?;
            (hex.len() == 6 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| prefix.to_string())
        })
        .collect();
    found.sort();
    found
}

/// Programs `up` starts with the state dir on their command line.
const LAB_PROGRAMS: &[&str] = &[
    "netdiag-lab",
    "ip",
    "dnsmasq",
    "iptables-restore",
    "iptables-nft-restore",
    "ip6tables-restore",
    "ip6tables-nft-restore",
    "xtables-nft-multi",
];

/// Removes everything a lab made: its processes, namespaces (with their links and rules) and
/// `/etc/netns` entries. Works from the journal, so it also undoes a partial or crashed `up`.
pub fn down(dir: &Path) -> Result<()> {
    let Ok(state) = StateDir::open(dir) else {
        return Ok(());
    };
    if state.journal_path().exists() && !nix::unistd::Uid::effective().is_root() {
        bail!("netdiag-lab down needs root: it deletes network namespaces and stops root processes");
    }
    let dir_str = path_str(&state.dir)?;
    let journal = state.read_journal()?;
    let names = journal.as_ref().map(|j| j.netns.clone()).unwrap_or_default();
    // Stop, until a scan finds none: whatever names the state dir (the API stand-in, pod apps,
    // dnsmasq, setup commands a killed `up` left running), `ip netns exec NAME` of a lab namespace
    // that has not entered it yet, and everything inside the lab's namespaces (with what those
    // forked meanwhile). Only then nothing creates namespaces or processes behind our back.
    let mut pids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut found = crate::state::pids_mentioning(&dir_str, LAB_PROGRAMS);
        found.extend(crate::state::pids_entering(&names));
        found.extend(crate::state::pids_in_netns(&names));
        found.retain(|&p| is_alive(p));
        if found.is_empty() || Instant::now() > deadline {
            break;
        }
        kill_all(&found);
        pids.extend(found);
        std::thread::sleep(Duration::from_millis(2));
    }
    let Some(journal) = journal else {
        return Ok(());
    };
    let existing: Vec<&String> = journal
        .netns
        .iter()
        .filter(|n| netns::named(n).exists())
        .collect();
    if !existing.is_empty() {
        let batch: String = existing.iter().map(|n| format!("netns del {n}\n")).collect();
        run("ip", &["-force", "-batch", "-"], &batch)
            .context("failed to delete the lab's network namespaces")?;
    }
    for n in &journal.netns {
        let dir = Path::new("/etc/netns").join(n);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("failed to remove {}", dir.display()))?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while pids.iter().any(|&p| is_alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::remove_file(state.journal_path()).context("failed to remove the lab's journal")?;
    Ok(())
}

fn kill_all(pids: &[u32]) {
    for &pid in pids {
        if let Ok(pid) = i32::try_from(pid) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Whether `pid` is a live (not zombie) process.
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}
