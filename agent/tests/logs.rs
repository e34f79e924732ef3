//! Under `--log-format json` every line the real binary writes, on stdout and stderr, is one JSON
//! object from the first line: a serving agent, a start-up it refuses, a command line clap
//! refuses, a one-shot probe it cannot run. Needs no root.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const AGENT: &str = env!("CARGO_BIN_EXE_netdiag-agent");

/// Every line of `text` as JSON; fails naming the line that is not.
fn json_lines(stream: &str, text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("{stream} line is not JSON ({err}): {line:?}\n{text}"))
        })
        .collect()
}

fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

fn agent(args: &[&str]) -> Command {
    let mut command = Command::new(AGENT);
    command
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("NETDIAG_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// The single error line of a run that failed with `code`.
fn failed(out: Output, code: i32) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stdout}{stderr}");
    json_lines("stdout", &stdout);
    let lines = json_lines("stderr", &stderr);
    let error = lines.last().unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert_eq!(error["level"], "ERROR", "{stderr}");
    error.clone()
}

#[test]
fn a_serving_agent_writes_json_on_stdout_and_stderr_and_announces_its_port() {
    let mut child = agent(&["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .args(["--node", "test-node", "--node-netns", "/proc/self/ns/net"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .spawn()
        .expect("start netdiag-agent");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut announced = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("reading stdout");
        let value = json_lines("stdout", &line).remove(0);
        let done = message(&value).contains("listening on");
        announced.push(value);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("wait for netdiag-agent");
    let listening = announced.last().map(message).unwrap_or_default();
    let addr = listening.rsplit(' ').next().unwrap_or_default();
    assert!(addr.parse::<SocketAddr>().is_ok(), "{announced:?}");
    assert_eq!(announced.last().unwrap()["target"], "netdiag_agent::announce");
    // Logged before the announcement, so written by the time it was read.
    let logs = json_lines("stderr", &String::from_utf8_lossy(&out.stderr));
    assert!(logs.iter().any(|l| message(l) == "serving /metrics"), "{logs:?}");
}

#[test]
fn a_start_up_the_agent_refuses_is_one_json_error() {
    let out = agent(&["--log-format", "json", "serve", "--max-concurrent", "0"])
        .output()
        .expect("run netdiag-agent");
    let error = failed(out, 1);
    assert!(
        message(&error).contains("--max-concurrent must be at least 1"),
        "{error}"
    );
}

#[test]
fn a_command_line_clap_refuses_is_json_when_the_environment_asks_for_json() {
    let out = agent(&["serve", "--no-such-flag"])
        .env("NETDIAG_LOG_FORMAT", "json")
        .output()
        .expect("run netdiag-agent");
    let error = failed(out, 2);
    assert!(message(&error).contains("--no-such-flag"), "{error}");
}

#[test]
fn a_one_shot_probe_writes_json_lines_only() {
    let mut child = agent(&["--log-format=json", "probe", "-", "--node", "test-node"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("start netdiag-agent probe");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(b"{not json").expect("write the request");
    drop(stdin);
    let out = child.wait_with_output().expect("wait for netdiag-agent");
    let error = failed(out, 1);
    assert!(message(&error).contains("invalid probe request"), "{error}");
}
