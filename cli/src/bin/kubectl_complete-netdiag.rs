//! The completion helper kubectl (≥ 1.26) runs for the plugin: `kubectl_complete-netdiag WORDS…`
//! prints cobra-style completions for the words after `kubectl netdiag`.

fn main() -> std::process::ExitCode {
    netdiag::complete::main()
}
