//! The lab's life cycle and its API stand-in: real kubectl and kube-rs read it, portforward relays
//! into a pod, `down` leaves nothing behind (also after a killed `up`), two labs coexist.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    BIN, Lab, Tcp, TempDir, kubectl, lab_cmd, live_processes_mentioning, netns_names, require_root, stdout,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

const SMALL: &str = "name: small
nodes: [node-a, node-b]
pods:
  - {namespace: shop, name: client, node: node-a, labels: {app: client}}
  - {namespace: shop, name: pay-0, node: node-b, labels: {app: pay}, ports: [{name: http, containerPort: 8080}], listen: [{port: 8080}]}
  - {namespace: shop, name: local-0, node: node-b, labels: {app: local}, listen: [{port: 8080, address: 127.0.0.1}]}
services:
  - {namespace: shop, name: pay, selector: {app: pay}, ports: [{name: http, port: 80, targetPort: http}]}
objects:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: pay-ingress, namespace: shop}
    spec: {podSelector: {matchLabels: {app: pay}}, policyTypes: [Ingress]}
";

#[test]
fn real_kubectl_reads_pods_services_slices_and_policies() {
    require_root();
    let kubectl = kubectl();
    let lab = Lab::up_stand_in("kubectl", SMALL);
    let run = |args: &[&str]| {
        Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(lab.kubeconfig())
            .args(args)
            .output()
            .expect("run kubectl")
    };
    let out = run(&["get", "pods,svc,endpointslices,networkpolicies", "-A"]);
    assert!(
        out.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    for needle in [
        "pod/pay-0",
        "pod/coredns-0",
        "service/pay",
        "service/kube-dns",
        "endpointslice",
        "pay-ingress",
    ] {
        assert!(text.contains(needle), "kubectl output lacks {needle}:\n{text}");
    }
    let json = run(&["get", "pods", "-n", "shop", "-l", "app=pay", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("kubectl -o json");
    let names: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pay-0"]);
    let on_b = run(&[
        "get",
        "pods",
        "-A",
        "--field-selector",
        "spec.nodeName=node-b",
        "-o",
        "name",
    ]);
    let mut names: Vec<String> = stdout(&on_b).lines().map(str::to_string).collect();
    names.sort();
    assert_eq!(names, ["pod/local-0", "pod/pay-0"]);
    let missing = run(&["get", "pod", "-n", "shop", "nope"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("NotFound"),
        "{missing:?}"
    );
}

#[test]
fn kube_rs_lists_with_selectors_and_portforwards_into_a_pods_loopback() {
    require_root();
    let lab = Lab::up_stand_in("portforward", SMALL);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(lab.kubeconfig()).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("config");
        let client = kube::Client::try_from(config).expect("client");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");

        let by_ip = Api::<Pod>::all(client.clone())
            .list(&ListParams::default().fields(&format!("status.podIP={}", lab.pod_ip("shop/pay-0"))))
            .await
            .expect("list by podIP");
        assert_eq!(by_ip.items.len(), 1);
        assert_eq!(by_ip.items[0].metadata.name.as_deref(), Some("pay-0"));
        let err = pods.get("nope").await.unwrap_err();
        assert!(matches!(err, kube::Error::Api(ref s) if s.code == 404), "{err:?}");

        let mut pf = pods.portforward("local-0", &[8080]).await.expect("portforward");
        let stream = pf.take_stream(8080).expect("stream for 8080");
        let mut reader = tokio::io::BufReader::new(stream);
        let mut greeting = String::new();
        reader.read_line(&mut greeting).await.unwrap();
        assert_eq!(
            greeting, "shop/local-0\n",
            "the relay reaches 127.0.0.1:8080 inside the pod"
        );
        reader
            .get_mut()
            .write_all(b"hello through the api")
            .await
            .unwrap();
        let mut echo = vec![0u8; 21];
        reader.read_exact(&mut echo).await.unwrap();
        assert_eq!(echo, b"hello through the api");
        drop(reader);
        pf.join().await.expect("portforward ends cleanly");

        let mut refused = pods
            .portforward("pay-0", &[9999])
            .await
            .expect("portforward upgrade");
        let error = refused
            .take_error(9999)
            .expect("error channel")
            .await
            .expect("an error message");
        assert!(error.contains("failed to connect to localhost:9999"), "{error}");
    });
    // The pod's loopback listener stays unreachable on its pod IP.
    assert_eq!(
        lab.tcp("shop/client", &format!("{}:8080", lab.pod_ip("shop/local-0"))),
        Tcp::Refused
    );
}

#[test]
fn down_leaves_no_namespaces_processes_or_etc_netns_entries() {
    require_root();
    let lab = Lab::up_stand_in("down", SMALL);
    let state = lab.state();
    let mut names: Vec<String> = lab.info.pods.iter().map(|p| p.netns.clone()).collect();
    names.extend(lab.info.nodes.iter().map(|n| n.netns.clone()));
    names.push(lab.info.underlay_netns.clone());
    let mut pids: Vec<u32> = lab.info.pods.iter().map(|p| p.pid).collect();
    pids.push(lab.info.api.pid);
    assert!(pids.iter().all(|p| netdiag_lab::lab::is_alive(*p)));
    assert!(!live_processes_mentioning(&state).is_empty());

    let out = lab_cmd(&["down", "--state", state.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let left = netns_names();
    assert!(
        names.iter().all(|n| !left.contains(n)),
        "namespaces left: {:?}",
        names.iter().filter(|n| left.contains(n)).collect::<Vec<_>>()
    );
    assert!(
        names
            .iter()
            .all(|n| !std::path::Path::new("/etc/netns").join(n).exists())
    );
    assert!(
        pids.iter().all(|p| !netdiag_lab::lab::is_alive(*p)),
        "processes left"
    );
    assert_eq!(live_processes_mentioning(&state), Vec::<u32>::new());
    let again = lab_cmd(&["down", "--state", state.to_str().unwrap()]);
    assert!(again.status.success(), "down twice is fine: {again:?}");
}

#[test]
fn down_cleans_up_after_a_killed_up() {
    require_root();
    let pods: String = (0..30)
        .map(|i| {
            format!(
                "  - {{namespace: big, name: p{i}, node: n{}, listen: [{{port: 80}}]}}\n",
                i % 3
            )
        })
        .collect();
    let _lock = common::shared_lab_lock();
    let dir = TempDir::new("killed");
    let file = dir.0.join("scenario.yaml");
    std::fs::write(&file, format!("name: big\nnodes: [n0, n1, n2]\npods:\n{pods}")).unwrap();
    let state = dir.0.join("state");
    let _down = common::DownOnDrop(state.clone());
    let mut up = common::up_stand_in_without_agents(&file, &state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let journal = state.join("journal.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !journal.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(40));
    up.kill().unwrap();
    up.wait().unwrap();
    let planned: netdiag_lab::state::Journal =
        serde_json::from_slice(&std::fs::read(&journal).expect("journal written before anything is made"))
            .unwrap();

    let out = lab_cmd(&["down", "--state", state.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let left = netns_names();
    assert!(
        planned.netns.iter().all(|n| !left.contains(n)),
        "namespaces left after killed up"
    );
    assert!(
        planned
            .netns
            .iter()
            .all(|n| !std::path::Path::new("/etc/netns").join(n).exists())
    );
    assert_eq!(
        live_processes_mentioning(&state),
        Vec::<u32>::new(),
        "processes left after killed up"
    );
}

#[test]
fn up_stopped_by_sigterm_takes_its_lab_down_and_fails() {
    require_root();
    let _lock = common::shared_lab_lock();
    let dir = TempDir::new("sigterm");
    let file = dir.0.join("scenario.yaml");
    std::fs::write(&file, SMALL).unwrap();
    // An agent that never answers /readyz keeps `up` waiting, so the signal surely lands mid-up.
    let agent = dir.0.join("silent-agent");
    std::fs::write(&agent, "#!/bin/sh\nsleep 600\n").unwrap();
    std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let state = dir.0.join("state");
    let _down = common::DownOnDrop(state.clone());
    let up = Command::new(BIN)
        .args(["up", file.to_str().unwrap(), "--state", state.to_str().unwrap()])
        .args(["--control-plane", "stand-in"])
        .arg("--agent-bin")
        .arg(&agent)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `up` starts the API stand-in after every pod's process, then waits for them to be ready.
    let api_log = state.join("logs/api.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !api_log.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(api_log.exists(), "up started every process");
    let journal: netdiag_lab::state::Journal =
        serde_json::from_slice(&std::fs::read(state.join("journal.json")).unwrap()).unwrap();
    let inodes = common::netns_inodes(&journal.netns);
    assert_eq!(inodes.len(), journal.netns.len(), "every namespace exists");
    let pid = nix::unistd::Pid::from_raw(up.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = up.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("interrupted by a stop signal"), "{err}");
    assert!(!state.join("journal.json").exists(), "down ran: {err}");
    let left = netns_names();
    assert!(
        journal.netns.iter().all(|n| !left.contains(n)),
        "namespaces left after SIGTERM"
    );
    assert_eq!(live_processes_mentioning(&state), Vec::<u32>::new());
    assert_eq!(
        common::live_processes_in(&inodes),
        Vec::<u32>::new(),
        "processes (the agents' own children too) left in the lab's namespaces"
    );
}

#[test]
fn two_labs_up_at_once_do_not_collide() {
    require_root();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Lab::up_stand_in("twin-a", SMALL));
        let b = s.spawn(|| Lab::up_stand_in("twin-b", SMALL));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.info.prefix, b.info.prefix);
    assert_ne!(a.info.api.url, b.info.api.url);
    let vip = format!("{}:80", a.cluster_ip("shop/pay"));
    assert_eq!(
        vip,
        format!("{}:80", b.cluster_ip("shop/pay")),
        "same addresses, separate networks"
    );
    let b_pay = b.info.pods.iter().find(|p| p.name == "pay-0").unwrap().pid;
    drop(b);
    assert!(!netdiag_lab::lab::is_alive(b_pay));
    assert_eq!(
        a.tcp("shop/client", &vip),
        Tcp::Connected("shop/pay-0".into()),
        "lab a survives lab b's down"
    );
}

#[test]
fn up_without_the_agent_binary_fails_clearly_and_leaves_nothing() {
    require_root();
    let dir = TempDir::new("noagent");
    let file = dir.0.join("scenario.yaml");
    std::fs::write(&file, SMALL).unwrap();
    let state = dir.0.join("state");
    let out = Command::new(BIN)
        .args(["up", file.to_str().unwrap(), "--state", state.to_str().unwrap()])
        .args(["--control-plane", "stand-in"])
        .args(["--agent-bin", "/nonexistent/netdiag-agent"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("netdiag-agent not found at /nonexistent/netdiag-agent"),
        "{err}"
    );
    assert!(!state.exists(), "nothing was made, not even the state dir");
}

#[test]
fn bad_scenarios_exit_2_naming_the_problem_and_leave_nothing_behind() {
    // Runs without root too: every one of these is rejected before anything is made.
    let cases = [
        ("nodes: [a]\npodz: []\n", "unknown field `podz`"),
        (
            "nodes: [a]\npods:\n- {namespace: x, name: p, node: b}\n",
            "pod x/p is on unknown node b",
        ),
        (
            "nodes: [a]\npods:\n- {namespace: x, name: p, node: a}\n- {namespace: x, name: p, node: a}\n",
            "lists pod x/p twice",
        ),
        (
            "nodes: [a, b]\npods:\n- {namespace: x, name: p, node: b, ip: 10.244.1.7}\n",
            "pod x/p asks for ip 10.244.1.7, outside its node b's pod cidr 10.244.2.0/24",
        ),
    ];
    for (body, want) in cases {
        let dir = TempDir::new("bad");
        let file = dir.0.join("scenario.yaml");
        std::fs::write(&file, format!("name: bad\n{body}")).unwrap();
        let state = dir.0.join("s");
        let out = lab_cmd(&[
            "up",
            file.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
            "--no-agents",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{body}: {err}");
        assert!(err.contains(want), "{body}: expected {want:?} in {err}");
        assert!(
            !state.exists(),
            "{body}: the state dir was created, so up got past validation"
        );
    }
}

#[test]
fn pod_app_greets_tcp_clients_with_its_pod_name_then_echoes() {
    // Runs without root: the pod app is an ordinary process.
    let dir = TempDir::new("podapp");
    let ready = dir.0.join("ready");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .args([
            "pod-app",
            "--pod",
            "shop/x",
            "--listen",
            &format!("tcp:127.0.0.1:{port}"),
        ])
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ready.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let result = std::panic::catch_unwind(|| {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("pod-app listens once ready");
        conn.write_all(b"abc").unwrap();
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).unwrap();
        assert_eq!(got, "shop/x\nabc");
    });
    child.kill().unwrap();
    child.wait().unwrap();
    result.unwrap();
}

#[test]
fn a_kept_lab_holds_none_of_its_callers_descriptors() {
    require_root();
    let _shared = common::shared_lab_lock();
    let dir = TempDir::new("fds");
    let scenario = dir.0.join("scenario.yaml");
    std::fs::write(&scenario, SMALL).unwrap();
    let state = dir.0.join("state");
    let _down = common::DownOnDrop(state.clone());
    // A caller that holds an exclusive lock on fd 9 (not close-on-exec, as a shell opens it)
    // while it brings the lab up, then exits.
    let held = dir.0.join("caller.lock");
    let up = format!(
        "exec 9>{held}; flock -x 9; exec {BIN} up {scenario} --state {state} --no-agents",
        held = held.display(),
        scenario = scenario.display(),
        state = state.display()
    );
    let out = Command::new("bash").args(["-c", &up]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    // The lab is still up; the caller's lock must be free.
    assert!(!live_processes_mentioning(&state).is_empty());
    let free = Command::new("flock")
        .args(["-n", "-x", held.to_str().unwrap(), "true"])
        .status()
        .unwrap();
    assert!(
        free.success(),
        "a process of the kept lab still holds the caller's lock"
    );
}
