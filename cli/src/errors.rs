//! The errors a command stops on, as kubectl prints them: one `error: …` line on stderr (with
//! what to do about it), one exit code per cause — the same in `check`, `policy`, `status` and
//! `version` — and, under `-o json|yaml`, an error object on stdout instead of a report.
//!
//! Everything here but [`CliError::exit`] is pure.

use std::fmt;
use std::process::ExitCode;

use serde::Serialize;

use crate::kube_args::KubeConfigError;
use netdiag_engine::ToolFailure;

/// Something other than the causes below went wrong (an API error status, a write that failed).
pub const EXIT_FAILURE: u8 = 1;
pub use netdiag_engine::report::{EXIT_CONFIG, EXIT_UNDETERMINED, EXIT_USAGE};
/// The API server could not be reached or did not answer in time.
pub const EXIT_UNREACHABLE: u8 = 5;
/// The API server rejected the credentials (401).
pub const EXIT_UNAUTHORIZED: u8 = 6;
/// RBAC denied a read the command cannot do without (403).
pub const EXIT_FORBIDDEN: u8 = 7;

/// Why a command stopped; each has one exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Reason {
    /// A flag's value cannot be used (as clap's usage errors).
    Usage,
    /// The kubeconfig or context cannot be used.
    Config,
    /// An object named in the flags (pod, namespace, workload) does not exist.
    NotFound,
    Unreachable,
    Unauthorized,
    Forbidden,
    Failed,
}

impl Reason {
    pub fn exit_code(self) -> u8 {
        match self {
            Reason::Usage => EXIT_USAGE,
            Reason::Config | Reason::NotFound => EXIT_CONFIG,
            Reason::Unreachable => EXIT_UNREACHABLE,
            Reason::Unauthorized => EXIT_UNAUTHORIZED,
            Reason::Forbidden => EXIT_FORBIDDEN,
            Reason::Failed => EXIT_FAILURE,
        }
    }
}

/// A command's stopping error: kubectl's message and, apart, what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CliError {
    pub reason: Reason,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The name the user probably meant, when one is close to what was typed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub did_you_mean: Option<String>,
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(name) = &self.did_you_mean {
            write!(f, "; did you mean \"{name}\"?")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CliError {}

/// How the command was asked to print: an error object goes to stdout only for data formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    Text,
    Json,
    Yaml,
}

/// The error object `-o json|yaml` prints: `{"error": {"reason": …, "message": …, "exitCode": …}}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorObject<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    #[serde(flatten)]
    error: &'a CliError,
    exit_code: u8,
}

impl CliError {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        CliError {
            reason,
            message: message.into(),
            hint: None,
            did_you_mean: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn exit_code(&self) -> u8 {
        self.reason.exit_code()
    }

    /// The one line kubectl would print.
    pub fn line(&self) -> String {
        format!("error: {self}")
    }

    /// The error object of `-o json|yaml`.
    pub fn data(&self, emit: Emit) -> Option<String> {
        let object = ErrorObject {
            error: ErrorBody {
                error: self,
                exit_code: self.exit_code(),
            },
        };
        match emit {
            Emit::Text => None,
            Emit::Json => serde_json::to_string_pretty(&object).ok().map(|j| j + "\n"),
            Emit::Yaml => serde_yaml_ng::to_string(&object).ok(),
        }
    }

    /// Prints the line on stderr (and the error object on stdout for data formats); the exit code.
    pub fn exit(&self, emit: Emit) -> ExitCode {
        eprintln!("{}", self.line());
        if let Some(data) = self.data(emit) {
            print!("{data}");
        }
        ExitCode::from(self.exit_code())
    }

    /// `RESOURCE "NAME" not found [in namespace "NS"]`, with the closest of `names` as a hint.
    pub fn not_found(resource: &str, name: &str, namespace: Option<&str>, names: &[String]) -> Self {
        let mut message = format!("{resource} \"{name}\" not found");
        if let Some(ns) = namespace {
            message.push_str(&format!(" in namespace \"{ns}\""));
        }
        let mut err = CliError::new(Reason::NotFound, message);
        err.did_you_mean = netdiag_engine::closest(name, names).map(str::to_string);
        err
    }

    /// A failed API call, as kubectl words it.
    pub fn from_kube(err: &kube::Error) -> Self {
        match err {
            kube::Error::Api(status) => api_status(status.code, &status.message),
            kube::Error::Auth(auth) => CliError::new(
                Reason::Unauthorized,
                format!("failed to get credentials: {}", netdiag_engine::error_chain(auth)),
            )
            .with_hint(LOG_IN),
            kube::Error::HyperError(_) | kube::Error::Service(_) => {
                unreachable_server(&netdiag_engine::error_chain(err))
            }
            other => CliError::new(Reason::Failed, netdiag_engine::error_chain(other)),
        }
    }

    /// The engine's account of a read that did not happen.
    pub fn from_failure(failure: &ToolFailure) -> Self {
        match failure {
            ToolFailure::Forbidden { message, .. } => api_status(403, message),
            ToolFailure::ApiError { code, message, .. } => api_status(*code, message),
            ToolFailure::ApiUnreachable { detail, .. } => unreachable_server(detail),
            ToolFailure::Config { detail } => CliError::new(Reason::Config, detail.clone()),
            other => CliError::new(Reason::Failed, other.to_string()),
        }
    }
}

impl From<&KubeConfigError> for CliError {
    fn from(err: &KubeConfigError) -> Self {
        CliError::new(Reason::Config, err.to_string())
    }
}

const LOG_IN: &str = "log in again, or check the user of the context (kubectl config view --minify)";
const CHECK_CONTEXT: &str = "check the context (kubectl config current-context) and that the cluster is up";
const NEEDS_ROLE: &str = "bind the netdiag-user ClusterRole (deploy/rbac-user.yaml) to this user";

/// An error status of the API server, as kubectl prints it.
fn api_status(code: u16, message: &str) -> CliError {
    match code {
        401 => CliError::new(
            Reason::Unauthorized,
            "You must be logged in to the server (Unauthorized)",
        )
        .with_hint(LOG_IN),
        403 => CliError::new(Reason::Forbidden, message).with_hint(NEEDS_ROLE),
        404 => CliError::new(Reason::NotFound, message),
        _ => CliError::new(Reason::Failed, format!("the server answered {code}: {message}")),
    }
}

/// `Unable to connect to the server: …`, without the client library's wrapper words.
fn unreachable_server(detail: &str) -> CliError {
    let parts: Vec<&str> = detail
        .split(": ")
        .filter(|part| {
            !matches!(
                *part,
                "ServiceError" | "HyperError" | "client error (Connect)" | "client error (SendRequest)"
            )
        })
        .collect();
    let detail = if parts.is_empty() {
        detail.to_string()
    } else {
        parts.join(": ")
    };
    CliError::new(
        Reason::Unreachable,
        format!("Unable to connect to the server: {detail}"),
    )
    .with_hint(CHECK_CONTEXT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_pod_is_one_kubectl_line_with_the_close_name() {
        let names = vec!["checkout".to_string(), "payments-0".to_string()];
        let err = CliError::not_found("pods", "chekout", Some("shop"), &names);
        assert_eq!(
            err.line(),
            "error: pods \"chekout\" not found in namespace \"shop\"; did you mean \"checkout\"?"
        );
        assert_eq!(err.exit_code(), EXIT_CONFIG);
        let far = CliError::not_found("namespaces", "zzz", None, &names);
        assert_eq!(far.line(), "error: namespaces \"zzz\" not found");
    }

    #[test]
    fn each_cause_has_its_own_exit_code() {
        let codes = [
            Reason::Config,
            Reason::Unreachable,
            Reason::Unauthorized,
            Reason::Forbidden,
            Reason::Failed,
        ]
        .map(Reason::exit_code);
        let mut unique = codes.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), codes.len(), "{codes:?}");
        for code in codes {
            assert!(
                ![0, EXIT_USAGE, EXIT_UNDETERMINED].contains(&code) && code < 10,
                "{code} collides with a verdict or usage code"
            );
        }
    }

    #[test]
    fn statuses_read_as_kubectl_prints_them() {
        let unauthorized = api_status(401, "Unauthorized");
        assert!(
            unauthorized
                .line()
                .starts_with("error: You must be logged in to the server (Unauthorized); log in again"),
            "{}",
            unauthorized.line()
        );
        let message = "pods is forbidden: User \"dev\" cannot list resource \"pods\" in API group \"\" at the cluster scope";
        let forbidden = CliError::from_failure(&ToolFailure::Forbidden {
            action: "list pods in all namespaces".into(),
            message: message.into(),
            access: None,
        });
        assert_eq!(forbidden.reason, Reason::Forbidden);
        assert!(forbidden.line().starts_with(&format!("error: {message}; ")));
        assert!(!forbidden.line().contains("Status {"));
    }

    #[test]
    fn an_unreachable_server_keeps_the_cause_and_drops_the_wrappers() {
        let err = CliError::from_failure(&ToolFailure::ApiUnreachable {
            action: "list pods in all namespaces".into(),
            detail:
                "ServiceError: client error (Connect): tcp connect error: Connection refused (os error 111)"
                    .into(),
        });
        assert_eq!(err.reason, Reason::Unreachable);
        assert!(
            err.line().starts_with(
                "error: Unable to connect to the server: tcp connect error: Connection refused (os error 111); check the context"
            ),
            "{}",
            err.line()
        );
    }

    #[test]
    fn data_formats_get_an_error_object_never_a_verdict() {
        let err = CliError::not_found("pods", "chekout", Some("shop"), &["checkout".into()]);
        let json: serde_json::Value = serde_json::from_str(&err.data(Emit::Json).unwrap()).unwrap();
        assert_eq!(json["error"]["reason"], "NotFound");
        assert_eq!(json["error"]["didYouMean"], "checkout");
        assert_eq!(json["error"]["exitCode"], EXIT_CONFIG);
        assert!(json.get("reachable").is_none() && json.get("verdict").is_none());
        assert!(err.data(Emit::Text).is_none());
        assert!(err.data(Emit::Yaml).unwrap().contains("reason: NotFound"));
    }
}
