fn main() -> std::process::ExitCode {
    netdiag_lab::cli::main()
}
