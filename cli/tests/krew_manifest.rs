//! The krew manifest (`deploy/krew/netdiag.yaml`), rendered as krew-release-bot renders it, meets
//! krew's validation rules (krew's `pkg/index/validation`: name, semver version, platforms with
//! selector, https uri, sha256, bin among the extracted files, a license file extracted), and
//! names exactly the archives and files the release workflow builds.

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The template with `{{ .TagName }}` and `addURIAndSha` expanded as the release bot does.
fn rendered(tag: &str) -> Value {
    let template = std::fs::read_to_string(repo().join("deploy/krew/netdiag.yaml")).unwrap();
    let mut lines = Vec::new();
    for line in template.lines() {
        let line = line.replace("{{ .TagName }}", tag);
        match line.trim_start().strip_prefix("{{addURIAndSha \"") {
            Some(rest) => {
                let indent = &line[..line.len() - line.trim_start().len()];
                let uri = rest.split('"').next().unwrap();
                lines.push(format!("{indent}uri: {uri}"));
                lines.push(format!("{indent}sha256: {}", "0123456789abcdef".repeat(4)));
            }
            None => lines.push(line),
        }
    }
    serde_yaml_ng::from_str(&lines.join("\n")).expect("the rendered manifest is YAML")
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is missing or not a string: {v:?}"))
}

#[test]
fn the_rendered_manifest_meets_krews_validation_rules() {
    let m = rendered("v0.1.0");
    assert_eq!(
        str_of(&m, "apiVersion"),
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(str_of(&m, "kind"), "Plugin");
    assert_eq!(
        str_of(&m["metadata"], "name"),
        "netdiag",
        "the name is the file's and the command's"
    );
    let spec = &m["spec"];
    let version = str_of(spec, "version");
    let semver = version.strip_prefix('v').expect("krew versions start with v");
    assert_eq!(
        semver.split('.').filter(|p| p.parse::<u64>().is_ok()).count(),
        3,
        "{version}"
    );
    assert!(str_of(spec, "homepage").starts_with("https://"));
    assert!(!str_of(spec, "shortDescription").is_empty() && str_of(spec, "shortDescription").len() <= 60);
    assert!(!str_of(spec, "description").is_empty());
    let platforms = spec["platforms"].as_sequence().unwrap();
    assert!(!platforms.is_empty());
    for p in platforms {
        let labels = p["selector"]["matchLabels"].as_mapping().expect("a selector");
        assert!(labels.contains_key("os") && labels.contains_key("arch"), "{p:?}");
        let uri = str_of(p, "uri");
        assert!(uri.starts_with("https://") && uri.ends_with(".tar.gz"), "{uri}");
        let sha = str_of(p, "sha256");
        assert!(
            sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()),
            "{sha}"
        );
        let files: Vec<&str> = p["files"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|f| str_of(f, "from"))
            .collect();
        assert!(
            files.contains(&str_of(p, "bin")),
            "bin must be extracted: {files:?}"
        );
        assert!(
            files.contains(&"LICENSE"),
            "krew requires the license file to be extracted: {files:?}"
        );
        for f in p["files"].as_sequence().unwrap() {
            assert_eq!(str_of(f, "to"), ".");
        }
    }
}

#[test]
fn the_caveats_install_the_agent_from_a_tagged_url_without_a_checkout() {
    let m = rendered("v0.1.0");
    let caveats = str_of(&m["spec"], "caveats");
    assert!(
        caveats.contains("kubectl apply -k 'github.com/netdiag/netdiag/deploy?ref=v0.1.0'"),
        "{caveats}"
    );
    assert!(repo().join("deploy/kustomization.yaml").exists());
}

#[test]
fn the_release_workflow_builds_every_archive_and_file_the_manifest_names() {
    let workflow = std::fs::read_to_string(repo().join(".github/workflows/release.yml")).unwrap();
    let wf: Value = serde_yaml_ng::from_str(&workflow).unwrap();
    let arches: Vec<&str> = wf["jobs"]["plugin"]["strategy"]["matrix"]["include"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| str_of(e, "arch"))
        .collect();
    assert!(workflow.contains("kubectl-netdiag_${GITHUB_REF_NAME}_linux_${{ matrix.arch }}"));
    let m = rendered("v9.8.7");
    for p in m["spec"]["platforms"].as_sequence().unwrap() {
        let arch = str_of(&p["selector"]["matchLabels"], "arch");
        assert_eq!(str_of(&p["selector"]["matchLabels"], "os"), "linux");
        assert!(arches.contains(&arch), "the workflow builds no {arch} archive");
        let uri = str_of(p, "uri");
        let archive = format!("kubectl-netdiag_v9.8.7_linux_{arch}.tar.gz");
        assert!(
            uri.ends_with(&format!("/releases/download/v9.8.7/{archive}")),
            "{uri}"
        );
        for file in p["files"].as_sequence().unwrap() {
            let from = str_of(file, "from");
            assert!(
                ["kubectl-netdiag", "kubectl_complete-netdiag", "LICENSE"].contains(&from),
                "the archive holds no {from}"
            );
        }
    }
    assert!(workflow.contains("-czf \"$name.tar.gz\" kubectl-netdiag kubectl_complete-netdiag LICENSE"));
    let cargo = std::fs::read_to_string(repo().join("cli/Cargo.toml")).unwrap();
    assert!(
        cargo.contains("name = \"kubectl_complete-netdiag\""),
        "the completion helper is a binary"
    );
    assert!(repo().join("LICENSE").exists());
}
