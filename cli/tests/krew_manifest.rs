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

/// The sha256 the stand-in archives hash to.
const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// krew-release-bot's `addURIAndSha url tag` (pkg/source/template.go): the URL, itself a
/// template of `.TagName`, expanded, then `uri: URL` and, on the next line at four spaces,
/// `sha256: HASH` — four spaces whatever the indentation of the action's line.
fn add_uri_and_sha(url: &str, tag: &str) -> String {
    let uri = render_text(url, tag).expect("the URL template renders");
    format!("uri: {uri}\n    sha256: {SHA}")
}

/// The bot's `indent spaces text`: its legacy four-space `sha256:` brought back to the margin,
/// every line after the first moved right by `spaces`, the whole trimmed (the first line stays
/// where the action was written).
fn indent(spaces: usize, text: &str) -> String {
    let text = text.replace("    sha256:", "sha256:");
    let pad = " ".repeat(spaces);
    format!("{pad}{}", text.replace('\n', &format!("\n{pad}")))
        .trim()
        .to_string()
}

/// One action's pipeline, as the bot's Go template evaluates the forms this manifest may use:
/// `.TagName`, `addURIAndSha "URL" .TagName`, each optionally piped to `indent N`.
fn eval(action: &str, tag: &str) -> Result<String, String> {
    let mut stages = action.split(" | ").map(str::trim);
    let first = stages.next().unwrap_or_default();
    let mut value = if first == ".TagName" {
        tag.to_string()
    } else if let Some(rest) = first.strip_prefix("addURIAndSha \"") {
        let (url, args) = rest
            .split_once('"')
            .ok_or_else(|| format!("unterminated string in {action:?}"))?;
        if args.trim() != ".TagName" {
            return Err(format!("addURIAndSha takes the URL and .TagName: {action:?}"));
        }
        add_uri_and_sha(url, tag)
    } else {
        return Err(format!("function or field not known to the bot: {action:?}"));
    };
    for stage in stages {
        let spaces = stage
            .strip_prefix("indent ")
            .and_then(|n| n.trim().parse::<usize>().ok())
            .ok_or_else(|| format!("not a stage the bot has: {stage:?}"))?;
        value = indent(spaces, &value);
    }
    Ok(value)
}

/// Go's text/template over `text`: each `{{ … }}` action (a quoted string inside one may hold
/// `{{ }}` of its own) replaced by its value.
fn render_text(text: &str, tag: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let body = &rest[open + 2..];
        let mut in_string = false;
        let mut close = None;
        for (i, c) in body.char_indices() {
            match c {
                '"' => in_string = !in_string,
                '}' if !in_string && body[i..].starts_with("}}") => {
                    close = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let close = close.ok_or("unclosed action")?;
        out.push_str(&eval(body[..close].trim(), tag)?);
        rest = &body[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn template() -> String {
    std::fs::read_to_string(repo().join("deploy/krew/netdiag.yaml")).unwrap()
}

/// The manifest as krew-release-bot renders the template for the release `tag`.
fn rendered(tag: &str) -> Value {
    let text = render_text(&template(), tag).expect("the template renders");
    serde_yaml_ng::from_str(&text)
        .unwrap_or_else(|e| panic!("the rendered manifest is not YAML ({e}):\n{text}"))
}

#[test]
fn add_uri_and_sha_writes_sha256_at_four_spaces_unless_indented() {
    // A platform at the usual 6-space indentation: without `indent 6` sha256 lands at 4.
    let line = "      {{addURIAndSha \"https://h/{{ .TagName }}/a_{{ .TagName }}.tar.gz\" .TagName }}";
    assert_eq!(
        render_text(line, "v1.2.3").unwrap(),
        format!("      uri: https://h/v1.2.3/a_v1.2.3.tar.gz\n    sha256: {SHA}")
    );
    let line = "      {{addURIAndSha \"https://h/{{ .TagName }}/a.tar.gz\" .TagName | indent 6 }}";
    assert_eq!(
        render_text(line, "v1.2.3").unwrap(),
        format!("      uri: https://h/v1.2.3/a.tar.gz\n      sha256: {SHA}")
    );
    assert!(render_text("{{ nosuchfunction }}", "v1").is_err());
}

#[test]
fn the_sha256_of_every_platform_sits_beside_its_uri() {
    let m = rendered("v0.1.0");
    for p in m["spec"]["platforms"].as_sequence().unwrap() {
        let platform = p.as_mapping().unwrap();
        for key in ["selector", "uri", "sha256", "bin", "files"] {
            assert!(platform.contains_key(key), "platform without {key}: {p:?}");
        }
    }
    // The template without `| indent 6`, as it was: the bot's output is not a manifest.
    let unindented = template().replace(" .TagName | indent 6 }}", " .TagName }}");
    let text = render_text(&unindented, "v0.1.0").unwrap();
    assert!(serde_yaml_ng::from_str::<Value>(&text).is_err(), "{text}");
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
    let built: Vec<(&str, &str)> = wf["jobs"]["plugin"]["strategy"]["matrix"]["include"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (str_of(e, "os"), str_of(e, "arch")))
        .collect();
    assert!(workflow.contains("kubectl-netdiag_${GITHUB_REF_NAME}_${{ matrix.os }}_${{ matrix.arch }}"));
    let m = rendered("v9.8.7");
    let mut offered = Vec::new();
    for p in m["spec"]["platforms"].as_sequence().unwrap() {
        let os = str_of(&p["selector"]["matchLabels"], "os");
        let arch = str_of(&p["selector"]["matchLabels"], "arch");
        assert!(
            built.contains(&(os, arch)),
            "the workflow builds no {os}/{arch} archive"
        );
        offered.push((os, arch));
        let uri = str_of(p, "uri");
        let archive = format!("kubectl-netdiag_v9.8.7_{os}_{arch}.tar.gz");
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
    offered.sort();
    let mut built = built;
    built.sort();
    assert_eq!(offered, built, "every archive built is offered, Linux and macOS");
    assert!(workflow.contains("-czf \"$name.tar.gz\" kubectl-netdiag kubectl_complete-netdiag LICENSE"));
    let cargo = std::fs::read_to_string(repo().join("cli/Cargo.toml")).unwrap();
    assert!(
        cargo.contains("name = \"kubectl_complete-netdiag\""),
        "the completion helper is a binary"
    );
    assert!(repo().join("LICENSE").exists());
}
