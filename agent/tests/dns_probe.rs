//! DNS probes against a real dnsmasq in its own namespace, from a "pod" namespace whose process
//! sees its own resolv.conf (`ip netns exec` bind-mounts /etc/netns/NAME/resolv.conf).

mod common;

use common::{Agent, Netns, Proc, random_byte, require_root, veth};
use serde_json::{Value, json};

const SEARCH: &str = "a.svc.cluster.local svc.cluster.local cluster.local";

/// A DNS namespace running dnsmasq, and a pod namespace with a process and its resolv.conf.
struct World {
    dns: Netns,
    pod: Netns,
    server_ip: String,
    pod_process: Proc,
    _servers: Vec<Proc>,
}

impl World {
    fn new() -> World {
        let (dns, pod) = (Netns::new(), Netns::new());
        let net = random_byte();
        let server_ip = format!("10.{net}.53.53");
        veth(
            &pod,
            &format!("10.{net}.53.1/24"),
            &dns,
            &format!("{server_ip}/24"),
        );
        // An upstream that answers SERVFAIL, for names dnsmasq forwards.
        let servfail = dns.servfail_server("127.0.0.2");
        let mut args: Vec<String> = [
            "dnsmasq",
            "--keep-in-foreground",
            "--log-facility=-",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--pid-file=",
            "--user=root",
            "--cache-size=0",
            "--local=/cluster.local/",
            "--host-record=web.svc.cluster.local,10.96.0.7",
            "--host-record=api.a.svc.cluster.local,10.96.0.8",
            "--server=/broken.test/127.0.0.2",
        ]
        .map(String::from)
        .to_vec();
        args.push(format!("--listen-address={server_ip}"));
        // Enough addresses that the UDP answer (without EDNS) is truncated.
        args.extend((1..=60).map(|i| format!("--host-record=big.svc.cluster.local,10.96.1.{i}")));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut dnsmasq = dns.spawn(&argv);
        // dnsmasq logs to stderr once it serves; wait until port 53 answers.
        assert!(
            common::eventually(std::time::Duration::from_secs(10), || {
                dns.exec(&["ss", "-Hlun", "sport", "=", ":53"])
                    .contains(&server_ip)
            }),
            "dnsmasq did not start: {:?}",
            dnsmasq.child.try_wait()
        );
        let dir = format!("/etc/netns/{}", pod.name);
        std::fs::create_dir_all(&dir).unwrap();
        let resolv_conf = format!("nameserver {server_ip}\nsearch {SEARCH}\noptions ndots:5\n");
        std::fs::write(format!("{dir}/resolv.conf"), &resolv_conf).unwrap();
        let pod_process = pod.spawn(&["sleep", "600"]);
        // `ip netns exec` enters the namespace before it bind-mounts the file: wait for the mount.
        let seen = format!("/proc/{}/root/etc/resolv.conf", pod_process.pid());
        assert!(
            common::eventually(std::time::Duration::from_secs(10), || {
                std::fs::read_to_string(&seen).is_ok_and(|c| c == resolv_conf)
            }),
            "{seen} never showed the pod's resolv.conf"
        );
        World {
            dns,
            pod,
            server_ip,
            pod_process,
            _servers: vec![servfail, dnsmasq],
        }
    }

    fn dns(&self, agent: &Agent, name: &str, record_type: &str, timeout_ms: u64) -> Value {
        let results = agent.results(&json!({
            "source": {"kind": "netns", "path": self.pod.path()},
            "probes": [{"kind": "dns", "name": name, "recordType": record_type, "timeoutMs": timeout_ms}]
        }));
        results[0].clone()
    }
}

fn names_and_outcomes(result: &Value) -> Vec<(String, String)> {
    result["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["outcome"]["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pair(name: &str, outcome: &str) -> (String, String) {
    (name.to_string(), outcome.to_string())
}

#[test]
fn short_name_follows_the_pods_search_list_in_glibc_order_to_the_right_answer() {
    require_root();
    let world = World::new();
    let agent = Agent::start(&[]);
    let result = world.dns(&agent, "web", "A", 2000);
    assert_eq!(
        names_and_outcomes(&result),
        vec![
            pair("web.a.svc.cluster.local.", "nxdomain"),
            pair("web.svc.cluster.local.", "resolved")
        ],
        "{result}"
    );
    assert_eq!(result["answer"]["name"], "web.svc.cluster.local.");
    assert_eq!(result["answer"]["outcome"]["addresses"], json!(["10.96.0.7"]));
    assert_eq!(
        result["candidates"][0]["server"],
        format!("{}:53", world.server_ip)
    );

    // The resolv.conf read is the pod process's own, not the agent's.
    let conf = &result["resolvConf"];
    assert_eq!(
        conf["path"],
        format!("/proc/{}/root/etc/resolv.conf", world.pod_process.pid())
    );
    assert_eq!(conf["nameservers"], json!([format!("{}:53", world.server_ip)]));
    assert_eq!(conf["search"], json!(SEARCH.split(' ').collect::<Vec<_>>()));
    assert_eq!(conf["ndots"], 5);
    let agents_own = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert!(
        !agents_own.contains(&world.server_ip),
        "the agent's own resolv.conf must differ for this test"
    );

    // A name found under the first search domain stops there.
    let result = world.dns(&agent, "api", "A", 2000);
    assert_eq!(
        names_and_outcomes(&result),
        vec![pair("api.a.svc.cluster.local.", "resolved")]
    );
}

#[test]
fn nxdomain_and_nodata_are_classified() {
    require_root();
    let world = World::new();
    let agent = Agent::start(&[]);
    let result = world.dns(&agent, "nosuch.svc.cluster.local.", "A", 2000);
    assert_eq!(
        names_and_outcomes(&result),
        vec![pair("nosuch.svc.cluster.local.", "nxdomain")]
    );
    assert_eq!(result["answer"]["outcome"]["kind"], "nxdomain");

    // web.svc.cluster.local has only an A record: AAAA is NODATA, which libc reports over NXDOMAIN.
    let result = world.dns(&agent, "web", "AAAA", 2000);
    assert_eq!(
        result["candidates"][1],
        json!({
            "name": "web.svc.cluster.local.", "server": format!("{}:53", world.server_ip),
            "outcome": {"kind": "nodata"}, "rttUs": result["candidates"][1]["rttUs"], "truncated": false
        })
    );
    assert_eq!(result["answer"]["outcome"]["kind"], "nodata", "{result}");
}

#[test]
fn servfail_from_the_server_is_classified() {
    require_root();
    let world = World::new();
    let agent = Agent::start(&[]);
    let result = world.dns(&agent, "x.broken.test", "A", 3000);
    let candidates = names_and_outcomes(&result);
    assert_eq!(
        candidates.last().unwrap(),
        &pair("x.broken.test.", "servfail"),
        "{result}"
    );
    assert_eq!(result["answer"]["outcome"]["kind"], "servfail", "{result}");
}

#[test]
fn a_silent_server_is_a_timeout() {
    require_root();
    let world = World::new();
    world.dns.iptables("-A INPUT -p udp --dport 53 -j DROP");
    let agent = Agent::start(&[]);
    let result = world.dns(&agent, "web", "A", 300);
    // The timeout ends the search list; glibc still asks the bare name.
    assert_eq!(
        names_and_outcomes(&result),
        vec![
            pair("web.a.svc.cluster.local.", "timeout"),
            pair("web.", "timeout")
        ],
        "{result}"
    );
    assert_eq!(result["answer"]["outcome"]["kind"], "timeout");
}

#[test]
fn a_nameserver_where_nothing_listens_ends_the_search_at_once_as_glibc_does() {
    require_root();
    let world = World::new();
    let agent = Agent::start(&[]);
    // Nothing listens on this port of the DNS namespace: its kernel answers ICMP port-unreachable.
    let nameserver = format!("{}:5300", world.server_ip);
    let results = agent.results(&json!({
        "source": {"kind": "netns", "path": world.pod.path()},
        "probes": [{"kind": "dns", "name": "web", "nameserver": nameserver, "timeoutMs": 5000}]
    }));
    let result = &results[0];
    assert_eq!(
        names_and_outcomes(result),
        vec![pair("web.a.svc.cluster.local.", "error")],
        "{result}"
    );
    let detail = result["answer"]["outcome"]["detail"].as_str().unwrap();
    assert!(detail.contains("nothing listens"), "{detail}");
}

#[test]
fn a_truncated_udp_answer_is_retried_over_tcp() {
    require_root();
    let world = World::new();
    let agent = Agent::start(&[]);
    let result = world.dns(&agent, "big.svc.cluster.local.", "A", 3000);
    let candidate = &result["candidates"][0];
    assert_eq!(candidate["truncated"], true, "{result}");
    assert_eq!(candidate["outcome"]["kind"], "resolved", "{result}");
    assert_eq!(candidate["outcome"]["addresses"].as_array().unwrap().len(), 60);
}

#[test]
fn a_namespace_without_processes_has_no_resolv_conf_and_says_so() {
    require_root();
    let empty = Netns::new();
    let agent = Agent::start(&[]);
    let results = agent.results(&json!({
        "source": {"kind": "netns", "path": empty.path()},
        "probes": [{"kind": "dns", "name": "web"}]
    }));
    let answer = &results[0]["answer"]["outcome"];
    assert_eq!(answer["kind"], "error", "{answer}");
    let detail = answer["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("no process lives in network namespace {}", empty.path())),
        "{detail}"
    );
    assert_eq!(results[0]["candidates"], json!([]));
}
