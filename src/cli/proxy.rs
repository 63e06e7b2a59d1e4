//! `relais proxy`: the TCP fault proxy of `crate::proxy` from the shell,
//! with the toxics given on the command line, until Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::outln;
use crate::proxy::{Protocol, Proxy, Toxic};

/// `relais proxy` arguments.
#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// Address to listen on: `HOST:PORT`, or a bare port on loopback (default: a free loopback port, printed).
    #[arg(long, default_value = "127.0.0.1:0", value_parser = listen_addr)]
    pub listen: SocketAddr,
    /// Where connections go: `HOST:PORT` (the device or the broker).
    #[arg(long, value_parser = upstream_addr)]
    pub upstream: String,
    /// What the connections speak: the Modbus-aware and MQTT-aware toxics need `modbus` or `mqtt`.
    #[arg(long, value_enum, default_value_t = ProtocolArg::Tcp)]
    pub protocol: ProtocolArg,
    /// A toxic active from the start, `KIND[,key=value…]`, e.g. `latency,latency=200ms,jitter=50ms,direction=downstream`,
    /// `bandwidth,bytes_per_s=1000`, `black_hole`, `reset`, `slow_close,delay=2s`, `slicer,bytes=1,delay=5ms`,
    /// `limit_data,bytes=100`, `half_open`, `down`, `late_response`, `wrong_tid`, `duplicate_response`,
    /// `refuse_connect` (src/proxy/README.md). Repeatable.
    #[arg(long = "toxic", value_name = "KIND[,key=value…]", value_parser = Toxic::parse_cli)]
    pub toxics: Vec<Toxic>,
    /// Seed of the jitter.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `--protocol` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProtocolArg {
    /// Bytes only.
    Tcp,
    /// Modbus TCP.
    Modbus,
    /// MQTT 3.1.1.
    Mqtt,
}

/// `--listen`: `HOST:PORT`, or a bare port on 127.0.0.1.
fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| format!("{s:?}: write HOST:PORT with an IP address (127.0.0.1:5020) or a port"))
}

/// `--upstream`: `HOST:PORT` with a port in 1..=65535 (the host is resolved per connection,
/// so a name that does not resolve yet is allowed; a malformed address is refused at start).
fn upstream_addr(s: &str) -> Result<String, String> {
    let bad = || format!("{s:?}: write HOST:PORT, e.g. 127.0.0.1:5020 or plc.local:502");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match port.parse::<u16>() {
        Ok(p) if p > 0 && !host.is_empty() && !host.contains(char::is_whitespace) => Ok(s.to_string()),
        _ => Err(bad()),
    }
}

/// Runs the proxy until SIGINT/SIGTERM: exit 0, or 1 when the address
/// cannot be bound.
pub fn run(a: ProxyArgs) -> ExitCode {
    let protocol = match a.protocol {
        ProtocolArg::Tcp => Protocol::Tcp,
        ProtocolArg::Modbus => Protocol::Modbus,
        ProtocolArg::Mqtt => Protocol::Mqtt,
    };
    // A protocol-aware toxic on a proxy of another protocol would do nothing: say so.
    for t in &a.toxics {
        let needs = match t {
            Toxic::LateResponse | Toxic::WrongTid | Toxic::DuplicateResponse => Some((Protocol::Modbus, "modbus")),
            Toxic::RefuseConnect => Some((Protocol::Mqtt, "mqtt")),
            _ => None,
        };
        if let Some((p, name)) = needs
            && p != protocol
        {
            eprintln!("--toxic {}: needs --protocol {name} (it acts on {name} frames; on this proxy it would do nothing)", t.kind());
            return ExitCode::from(2);
        }
    }
    let res = super::block_on(async {
        let proxy = Proxy::start(a.listen, a.upstream.clone(), protocol, a.seed).await?;
        outln!("proxy listening on {} → {} ({:?}); Ctrl-C to stop", proxy.local_addr(), a.upstream, a.protocol);
        if a.toxics.is_empty() {
            outln!("no toxic: connections are forwarded unchanged");
        }
        for t in a.toxics {
            outln!("toxic {}: {t:?}", t.kind());
            proxy.set(t);
        }
        let stop = CancellationToken::new();
        crate::app::cancel_on_signal(stop.clone());
        stop.cancelled().await;
        drop(proxy);
        outln!("proxy stopped");
        anyhow::Ok(())
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::from(1)
        }
    }
}
