//! A fake API server for tests that run the plugin as a process: a loopback HTTP server answering
//! each request from a function of its path, and the kubeconfig that points at it.

use std::path::PathBuf;

/// Writes a kubeconfig for an API server on `127.0.0.1:port` (context namespace `namespace`).
pub fn kubeconfig_for(tag: &str, port: u16, namespace: Option<&str>) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "netdiag-cli-{tag}-{}-{port}.kubeconfig",
        std::process::id()
    ));
    let namespace = namespace
        .map(|ns| format!(", namespace: {ns}"))
        .unwrap_or_default();
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"http://127.0.0.1:{port}\"}}\n\
         contexts:\n- name: c\n  context: {{cluster: c, user: u{namespace}}}\ncurrent-context: c\n\
         users:\n- name: u\n  user: {{}}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// An API server on loopback answering each request with `answer(path)`: a status and a JSON
/// body. Returns its kubeconfig.
pub fn fake_api_server(tag: &str, answer: fn(&str) -> (u16, String)) -> PathBuf {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    // Read one request's headers (no request of the check has a body on GET).
                    let mut path = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if path.is_empty() {
                            path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let (code, body) = answer(&path);
                    let response = format!(
                        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    kubeconfig_for(tag, port, None)
}

pub fn status_body(code: u16, reason: &str, message: &str) -> String {
    serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    })
    .to_string()
}

/// What a request path asks for, as kube-apiserver reads it.
pub struct Request<'a> {
    /// `v1`, `apps/v1`, ...
    pub api_version: String,
    pub namespace: Option<&'a str>,
    pub resource: &'a str,
    /// A GET of one object; `None` for a list.
    pub name: Option<&'a str>,
    pub query: &'a str,
}

impl<'a> Request<'a> {
    pub fn parse(path: &'a str) -> Self {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let (api_version, rest) = match path.strip_prefix("/apis/") {
            Some(rest) => {
                let mut parts = rest.splitn(3, '/');
                let group = parts.next().unwrap_or("");
                let version = parts.next().unwrap_or("");
                (format!("{group}/{version}"), parts.next().unwrap_or(""))
            }
            None => ("v1".to_string(), path.strip_prefix("/api/v1/").unwrap_or("")),
        };
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let (namespace, segments) = match segments.as_slice() {
            ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(*ns), tail.to_vec()),
            _ => (None, segments),
        };
        Request {
            api_version,
            namespace,
            resource: segments.first().copied().unwrap_or(""),
            name: segments.get(1).copied(),
            query,
        }
    }

    /// RBAC's refusal of this request, worded as kube-apiserver words it.
    pub fn forbidden_message(&self, user: &str) -> String {
        let group = self.api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let verb = if self.name.is_some() { "get" } else { "list" };
        let subject = match self.name {
            Some(name) => format!("{} \"{name}\"", self.resource),
            None => self.resource.to_string(),
        };
        let scope = match self.namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        format!(
            "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{}\" in API group \"{group}\" {scope}",
            self.resource
        )
    }
}

/// Every request answered 403 Forbidden, as RBAC does.
pub fn forbidding_api_server() -> PathBuf {
    fake_api_server("403", |path| {
        let message = Request::parse(path).forbidden_message("dev");
        (403, status_body(403, "Forbidden", &message))
    })
}

/// A cluster with namespaces default and shop and one pod, shop/checkout, answering gets by name,
/// lists (cluster-wide or in a namespace) and the `status.podIP` field selector; every other
/// list is empty, and no workload (the agent DaemonSet included) exists. The answer to `path`.
pub fn small_cluster_answer(path: &str) -> (u16, String) {
    let request = Request::parse(path);
    let namespaces = serde_json::json!([{"metadata": {"name": "default"}}, {"metadata": {"name": "shop"}}]);
    let pods = serde_json::json!([{
        "metadata": {"name": "checkout", "namespace": "shop", "labels": {"app": "checkout"}},
        "spec": {"nodeName": "node-a", "containers": [{"name": "app", "image": "app"}]},
        "status": {"phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }]);
    let objects = match (request.api_version.as_str(), request.resource) {
        ("v1", "namespaces") => namespaces.as_array().unwrap().clone(),
        ("v1", "pods") => pods.as_array().unwrap().clone(),
        _ => Vec::new(),
    };
    let pod_ip = request
        .query
        .split('&')
        .find_map(|kv| kv.strip_prefix("fieldSelector=status.podIP%3D"));
    let selected = objects.into_iter().filter(|o| {
        request
            .namespace
            .is_none_or(|ns| o["metadata"]["namespace"] == ns)
            && pod_ip.is_none_or(|ip| o["status"]["podIP"] == ip)
    });
    match request.name {
        Some(name) => match selected.into_iter().find(|o| o["metadata"]["name"] == name) {
            Some(object) => (200, object.to_string()),
            None => {
                let message = format!("{} \"{name}\" not found", request.resource);
                (404, status_body(404, "NotFound", &message))
            }
        },
        None => {
            let items: Vec<_> = selected.collect();
            let list = serde_json::json!({
                "kind": "List", "apiVersion": request.api_version,
                "metadata": {"resourceVersion": "1"}, "items": items,
            });
            (200, list.to_string())
        }
    }
}
