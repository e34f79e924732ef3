//! kubectl's connection flags (`--kubeconfig`, `--context`, `-n`, `--request-timeout`, `--as`,
//! `--as-group`), accepted before or after the subcommand; the client they build (in-cluster
//! when there is no kubeconfig); and the same flags written back into the commands a check
//! suggests (so a pasted command talks to the cluster the check looked at, as the same user).

use clap::Args;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Connection flags shared by every command that talks to the API server; kubectl's, and like
/// kubectl's accepted before or after the subcommand.
#[derive(Debug, Clone, Args, Default, PartialEq, Eq)]
pub struct KubeArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then the
    /// in-cluster service account).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace of names that give none (default: the context's). `policy matrix` takes it
    /// more than once.
    #[arg(short = 'n', long = "namespace", global = true, value_name = "NAMESPACE")]
    pub namespaces: Vec<String>,
    /// How long to wait for each answer of the API server, e.g. 30s, 500ms, 1m (default: 30s
    /// for policy, the probe deadline for check).
    #[arg(long, global = true, value_parser = parse_duration, value_name = "DURATION")]
    pub request_timeout: Option<std::time::Duration>,
    /// User to impersonate for the operation, as kubectl's --as.
    #[arg(long = "as", global = true, value_name = "USER")]
    pub as_user: Option<String>,
    /// Group to impersonate for the operation (repeatable), as kubectl's --as-group.
    #[arg(long = "as-group", global = true, value_name = "GROUP")]
    pub as_groups: Vec<String>,
}

/// `500ms`, `30s`, `2m`, or a bare number of seconds; more than zero.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    let err = || format!("invalid duration {text:?}: expected e.g. 30s, 500ms or 1m");
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: u64 = number.parse().map_err(|_| err())?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        _ => return Err(err()),
    };
    if duration.is_zero() {
        return Err(err());
    }
    Ok(duration)
}

/// Why no client could be configured; each message is kubectl's one line after `error: `.
#[derive(Debug, thiserror::Error)]
pub enum KubeConfigError {
    #[error("cannot read kubeconfig {path}: {reason}")]
    Read {
        path: String,
        reason: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no kubeconfig found: pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config")]
    Missing(#[source] kube::config::KubeconfigError),
    #[error("context \"{0}\" does not exist in the kubeconfig")]
    NoSuchContext(String),
    #[error("the kubeconfig has no current-context: pass --context")]
    NoCurrentContext,
    #[error("failed to load kubeconfig: {0}")]
    Load(String),
    #[error("failed to create a Kubernetes client: {0}")]
    Client(String),
}

/// The client configuration and the name of the context it came from.
pub struct Resolved {
    pub config: kube::Config,
    pub context: Option<String>,
}

/// Every cause of `err`, joined by `: ` (kube's errors put the useful part in their sources).
fn chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut next = err.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    parts.join(": ")
}

impl KubeArgs {
    /// The kubeconfig these flags designate, read and checked as kubectl would.
    fn kubeconfig(&self) -> Result<Kubeconfig, KubeConfigError> {
        let kubeconfig = match &self.kubeconfig {
            Some(path) => Kubeconfig::read_from(path).map_err(|source| KubeConfigError::Read {
                path: path.display().to_string(),
                reason: match &source {
                    kube::config::KubeconfigError::ReadConfig(io, _) => io.to_string(),
                    other => chain(other),
                },
                source,
            })?,
            None => Kubeconfig::read().map_err(KubeConfigError::Missing)?,
        };
        match &self.context {
            Some(name) if !kubeconfig.contexts.iter().any(|c| &c.name == name) => {
                Err(KubeConfigError::NoSuchContext(name.clone()))
            }
            None if kubeconfig.current_context.as_deref().is_none_or(str::is_empty) => {
                Err(KubeConfigError::NoCurrentContext)
            }
            _ => Ok(kubeconfig),
        }
    }

    /// The namespace `-n` gave (the last one, as kubectl reads a repeated flag).
    pub fn namespace(&self) -> Option<&str> {
        self.namespaces.last().map(String::as_str)
    }

    /// The client configuration kubectl would use with the same flags and environment: the
    /// kubeconfig, or inside a pod without one the pod's service account.
    pub async fn resolve(&self) -> Result<Resolved, KubeConfigError> {
        let mut resolved = self.resolve_config().await?;
        if let Some(user) = &self.as_user {
            resolved.config.auth_info.impersonate = Some(user.clone());
        }
        if !self.as_groups.is_empty() {
            resolved.config.auth_info.impersonate_groups = Some(self.as_groups.clone());
        }
        if let Some(namespace) = self.namespace() {
            resolved.config.default_namespace = namespace.to_string();
        }
        Ok(resolved)
    }

    async fn resolve_config(&self) -> Result<Resolved, KubeConfigError> {
        let kubeconfig = match self.kubeconfig() {
            Err(KubeConfigError::Missing(err)) if self.context.is_none() => {
                // kubectl's fallback: a pod's own service account when no kubeconfig exists.
                return match kube::Config::incluster() {
                    Ok(config) => {
                        tracing::info!("no kubeconfig; using the in-cluster service account");
                        Ok(Resolved {
                            config,
                            context: None,
                        })
                    }
                    Err(_) => Err(KubeConfigError::Missing(err)),
                };
            }
            other => other?,
        };
        let context = self
            .context
            .clone()
            .or_else(|| kubeconfig.current_context.clone());
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| KubeConfigError::Load(chain(&e)))?;
        Ok(Resolved { config, context })
    }

    /// The client configuration kubectl would use with the same flags and environment.
    pub async fn config(&self) -> Result<kube::Config, KubeConfigError> {
        Ok(self.resolve().await?.config)
    }

    /// A client and the namespace a bare name refers to (the context's, else `default`).
    pub async fn client(&self) -> Result<(kube::Client, String), KubeConfigError> {
        let config = self.config().await?;
        let namespace = config.default_namespace.clone();
        let client = client(config).map_err(|e| KubeConfigError::Client(chain(&e)))?;
        Ok((client, namespace))
    }

    /// The flags that pin a suggested command to this cluster: `--kubeconfig` when one was given,
    /// and the context the check used (given, or the kubeconfig's current one at the time).
    /// The kubeconfig path is made absolute (a pasted command may run from another directory),
    /// and an impersonation (`--as`, `--as-group`) is kept: the commands act as the same user.
    pub fn command_flags(&self, context: Option<&str>) -> Vec<String> {
        let mut flags = Vec::new();
        if let Some(path) = &self.kubeconfig {
            let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            flags.push(format!(
                "--kubeconfig={}",
                shell_quote(&path.display().to_string())
            ));
        }
        if let Some(context) = context.or(self.context.as_deref()) {
            flags.push(format!("--context={}", shell_quote(context)));
        }
        if let Some(user) = &self.as_user {
            flags.push(format!("--as={}", shell_quote(user)));
        }
        for group in &self.as_groups {
            flags.push(format!("--as-group={}", shell_quote(group)));
        }
        flags
    }
}

/// `word` as one shell word: unchanged when it needs no quoting, else in single quotes.
pub fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// `command` with `flags` added where kubectl reads them: after `kubectl` for kubectl's own
/// commands, after the subcommand for `kubectl netdiag SUBCOMMAND` (the plugin's flags belong
/// to its subcommands). Other commands are returned unchanged.
pub fn scoped_command(command: &str, flags: &[String]) -> String {
    if flags.is_empty() {
        return command.to_string();
    }
    let flags = flags.join(" ");
    if let Some(rest) = command.strip_prefix("kubectl netdiag ") {
        let (sub, args) = rest.split_once(' ').unwrap_or((rest, ""));
        return format!("kubectl netdiag {sub} {flags} {args}")
            .trim_end()
            .to_string();
    }
    match command.strip_prefix("kubectl ") {
        Some(rest) => format!("kubectl {flags} {rest}"),
        None => command.to_string(),
    }
}

/// A client for `config` whose connections send each write at once (`TCP_NODELAY`), as kubectl's
/// do. kube's own builder leaves Nagle's algorithm on: a port-forwarded agent request then waits
/// for the API server's delayed ACK (40 ms on Linux) on its way in and on its answer's way out.
/// Through a proxy the connection is the proxy connector's, and kube's builder is used. A plain
/// `http://` server gets no TLS stack (kube's builds one anyway, and without a CA in the
/// kubeconfig that means reading every system root certificate: about 5 ms per run).
pub fn client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    use hyper_util::client::legacy::connect::HttpConnector;
    use kube::client::ConfigExt;
    if config.proxy_url.is_some() {
        return kube::Client::try_from(config);
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    if config.cluster_url.scheme_str() == Some("http") {
        return client_over(http, config);
    }
    let https = config.rustls_https_connector_with_connector(http)?;
    client_over(https, config)
}

/// kube's service stack (base URI, auth, extra headers) over `connector`, with the config's
/// timeouts.
fn client_over<C>(connector: C, config: kube::Config) -> Result<kube::Client, kube::Error>
where
    C: tower::Service<hyper::Uri> + Clone + Send + Sync + 'static,
    C::Response: hyper::rt::Read + hyper::rt::Write + hyper_util::client::legacy::connect::Connection,
    C::Response: Send + Unpin + 'static,
    C::Future: Send + 'static,
    C::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use kube::client::ConfigExt;
    let mut connector = hyper_timeout::TimeoutConnector::new(connector);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    let hyper =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .layer(request_log())
        .map_err(Box::<dyn std::error::Error + Send + Sync>::from)
        .service(hyper);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// kubectl's `-v=6` line for each API request, `GET https://…/api/v1/pods 200 OK in 12 ms`, on
/// the `http` target (enabled from -v=6).
#[allow(clippy::type_complexity)] // the closures' types cannot be named
fn request_log() -> tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    impl Fn(&hyper::Request<kube::client::Body>) -> tracing::Span + Clone,
    (),
    impl Fn(&hyper::Response<hyper::body::Incoming>, std::time::Duration, &tracing::Span) + Clone,
    (),
    (),
    impl Fn(tower_http::classify::ServerErrorsFailureClass, std::time::Duration, &tracing::Span) + Clone,
> {
    tower_http::trace::TraceLayer::new_for_http()
        .make_span_with(|req: &hyper::Request<kube::client::Body>| {
            tracing::info_span!(target: "http", "request", method = %req.method(), url = %req.uri())
        })
        .on_request(())
        .on_response(|res: &hyper::Response<hyper::body::Incoming>, latency: std::time::Duration, _: &tracing::Span| {
            tracing::info!(target: "http", "{} in {} ms", res.status(), latency.as_millis());
        })
        .on_body_chunk(())
        .on_eos(())
        .on_failure(
            |failure: tower_http::classify::ServerErrorsFailureClass, latency: std::time::Duration, _: &tracing::Span| {
                if let tower_http::classify::ServerErrorsFailureClass::Error(err) = failure {
                    tracing::info!(target: "http", "failed in {} ms: {err}", latency.as_millis());
                }
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(kubeconfig: Option<&str>, context: Option<&str>) -> KubeArgs {
        KubeArgs {
            kubeconfig: kubeconfig.map(Into::into),
            context: context.map(Into::into),
            ..KubeArgs::default()
        }
    }

    #[test]
    fn a_relative_kubeconfig_is_absolute_in_suggested_commands() {
        let flags = args(Some("lab.kubeconfig"), None).command_flags(Some("lab"));
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            flags[0],
            format!(
                "--kubeconfig={}",
                shell_quote(&cwd.join("lab.kubeconfig").display().to_string())
            )
        );
    }

    #[test]
    fn impersonation_is_kept_in_suggested_commands() {
        let kube = KubeArgs {
            as_user: Some("jane".into()),
            as_groups: vec!["sre".into(), "on call".into()],
            ..KubeArgs::default()
        };
        assert_eq!(
            kube.command_flags(Some("prod")),
            [
                "--context=prod",
                "--as=jane",
                "--as-group=sre",
                "--as-group='on call'"
            ]
        );
    }

    #[tokio::test]
    async fn impersonation_and_namespace_reach_the_client_configuration() {
        let dir = std::env::temp_dir().join(format!("netdiag-kubeconfig-as-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: lab\nclusters:\n- name: lab\n  cluster: {server: 'https://127.0.0.1:1'}\ncontexts:\n- name: lab\n  context: {cluster: lab, user: lab, namespace: web}\nusers:\n- name: lab\n  user: {}\n",
        )
        .unwrap();
        let kube = KubeArgs {
            kubeconfig: Some(path),
            as_user: Some("jane".into()),
            as_groups: vec!["sre".into()],
            namespaces: vec!["shop".into()],
            ..KubeArgs::default()
        };
        let config = kube.config().await.unwrap();
        std::fs::remove_dir_all(dir).unwrap();
        assert_eq!(config.auth_info.impersonate.as_deref(), Some("jane"));
        assert_eq!(config.auth_info.impersonate_groups, Some(vec!["sre".to_string()]));
        assert_eq!(config.default_namespace, "shop");
    }

    #[test]
    fn kubectl_commands_get_the_flags_right_after_kubectl() {
        let flags = args(Some("/tmp/lab config"), None).command_flags(Some("lab"));
        assert_eq!(
            scoped_command("kubectl -n shop get networkpolicy payments -o yaml", &flags),
            "kubectl --kubeconfig='/tmp/lab config' --context=lab -n shop get networkpolicy payments -o yaml"
        );
    }

    #[test]
    fn netdiag_commands_get_the_flags_after_their_subcommand() {
        let flags = args(None, Some("prod")).command_flags(None);
        assert_eq!(
            scoped_command("kubectl netdiag check --from shop/a --to example.com:443", &flags),
            "kubectl netdiag check --context=prod --from shop/a --to example.com:443"
        );
    }

    #[test]
    fn without_flags_a_command_is_unchanged() {
        assert_eq!(scoped_command("kubectl get nodes", &[]), "kubectl get nodes");
    }

    #[test]
    fn quoting_survives_a_single_quote() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("kind-lab"), "kind-lab");
    }

    #[test]
    fn an_unknown_context_is_named_in_one_line() {
        let dir = std::env::temp_dir().join(format!("netdiag-kubeconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: lab\nclusters:\n- name: lab\n  cluster: {server: 'https://127.0.0.1:1'}\ncontexts:\n- name: lab\n  context: {cluster: lab, user: lab}\nusers:\n- name: lab\n  user: {}\n",
        )
        .unwrap();
        let err = args(path.to_str(), Some("prod")).kubeconfig().unwrap_err();
        assert_eq!(
            err.to_string(),
            "context \"prod\" does not exist in the kubeconfig"
        );
        let missing = args(Some("/nonexistent/kubeconfig"), None)
            .kubeconfig()
            .unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("cannot read kubeconfig /nonexistent/kubeconfig: "),
            "{missing}"
        );
        assert!(!missing.to_string().contains('\n'));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
