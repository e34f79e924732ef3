//! `kubectl-netdiag mcp` driven as an MCP client drives it: newline-delimited JSON-RPC over the
//! child's stdin and stdout, against a fake API server. Each tool must answer with the document
//! the matching command prints under `-o json` for the same cluster, a bad argument must be a
//! tool error with the command's sentence, and closing stdin must end the server cleanly.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-netdiag");
/// How long a response may take; the fake cluster answers at once.
const PATIENCE: Duration = Duration::from_secs(60);

/// The small cluster with its one node listed.
fn cluster_with_a_node() -> PathBuf {
    common::fake_api_server("mcp", |path| {
        let request = common::Request::parse(path);
        if request.resource == "nodes" && request.name.is_none() {
            let list = json!({
                "kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                "items": [{"metadata": {"name": "node-a"}}],
            });
            return (200, list.to_string());
        }
        common::small_cluster_answer(path)
    })
}

/// A running `kubectl-netdiag mcp` and the lines it writes on stdout.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    next_id: u64,
}

impl Session {
    fn start(kubeconfig: &Path) -> Session {
        let mut child = Command::new(BIN)
            .args(["--kubeconfig", path_str(kubeconfig), "mcp"])
            .env_remove("KUBECONFIG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start kubectl-netdiag mcp");
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = channel();
        // A reader thread, so that a server that stops answering fails the test instead of hanging it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Session {
            stdin: child.stdin.take(),
            child,
            lines,
            next_id: 1,
        }
    }

    fn send(&mut self, message: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{message}").expect("write to the server");
        stdin.flush().expect("flush to the server");
    }

    /// Sends a request and returns its response, skipping the server's notifications.
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let line = self
                .lines
                .recv_timeout(PATIENCE)
                .unwrap_or_else(|e| panic!("no response to {method}: {e}"));
            let message: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout is not JSON-RPC ({e}): {line}"));
            assert_eq!(message["jsonrpc"], "2.0", "{message}");
            if message["id"] == id {
                return message;
            }
            assert!(
                message.get("method").is_some(),
                "a response to no request: {message}"
            );
        }
    }

    fn call(&mut self, tool: &str, arguments: Value) -> Value {
        let response = self.request("tools/call", json!({"name": tool, "arguments": arguments}));
        response
            .get("result")
            .cloned()
            .unwrap_or_else(|| panic!("tools/call {tool} is a JSON-RPC error: {response}"))
    }

    /// Closes stdin, as a client does when it is done, and waits for the exit.
    fn close(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().expect("wait for the server") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("the server did not exit after stdin closed");
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// What `kubectl-netdiag ARGS -o json` prints on stdout, as JSON.
fn command_json(kubeconfig: &Path, args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .args(["--kubeconfig", path_str(kubeconfig)])
        .args(args)
        .args(["-o", "json"])
        .env_remove("KUBECONFIG")
        .output()
        .expect("run kubectl-netdiag");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?} -o json is not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The tool result's document: its text content, which is the structured content too when the
/// document is an object (protocol 2025-06-18 allows no other structured content).
fn document(result: &Value) -> Value {
    let text = result["content"][0]["text"].as_str().expect("a text content");
    let parsed: Value = serde_json::from_str(text).expect("the text is the JSON document");
    if parsed.is_object() {
        assert_eq!(
            parsed, result["structuredContent"],
            "text and structured content differ"
        );
    } else {
        assert!(result.get("structuredContent").is_none(), "{result}");
    }
    parsed
}

/// A check's report without its duration, the one field two runs never share.
fn without_duration(mut report: Value) -> Value {
    if let Some(object) = report.as_object_mut() {
        object.remove("durationMs");
    }
    report
}

fn initialize(session: &mut Session) -> Value {
    let response = session.request(
        "initialize",
        json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "netdiag-test", "version": "0"},
        }),
    );
    session.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    response
}

#[test]
fn handshake_lists_three_read_only_tools_with_their_input_schemas() {
    let kubeconfig = cluster_with_a_node();
    let mut session = Session::start(&kubeconfig);
    let init = initialize(&mut session);
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    assert_eq!(init["result"]["serverInfo"]["name"], "kubectl-netdiag", "{init}");
    assert!(init["result"]["capabilities"]["tools"].is_object(), "{init}");

    let list = session.request("tools/list", json!({}));
    let tools = list["result"]["tools"].as_array().expect("a tool list");
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["check", "policy_explain", "status"], "{list}");
    let required = |tool: &Value| -> Vec<String> {
        let list = tool["inputSchema"]["required"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        list.iter()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect()
    };
    for tool in tools {
        assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
        assert_eq!(tool["annotations"]["readOnlyHint"], true, "{tool}");
        assert!(!tool["description"].as_str().unwrap_or("").is_empty(), "{tool}");
    }
    assert_eq!(required(&tools[0]), ["from", "to"]);
    for property in ["from", "to", "namespace", "timeout"] {
        assert!(
            tools[0]["inputSchema"]["properties"][property].is_object(),
            "check {property}"
        );
    }
    assert_eq!(required(&tools[1]), ["from", "to", "port"]);
    assert!(tools[1]["inputSchema"]["properties"]["protocol"].is_object());
    assert!(required(&tools[2]).is_empty());

    let pong = session.request("ping", json!({}));
    assert_eq!(pong["result"], json!({}), "{pong}");
    assert!(session.close().success());
    let _ = std::fs::remove_file(&kubeconfig);
}

#[test]
fn a_protocol_version_the_server_does_not_know_is_answered_with_one_it_does() {
    let kubeconfig = cluster_with_a_node();
    let mut session = Session::start(&kubeconfig);
    let init = session.request(
        "initialize",
        json!({
            "protocolVersion": "2099-01-01",
            "capabilities": {},
            "clientInfo": {"name": "netdiag-test", "version": "0"},
        }),
    );
    let known = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
    let version = init["result"]["protocolVersion"].as_str().unwrap_or("");
    assert!(known.contains(&version), "{init}");
    assert!(session.close().success());
    let _ = std::fs::remove_file(&kubeconfig);
}

#[test]
fn each_tool_returns_what_its_command_prints_as_json() {
    let kubeconfig = cluster_with_a_node();
    let mut session = Session::start(&kubeconfig);
    initialize(&mut session);

    let result = session.call("check", json!({"from": "shop/checkout", "to": "10.0.0.1:80"}));
    assert_eq!(result["isError"], false, "{result}");
    let report = document(&result);
    assert_eq!(report["verdict"], "undetermined", "{report}");
    assert_eq!(report["steps"][0]["code"], "source-agent-unavailable", "{report}");
    let printed = command_json(
        &kubeconfig,
        &["check", "--from", "shop/checkout", "--to", "10.0.0.1:80"],
    );
    assert_eq!(without_duration(report), without_duration(printed));

    let result = session.call("status", json!({}));
    assert_eq!(result["isError"], false, "{result}");
    let rows = document(&result);
    assert_eq!(rows[0]["node"], "node-a", "{rows}");
    assert_eq!(rows, command_json(&kubeconfig, &["status"]));

    let flow = json!({"from": "shop/checkout", "to": "shop/checkout", "port": 8080});
    let result = session.call("policy_explain", flow);
    assert_eq!(result["isError"], false, "{result}");
    let printed = command_json(
        &kubeconfig,
        &[
            "policy",
            "explain",
            "--from",
            "shop/checkout",
            "--to",
            "shop/checkout",
            "--port",
            "8080",
        ],
    );
    assert_eq!(document(&result), printed);

    // -n given to the tool is -n given to the command.
    let result = session.call(
        "policy_explain",
        json!({"from": "checkout", "to": "checkout", "port": "8080", "protocol": "tcp", "namespace": "shop"}),
    );
    assert_eq!(document(&result), printed);

    let status = session.close();
    assert!(
        status.success(),
        "closing stdin ends the server cleanly: {status}"
    );
    let _ = std::fs::remove_file(&kubeconfig);
}

#[test]
fn bad_arguments_are_tool_errors_with_the_commands_sentence() {
    let kubeconfig = cluster_with_a_node();
    let mut session = Session::start(&kubeconfig);
    initialize(&mut session);

    let result = session.call(
        "check",
        json!({"from": "shop/checkout", "to": "svc/payments.shop"}),
    );
    assert_eq!(result["isError"], true, "{result}");
    let text = result["content"][0]["text"].as_str().unwrap_or("");
    assert!(
        text.starts_with("error: ") && text.contains("the port is missing"),
        "{text}"
    );
    assert_eq!(
        result["structuredContent"]["error"]["reason"], "Usage",
        "{result}"
    );
    assert_eq!(result["structuredContent"]["error"]["exitCode"], 2, "{result}");

    // A pod that does not exist: the command's not-found line, with the close name.
    let result = session.call("check", json!({"from": "shop/chekout", "to": "10.0.0.1:80"}));
    assert_eq!(result["isError"], true, "{result}");
    assert_eq!(
        result["content"][0]["text"],
        "error: pods \"chekout\" not found in namespace \"shop\"; did you mean \"checkout\"?"
    );

    let result = session.call(
        "policy_explain",
        json!({"from": "shop/checkout", "to": "shop/checkout", "port": 0}),
    );
    assert_eq!(result["isError"], true, "{result}");
    assert!(
        result["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("invalid port \"0\""),
        "{result}"
    );

    // An argument the schema does not allow.
    let result = session.call("status", json!({"context": "other"}));
    assert_eq!(result["isError"], true, "{result}");

    let unknown = session.request("tools/frobnicate", json!({}));
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");

    // The server is still serving after every error.
    let result = session.call("status", json!({}));
    assert_eq!(result["isError"], false, "{result}");
    assert!(session.close().success());
    let _ = std::fs::remove_file(&kubeconfig);
}

#[test]
fn rbac_refusals_are_the_callers_and_reported_as_the_command_reports_them() {
    let kubeconfig = common::forbidding_api_server();
    let mut session = Session::start(&kubeconfig);
    initialize(&mut session);
    let result = session.call("status", json!({}));
    assert_eq!(result["isError"], true, "{result}");
    let text = result["content"][0]["text"].as_str().unwrap_or("");
    assert!(
        text.starts_with("error: pods is forbidden: User \"dev\" cannot list resource \"pods\""),
        "{text}"
    );
    assert_eq!(
        result["structuredContent"],
        command_json(&kubeconfig, &["status"])
    );
    assert!(session.close().success());
    let _ = std::fs::remove_file(&kubeconfig);
}
