use clap::Parser;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,netlink_packet_route=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(err) = netdiag_agent::cli::run(netdiag_agent::cli::Cli::parse()) {
        eprintln!("netdiag-agent: {}", netdiag_agent::cli::error_chain(err.as_ref()));
        std::process::exit(1);
    }
}
