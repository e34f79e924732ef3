//! Shell completion for `kubectl netdiag`, as kubectl (1.26 and later) asks plugins for it: it
//! runs `kubectl_complete-netdiag WORDS…` with the words after `kubectl netdiag` (the last one
//! being completed, possibly empty) and expects cobra's answer — one candidate per line, then
//! `:DIRECTIVE`. Subcommands, flags and enumerated values come from the clap definition;
//! namespaces, pods, workloads and Service ports from the cluster (`--context`, `--kubeconfig`
//! and `-n` among the words are honoured).
//!
//! [`plan`] and [`answer`] are pure; [`main`] reads the cluster.

use std::process::ExitCode;
use std::time::Duration;

use clap::CommandFactory;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::Api;
use kube::api::ListParams;

use crate::cli::Cli;
use crate::kube_args::KubeArgs;
use netdiag_engine::SourceKind;

/// cobra's `ShellCompDirectiveNoSpace`: the candidate is a prefix, do not add a space.
pub const NO_SPACE: u32 = 2;
/// cobra's `ShellCompDirectiveNoFileComp`: do not fall back to file names.
pub const NO_FILE: u32 = 4;
/// cobra's `ShellCompDirectiveDefault`: the shell completes file names.
pub const FILES: u32 = 0;

/// What the word being completed needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// Known without the cluster: subcommands, flags, enumerated values.
    Fixed(Vec<String>),
    Namespaces,
    /// `--from`: pods, `TYPE/NAME` workloads, `NS/POD`.
    Source,
    /// `--to`: `svc/NAME:PORT`, `pod/NAME:PORT`.
    Target,
    Contexts,
    /// A file name (`--kubeconfig`, `--from-file`): left to the shell.
    Files,
    Nothing,
}

/// The word being completed and what it needs, from the words after `kubectl netdiag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub want: Want,
    /// The part of the word the candidates must start with.
    pub partial: String,
    /// Written before every candidate (`--from=` when the word is `--from=...`).
    pub lead: String,
    pub kube: KubeArgs,
    pub namespace: Option<String>,
}

fn value_of<'a>(words: &'a [String], names: &[&str]) -> Option<&'a str> {
    words.iter().enumerate().find_map(|(i, w)| {
        names.iter().find_map(|name| {
            if w == name {
                words.get(i + 1).map(String::as_str)
            } else {
                w.strip_prefix(&format!("{name}="))
                    .filter(|_| name.starts_with("--"))
            }
        })
    })
}

fn find_arg<'a>(cmd: &'a clap::Command, flag: &str) -> Option<&'a clap::Arg> {
    cmd.get_arguments().find(|a| match flag.strip_prefix("--") {
        Some(long) => a.get_long() == Some(long),
        None => flag.strip_prefix('-').and_then(|s| s.chars().next()) == a.get_short(),
    })
}

fn takes_value(arg: &clap::Arg) -> bool {
    arg.get_num_args().is_some_and(|n| n.takes_values())
}

/// What the value of `arg` is completed with.
fn want_for(arg: &clap::Arg) -> Want {
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_string())
        .collect();
    if !values.is_empty() {
        return Want::Fixed(values);
    }
    match arg.get_id().as_str() {
        "from" => Want::Source,
        "to" => Want::Target,
        "namespace" | "namespaces" | "agent_namespace" => Want::Namespaces,
        "context" => Want::Contexts,
        "kubeconfig" | "from_file" => Want::Files,
        "protocol" => Want::Fixed(vec!["TCP".into(), "UDP".into(), "SCTP".into()]),
        _ => Want::Nothing,
    }
}

/// Reads the words: walks subcommands, skips flags and their values, and decides what the last
/// word needs.
pub fn plan(words: &[String]) -> Plan {
    let mut root = Cli::command();
    root.build();
    let (done, partial) = match words.split_last() {
        Some((last, done)) => (done, last.clone()),
        None => (&[][..], String::new()),
    };
    let mut cmd = &root;
    let mut expecting: Option<&clap::Arg> = None;
    for word in done {
        // The value of the flag before it: nothing to walk.
        if expecting.take().is_some() {
            continue;
        }
        if word.starts_with('-') {
            if !word.contains('=')
                && let Some(arg) = find_arg(cmd, word)
                && takes_value(arg)
            {
                expecting = Some(arg);
            }
            continue;
        }
        if let Some(sub) = cmd.find_subcommand(word) {
            cmd = sub;
        }
    }
    let kube = KubeArgs {
        kubeconfig: value_of(done, &["--kubeconfig"]).map(Into::into),
        context: value_of(done, &["--context"]).map(Into::into),
        as_user: value_of(done, &["--as"]).map(Into::into),
        as_groups: value_of(done, &["--as-group"])
            .map(Into::into)
            .into_iter()
            .collect(),
        ..KubeArgs::default()
    };
    let namespace = value_of(done, &["-n", "--namespace"]).map(str::to_string);
    let mut plan = Plan {
        want: Want::Nothing,
        partial: partial.clone(),
        lead: String::new(),
        kube,
        namespace,
    };
    if let Some(arg) = expecting {
        plan.want = want_for(arg);
    } else if let Some((flag, value)) = partial.split_once('=').filter(|(f, _)| f.starts_with("--")) {
        if let Some(arg) = find_arg(cmd, flag) {
            plan.want = want_for(arg);
            plan.lead = format!("{flag}=");
            plan.partial = value.to_string();
        }
    } else if partial.starts_with('-') {
        let mut flags: Vec<String> = cmd
            .get_arguments()
            .filter(|a| !a.is_hide_set())
            .flat_map(|a| {
                let long = a.get_long().map(|l| format!("--{l}"));
                let short = a.get_short().map(|s| format!("-{s}"));
                long.into_iter().chain(short)
            })
            .collect();
        flags.sort();
        plan.want = Want::Fixed(flags);
    } else if cmd.has_subcommands() {
        plan.want = Want::Fixed(
            cmd.get_subcommands()
                .filter(|s| !s.is_hide_set())
                .map(|s| s.get_name().to_string())
                .collect(),
        );
    } else if let Some(arg) = cmd.get_positionals().next() {
        plan.want = want_for(arg);
    }
    plan
}

/// Names read from the cluster for one completion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub namespaces: Vec<String>,
    /// Pods of the namespace, with their declared container ports.
    pub pods: Vec<(String, Vec<u16>)>,
    /// Services of the namespace, with their ports.
    pub services: Vec<(String, Vec<u16>)>,
    /// Workloads of the namespace, by kind.
    pub workloads: Vec<(SourceKind, String)>,
    pub contexts: Vec<String>,
}

/// The candidates for `plan` given what the cluster holds, and cobra's directive.
pub fn answer(plan: &Plan, names: &Names) -> (Vec<String>, u32) {
    let (mut candidates, directive): (Vec<String>, u32) = match &plan.want {
        Want::Fixed(values) => (values.clone(), NO_FILE),
        Want::Files => return (vec![], FILES),
        Want::Nothing => (vec![], NO_FILE),
        Want::Namespaces => (names.namespaces.clone(), NO_FILE),
        Want::Contexts => (names.contexts.clone(), NO_FILE),
        Want::Source => (source_candidates(&plan.partial, names), NO_FILE),
        Want::Target => (target_candidates(&plan.partial, names), NO_FILE),
    };
    candidates.retain(|c| c.starts_with(&plan.partial));
    let directive = if candidates.iter().any(|c| c.ends_with('/')) {
        directive | NO_SPACE
    } else {
        directive
    };
    let candidates = candidates
        .into_iter()
        .map(|c| format!("{}{c}", plan.lead))
        .collect();
    (candidates, directive)
}

const SOURCE_TYPES: [&str; 5] = ["pod/", "deploy/", "sts/", "ds/", "rs/"];

fn source_candidates(partial: &str, names: &Names) -> Vec<String> {
    match partial.split_once('/') {
        Some((head, _)) => match SourceKind::from_alias(head) {
            Some(SourceKind::Pod) => names.pods.iter().map(|(p, _)| format!("{head}/{p}")).collect(),
            Some(kind) => names
                .workloads
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, n)| format!("{head}/{n}"))
                .collect(),
            // `NS/POD`: the pods were read from that namespace.
            None => names.pods.iter().map(|(p, _)| format!("{head}/{p}")).collect(),
        },
        None => {
            let mut out: Vec<String> = names.pods.iter().map(|(p, _)| p.clone()).collect();
            out.extend(SOURCE_TYPES.iter().map(|t| t.to_string()));
            out.extend(names.namespaces.iter().map(|n| format!("{n}/")));
            out
        }
    }
}

fn target_candidates(partial: &str, names: &Names) -> Vec<String> {
    let with_ports = |kind: &str, items: &[(String, Vec<u16>)]| -> Vec<String> {
        items
            .iter()
            .flat_map(|(name, ports)| ports.iter().map(move |p| format!("{kind}/{name}:{p}")))
            .collect()
    };
    let mut out = with_ports("svc", &names.services);
    if partial.starts_with("pod/") {
        out = with_ports("pod", &names.pods);
    } else if !partial.starts_with("svc/") {
        out.extend(["svc/".to_string(), "pod/".to_string()]);
    }
    out
}

/// cobra's output: the candidates, one per line, then `:DIRECTIVE`.
pub fn cobra(candidates: &[String], directive: u32) -> String {
    let mut out: String = candidates.iter().map(|c| format!("{c}\n")).collect();
    out.push_str(&format!(":{directive}\n"));
    out
}

async fn list<K>(api: Api<K>) -> Vec<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn sorted_names<K: kube::Resource>(items: &[K]) -> Vec<String> {
    let mut names: Vec<String> = items.iter().filter_map(|i| i.meta().name.clone()).collect();
    names.sort();
    names
}

/// Reads what `plan` needs from the cluster; an unreachable cluster gives no names.
async fn read_names(plan: &Plan) -> Names {
    let mut names = Names::default();
    if plan.want == Want::Contexts {
        let kubeconfig = match &plan.kube.kubeconfig {
            Some(path) => kube::config::Kubeconfig::read_from(path).ok(),
            None => kube::config::Kubeconfig::read().ok(),
        };
        names.contexts = kubeconfig
            .map(|k| k.contexts.into_iter().map(|c| c.name).collect())
            .unwrap_or_default();
        return names;
    }
    if !matches!(plan.want, Want::Namespaces | Want::Source | Want::Target) {
        return names;
    }
    let Ok(mut config) = plan.kube.config().await else {
        return names;
    };
    config.connect_timeout = Some(Duration::from_secs(2));
    config.read_timeout = Some(Duration::from_secs(5));
    let default_ns = config.default_namespace.clone();
    let Ok(client) = crate::kube_args::client(config) else {
        return names;
    };
    // `NS/POD`: a first part that is not a type word is the namespace to read pods from.
    let typed_ns = plan
        .partial
        .split_once('/')
        .map(|(head, _)| head)
        .filter(|head| plan.want == Want::Source && SourceKind::from_alias(head).is_none());
    let ns = typed_ns
        .map(str::to_string)
        .or(plan.namespace.clone())
        .unwrap_or(default_ns);
    let (namespaces, pods, services) = tokio::join!(
        list(Api::<Namespace>::all(client.clone())),
        list(Api::<Pod>::namespaced(client.clone(), &ns)),
        list(Api::<Service>::namespaced(client.clone(), &ns)),
    );
    names.namespaces = sorted_names(&namespaces);
    names.pods = pods
        .iter()
        .filter_map(|p| {
            let ports = p
                .spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten());
            let ports = ports
                .filter_map(|p| u16::try_from(p.container_port).ok())
                .collect();
            Some((p.metadata.name.clone()?, ports))
        })
        .collect();
    names.pods.sort();
    names.services = services
        .iter()
        .filter_map(|s| {
            let ports = s.spec.as_ref()?.ports.iter().flatten();
            let ports = ports.filter_map(|p| u16::try_from(p.port).ok()).collect();
            Some((s.metadata.name.clone()?, ports))
        })
        .collect();
    names.services.sort();
    if plan.want == Want::Source && typed_ns.is_none() {
        let (deploy, sts, ds, rs) = tokio::join!(
            list(Api::<Deployment>::namespaced(client.clone(), &ns)),
            list(Api::<StatefulSet>::namespaced(client.clone(), &ns)),
            list(Api::<DaemonSet>::namespaced(client.clone(), &ns)),
            list(Api::<ReplicaSet>::namespaced(client.clone(), &ns)),
        );
        for (kind, list) in [
            (SourceKind::Deployment, sorted_names(&deploy)),
            (SourceKind::StatefulSet, sorted_names(&sts)),
            (SourceKind::DaemonSet, sorted_names(&ds)),
            (SourceKind::ReplicaSet, sorted_names(&rs)),
        ] {
            names.workloads.extend(list.into_iter().map(|n| (kind, n)));
        }
    }
    names
}

/// The `kubectl_complete-netdiag` executable.
pub fn main() -> ExitCode {
    let words: Vec<String> = std::env::args().skip(1).collect();
    let plan = plan(&words);
    let names = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(read_names(&plan)),
        Err(_) => Names::default(),
    };
    let (candidates, directive) = answer(&plan, &names);
    print!("{}", cobra(&candidates, directive));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        let mut w: Vec<String> = s.split(' ').filter(|w| !w.is_empty()).map(String::from).collect();
        if s.ends_with(' ') {
            w.push(String::new());
        }
        w
    }

    fn names() -> Names {
        Names {
            namespaces: vec!["default".into(), "shop".into()],
            pods: vec![("checkout".into(), vec![]), ("payments-0".into(), vec![8080])],
            services: vec![("payments".into(), vec![80, 443])],
            workloads: vec![(SourceKind::Deployment, "checkout".into())],
            contexts: vec!["lab".into()],
        }
    }

    fn complete(line: &str) -> (Vec<String>, u32) {
        answer(&plan(&words(line)), &names())
    }

    #[test]
    fn the_first_word_completes_to_subcommands() {
        let (c, d) = complete("");
        for sub in ["check", "policy", "version", "status", "completion"] {
            assert!(c.contains(&sub.to_string()), "{c:?}");
        }
        assert_eq!(d, NO_FILE);
        assert_eq!(complete("st").0, ["status"]);
    }

    #[test]
    fn flags_of_the_subcommand_complete_after_a_dash() {
        let (c, _) = complete("check --fr");
        assert_eq!(c, ["--from"]);
        let (c, _) = complete("check --f");
        assert!(
            c.contains(&"--for".to_string()) && c.contains(&"--from".to_string()),
            "{c:?}"
        );
        let (c, _) = complete("check -");
        assert!(
            c.contains(&"--to".to_string()) && c.contains(&"-o".to_string()),
            "{c:?}"
        );
    }

    #[test]
    fn from_offers_pods_types_and_namespaces() {
        let (c, d) = complete("check --from ");
        assert!(c.contains(&"checkout".to_string()), "{c:?}");
        assert!(
            c.contains(&"deploy/".to_string()) && c.contains(&"shop/".to_string()),
            "{c:?}"
        );
        assert_eq!(d, NO_FILE | NO_SPACE);
        assert_eq!(complete("check --from deploy/").0, ["deploy/checkout"]);
        assert_eq!(complete("check --from pod/pay").0, ["pod/payments-0"]);
        assert_eq!(complete("check --from=pod/pay").0, ["--from=pod/payments-0"]);
    }

    #[test]
    fn to_offers_service_and_pod_ports() {
        let (c, _) = complete("check --from checkout --to svc/");
        assert_eq!(c, ["svc/payments:80", "svc/payments:443"]);
        assert_eq!(complete("check --to pod/").0, ["pod/payments-0:8080"]);
    }

    #[test]
    fn enumerated_values_namespaces_and_files() {
        assert_eq!(complete("check -o ya").0, ["yaml"]);
        assert_eq!(complete("check -n s").0, ["shop"]);
        assert_eq!(
            complete("completion ").0,
            ["bash", "elvish", "fish", "powershell", "zsh"]
        );
        assert_eq!(complete("check --kubeconfig ").1, FILES);
        assert_eq!(complete("policy explain --context ").0, ["lab"]);
    }

    #[test]
    fn connection_flags_among_the_words_are_kept_for_the_cluster_read() {
        let p = plan(&words("check --context lab -n shop --from "));
        assert_eq!(p.kube.context.as_deref(), Some("lab"));
        assert_eq!(p.namespace.as_deref(), Some("shop"));
        assert_eq!(p.want, Want::Source);
    }

    #[test]
    fn cobra_output_ends_with_the_directive() {
        assert_eq!(cobra(&["a".into(), "b".into()], 4), "a\nb\n:4\n");
    }
}
