//! The `relais` binary: see [`relais::cli`].

fn main() -> std::process::ExitCode {
    // rustls with the ring provider only (GUIDE §4): the process default, so
    // every TLS client built without an explicit provider uses it too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    relais::cli::main()
}
