fn main() -> std::process::ExitCode {
    relais::cli::main()
}
