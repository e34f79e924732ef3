//! What the lab gives agents for the in-cluster endpoint: a ServiceAccount token (accepted by the
//! API stand-in's TokenReview), a kubeconfig pointing at the stand-in's cluster address (which
//! pods and agents reach over the lab's network), and the endpoint's flags.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::plan::UNDERLAY_ROUTER_IP;
use crate::rbac::{self, TokenSpec};
use crate::scenario::Scenario;
use crate::state::StateDir;

/// The agents' kubeconfig in the state dir.
pub const AGENT_KUBECONFIG: &str = "agent-kubeconfig";
/// The agents' ServiceAccount token (audience `netdiag`) in the state dir.
pub const AGENT_TOKEN: &str = "agent-token";
/// The endpoint's port in every agent pod.
pub const ENDPOINT_PORT: u16 = 9443;
/// The audience agents ask TokenReview for.
pub const AUDIENCE: &str = "netdiag";

/// Where pods and agents reach the API stand-in: the underlay router's address.
pub fn cluster_api_addr() -> SocketAddr {
    SocketAddr::from((UNDERLAY_ROUTER_IP, 6443))
}

fn random_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write;
    std::fs::File::options()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("failed to write {}", path.display()))
}

/// Writes the agents' token and kubeconfig; returns the tokens and RBAC objects the API serves:
/// the scenario's, the agents' token, the RBAC the deployment ships (for the endpoint and for
/// users) and kube-apiserver's `system:basic-user`.
pub fn write_agent_credentials(
    state: &StateDir,
    scenario: &Scenario,
) -> Result<(Vec<TokenSpec>, Vec<Value>)> {
    let token = random_token().context("failed to make the agents' token")?;
    write_private(&state.path(AGENT_TOKEN), &token)?;
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: netdiag-lab\n  cluster:\n    server: http://{}\n\
         users:\n- name: netdiag-agent\n  user:\n    token: {token}\ncontexts:\n- name: netdiag-lab\n  context:\n    \
         cluster: netdiag-lab\n    user: netdiag-agent\n    namespace: netdiag\ncurrent-context: netdiag-lab\n",
        cluster_api_addr()
    );
    write_private(&state.path(AGENT_KUBECONFIG), &kubeconfig)?;
    let mut tokens = scenario.tokens.clone();
    tokens.push(TokenSpec {
        token,
        user: None,
        groups: vec![],
        service_account: Some(rbac::AGENT_SERVICE_ACCOUNT.into()),
        audiences: vec![AUDIENCE.into(), "https://kubernetes.default.svc".into()],
    });
    let mut objects = scenario.rbac.clone();
    for shipped in [
        rbac::SHIPPED_ENDPOINT_RBAC,
        rbac::SHIPPED_USER_RBAC,
        rbac::BASIC_USER_RBAC,
    ] {
        objects.extend(rbac::yaml_objects(shipped).map_err(anyhow::Error::msg)?);
    }
    Ok((tokens, objects))
}

/// The endpoint flags of a lab agent (after `serve`).
pub fn agent_args(state: &StateDir) -> Result<Vec<String>> {
    let path = |name: &str| {
        state
            .path(name)
            .to_str()
            .map(String::from)
            .context("the state dir path is not utf-8")
    };
    Ok(vec![
        "--endpoint-listen".into(),
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, ENDPOINT_PORT)).to_string(),
        "--peer-token-file".into(),
        path(AGENT_TOKEN)?,
        "--tls-cert-file".into(),
        path("tls/tls.crt")?,
        "--tls-key-file".into(),
        path("tls/tls.key")?,
        "--token-audience".into(),
        AUDIENCE.into(),
        "--api-timeout-seconds".into(),
        "3".into(),
    ])
}
