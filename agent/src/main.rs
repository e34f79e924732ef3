//! `netdiag-agent`: parse the flags, set up logging, run the subcommand.

use std::ffi::OsString;
use std::io::IsTerminal;

use clap::Parser;
use netdiag_agent::cli::{ANNOUNCE_TARGET, Cli, LogFormat};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => usage_error(err),
    };
    init_logs(cli.log_format);
    if let Err(err) = netdiag_agent::cli::run(cli) {
        tracing::error!("netdiag-agent: {}", netdiag_engine::error_chain(err.as_ref()));
        std::process::exit(1);
    }
}

/// Help and `--version` print as clap prints them; a usage error under `--log-format json` is
/// logged like every other line, so a mistyped DaemonSet variable is still one JSON object.
fn usage_error(err: clap::Error) -> ! {
    let format = requested_format(std::env::args_os(), std::env::var_os("NETDIAG_LOG_FORMAT"));
    if !err.use_stderr() || format == LogFormat::Text {
        err.exit()
    }
    init_logs(LogFormat::Json);
    tracing::error!("netdiag-agent: {}", err.render().to_string().trim_end());
    std::process::exit(err.exit_code());
}

/// The log format asked for on a command line clap refused: the flag (last one wins), else the
/// environment variable, as clap would have read them.
fn requested_format(args: impl IntoIterator<Item = OsString>, env: Option<OsString>) -> LogFormat {
    let args: Vec<OsString> = args.into_iter().collect();
    let from_args = args.iter().enumerate().rev().find_map(|(i, arg)| {
        let arg = arg.to_str()?;
        match arg.strip_prefix("--log-format") {
            Some("") => args.get(i + 1)?.to_str().map(str::to_string),
            Some(value) => value.strip_prefix('=').map(str::to_string),
            None => None,
        }
    });
    let value = from_args.or_else(|| env.and_then(|v| v.into_string().ok()));
    match value.as_deref() {
        Some("json") => LogFormat::Json,
        _ => LogFormat::Text,
    }
}

/// Logs to stderr, except the lines announcing where the agent listens: those go to stdout,
/// where whoever started it with port 0 reads the port. Under json every line of both is one
/// JSON object, panics included.
fn init_logs(format: LogFormat) {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let writer = std::io::stdout
        .with_filter(|meta| meta.target() == ANNOUNCE_TARGET)
        .or_else(std::io::stderr);
    let logs = tracing_subscriber::fmt()
        .with_env_filter(log_filter(std::env::var("RUST_LOG").ok()))
        .with_writer(writer);
    match format {
        LogFormat::Json => {
            logs.json().init();
            std::panic::set_hook(Box::new(|panic| {
                tracing::error!(target: "netdiag_agent::panic", "{panic}");
            }));
        }
        // Colour only on a terminal: a container log or a file gets plain text, and so does a
        // caller reading the announcement from a piped stdout.
        LogFormat::Text => {
            let terminal = std::io::stderr().is_terminal() && std::io::stdout().is_terminal();
            logs.with_ansi(terminal).init()
        }
    }
}

/// `RUST_LOG` (default `info`), with netlink-packet-route's warnings about kernel attributes newer
/// than it knows (one per link read) kept quiet unless `RUST_LOG` names that crate, and the
/// listening announcements kept at any level (a caller waits for them).
fn log_filter(rust_log: Option<String>) -> tracing_subscriber::EnvFilter {
    let spec = rust_log.unwrap_or_else(|| "info".into());
    let quiet = (!spec.contains("netlink_packet_route")).then_some(",netlink_packet_route=error");
    let announce = format!(",{ANNOUNCE_TARGET}=info");
    tracing_subscriber::EnvFilter::try_new(format!("{spec}{}{announce}", quiet.unwrap_or_default()))
        .unwrap_or_else(|_| format!("info,netlink_packet_route=error{announce}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format_of(args: &[&str], env: Option<&str>) -> LogFormat {
        requested_format(args.iter().map(OsString::from), env.map(OsString::from))
    }

    #[test]
    fn the_log_format_of_a_refused_command_line_is_read_as_clap_reads_it() {
        let serve = ["netdiag-agent", "serve", "--bogus"];
        assert_eq!(format_of(&serve, None), LogFormat::Text);
        assert_eq!(format_of(&serve, Some("json")), LogFormat::Json);
        let flag = ["netdiag-agent", "--log-format", "json", "serve", "--bogus"];
        assert_eq!(format_of(&flag, None), LogFormat::Json);
        assert_eq!(
            format_of(&["a", "--log-format=json"], Some("text")),
            LogFormat::Json
        );
        assert_eq!(
            format_of(&["a", "--log-format=text"], Some("json")),
            LogFormat::Text
        );
    }
}
