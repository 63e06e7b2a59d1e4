//! The PostgreSQL sink through faults: a server of the test's own (initdb
//! and pg_ctl on a free port) stopped hard and started again, and `kill -9`
//! of the `relais` binary in the middle of a COPY. Afterwards the tables hold
//! every accepted record exactly once: count(*) = count(DISTINCT seq) =
//! accepted, no gap.

#![allow(unsafe_code)] // geteuid(2): initdb refuses to run as root

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use relais::config::BufferConfig;
use relais::model::TagMeta;

use crate::cloud::Chain;
use crate::common::{eventually, free_port, kill, meta, spawn_relais};
use crate::postgres::{LOCAL_PG, assert_exactly_once, client, pg_sink, schema_name, spawn};

unsafe extern "C" {
    fn geteuid() -> u32;
}

/// A PostgreSQL cluster of the test's own, on a free loopback port.
pub struct PgCluster {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Extra server options (TLS).
    opts: String,
}

/// The newest `/usr/lib/postgresql/*/bin`.
fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir("/usr/lib/postgresql").ok()?.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect();
    dirs.sort_by_key(|d| d.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok()));
    dirs.into_iter().rev().find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
}

impl PgCluster {
    /// initdb + start; `None` (skipped) without the binaries unless `RELAIS_REQUIRE_POSTGRES=1`.
    pub fn start() -> Option<PgCluster> {
        PgCluster::start_with(None)
    }

    /// Like [`PgCluster::start`]; with `tls` (certificate and key PEM), the
    /// server also accepts TLS.
    pub fn start_with(tls: Option<(String, String)>) -> Option<PgCluster> {
        PgCluster::start_opts(tls, "")
    }

    /// Like [`PgCluster::start_with`], with `extra` server options
    /// (` -c shared_preload_libraries=timescaledb`).
    pub fn start_opts(tls: Option<(String, String)>, extra: &str) -> Option<PgCluster> {
        let Some(bin) = pg_bin() else {
            if std::env::var("RELAIS_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("no /usr/lib/postgresql/*/bin/initdb but RELAIS_REQUIRE_POSTGRES=1");
            }
            eprintln!("SKIPPED: no /usr/lib/postgresql/*/bin/initdb");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let mut opts = extra.to_string();
        if let Some((cert, key)) = &tls {
            use std::os::unix::fs::PermissionsExt;
            let (c, k) = (dir.path().join("server.crt"), dir.path().join("server.key"));
            std::fs::write(&c, cert).unwrap();
            std::fs::write(&k, key).unwrap();
            std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
            opts += &format!(" -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}", c.display(), k.display());
        }
        if unsafe { geteuid() } == 0 {
            // initdb and postgres refuse root: the files belong to `postgres`.
            let st = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap();
            assert!(st.success(), "chown to postgres");
        }
        let c = PgCluster { port: free_port(), bin, dir, opts };
        c.run("initdb", &["-D", &c.data(), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"]);
        c.pg_ctl_start();
        Some(c)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if unsafe { geteuid() } == 0 {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "{tool} {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }

    fn pg_ctl_start(&self) {
        let opts = format!("-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off{}", self.port, self.dir.path().display(), self.opts);
        let log = self.dir.path().join("log").display().to_string();
        self.run("pg_ctl", &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "-t", "60", "start"]);
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops at once, like a crash (`pg_ctl stop -m immediate`).
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }

    /// Starts again on the same port.
    pub fn restart(&self) {
        self.pg_ctl_start();
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = std::panic::catch_unwind(|| self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]));
    }
}

#[tokio::test]
async fn server_stopped_and_restarted_mid_stream_loses_and_doubles_nothing() {
    let Some(pg) = PgCluster::start() else { return };
    let c = client(&pg.url()).await.expect("the test's own cluster answers");
    let schema = schema_name("restart");
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::new("pg", BufferConfig::default());
    let meta = TagMeta::new("oven", "temp", Some("Cel"));
    spawn(&mut chain, pg_sink("pg", &pg.url(), &schema, "batch_max_records = 2000", dir.path()));
    chain.push_n(&meta, 0, 20_000, Duration::ZERO).await;
    // Stopped once the sink is connected and loading (connecting two
    // connections may take longer than the 20,000 pushes).
    assert!(eventually(Duration::from_secs(30), || chain.cursor() > chain.base).await, "{:?}", chain.stats.error());
    drop(c);
    pg.stop();
    assert!(eventually(Duration::from_secs(30), || !chain.stats.connected.load(Ordering::Relaxed)).await, "the stop is noticed");
    // Acquisition goes on while the server is down.
    chain.push_n(&meta, 20_000, 10_000, Duration::ZERO).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.restart();
    chain.push_n(&meta, 30_000, 10_000, Duration::ZERO).await;
    let head = chain.head();
    assert!(eventually(Duration::from_secs(60), || chain.cursor() >= head).await, "cursor {} never reached {head}", chain.cursor());
    chain.stop().await;
    assert!(chain.stats.connects.load(Ordering::Relaxed) >= 2, "reconnected");
    let c = client(&pg.url()).await.unwrap();
    assert_exactly_once(&c, &schema, chain.base + 1, head).await;
}

fn write_config(dir: &Path, sim_port: u16, schema: &str) -> PathBuf {
    let mut tags = String::new();
    for i in 0..100 {
        tags += &format!("[[device.tag]]\nname = \"t{i}\"\ntable = \"holding\"\naddress = {i}\n");
    }
    let text = format!(
        "[gateway]\nid = \"gw1\"\ndata_dir = \"{data}\"\nstatus_interval = \"0s\"\nhealth_interval = \"0s\"\n\n\
         [[device]]\nname = \"line\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{sim_port}\"\npoll_interval = \"10ms\"\n{tags}\n\
         [[sink]]\nname = \"pg\"\ntype = \"postgres\"\nurl = \"{LOCAL_PG}\"\nschema = \"{schema}\"\nreconnect_max = \"1s\"\nbatch_max_records = 50000\n",
        data = dir.join("data").display()
    );
    let p = dir.join("relais.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn station(port: u16) -> String {
    let mut s = format!("[[station]]\nname = \"line\"\nlisten = \"127.0.0.1:{port}\"\ntick = \"10ms\"\n");
    for i in 0..100 {
        s += &format!(
            "[[station.tag]]\nname = \"t{i}\"\ntable = \"holding\"\naddress = {i}\nsignal = {{ kind = \"counter\", start = 0, step = 1, wrap = 60000 }}\n"
        );
    }
    s
}

/// A `relais` process killed and reaped when the test ends, whatever the
/// outcome: a failed assertion never leaves it running.
struct Relais(Child);

impl Drop for Relais {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn kill_9_of_relais_mid_copy_loses_and_doubles_nothing() {
    let Some(c) = client(LOCAL_PG).await else { return };
    let schema = schema_name("kill");
    let sim_port = free_port();
    let _sim = crate::modbus::sim(&station(sim_port)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), sim_port, &schema);
    let data = dir.path().join("data");
    // A backlog: the samples table is locked while relais acquires, so
    // its first INSERT waits and the rest piles up in the buffer.
    let table = format!("{schema}.relais_samples");
    c.batch_execute(&format!("CREATE SCHEMA {schema}; {}", relais::sinks::postgres::schema::create_samples(&table, false))).await.unwrap();
    c.batch_execute(&format!("BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")).await.unwrap();
    let mut child = Relais(spawn_relais(&cfg));
    tokio::time::sleep(Duration::from_secs(4)).await;
    c.batch_execute("COMMIT").await.unwrap();
    // Kill -9 while relais's backend is in a COPY of the backlog.
    let t0 = Instant::now();
    let mut caught = false;
    while t0.elapsed() < Duration::from_secs(20) && !caught {
        // Both of the sink's connections may be in a COPY at once: any row will do.
        let r = c
            .query(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = 'relais gw1 pg' AND state = 'active' AND query LIKE 'COPY%'",
                &[],
            )
            .await
            .unwrap();
        if !r.is_empty() {
            kill(child.0.id(), 9);
            caught = true;
        }
    }
    assert!(caught, "relais was never seen in a COPY");
    let _ = child.0.wait();
    let before = c.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get::<_, i64>(0);
    // Restart, let it catch up, stop gracefully.
    let mut child = Relais(spawn_relais(&cfg));
    tokio::time::sleep(Duration::from_secs(3)).await;
    kill(child.0.id(), 15);
    let t1 = Instant::now();
    while child.0.try_wait().unwrap().is_none() {
        assert!(t1.elapsed() < Duration::from_secs(15), "relais exits on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (first, last) = (meta(&data, "seq_origin") + 1, meta(&data, "last_seq"));
    let stored = assert_exactly_once(&c, &schema, first, last).await;
    assert_eq!(stored, last, "every accepted record is in PostgreSQL");
    assert!(before < (last - first) as i64, "the kill left work for the restart ({before} rows before)");
    c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
}

/// A CA (PEM written to `dir/ca.pem`) and a server certificate for
/// 127.0.0.1 it signed: `(certificate PEM, key PEM)`.
fn server_cert(dir: &Path) -> (String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "relais pg test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &rcgen::Issuer::new(ca_params, &ca_key)).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn tls_checks_the_server_certificate_and_carries_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pg) = PgCluster::start_with(Some(server_cert(dir.path()))) else { return };
    let c = client(&pg.url()).await.expect("the test's own cluster answers");
    // A CA that did not sign the server's certificate: refused, nothing stored.
    let other = tempfile::tempdir().unwrap();
    let _ = server_cert(other.path());
    let mut wrong = Chain::new("pgtls", BufferConfig::default());
    let meta = TagMeta::new("kiln", "temp", Some("Cel"));
    wrong.push_n(&meta, 0, 10, Duration::ZERO).await;
    let ca = other.path().join("ca.pem").display().to_string();
    spawn(&mut wrong, pg_sink("pgtls", &pg.url(), "tls_wrong", &format!("tls = true\nca_file = \"{ca}\""), dir.path()));
    let refused = eventually(Duration::from_secs(10), || wrong.stats.error().is_some_and(|e| e.contains("certificate"))).await;
    assert!(refused, "an unknown CA is refused: {:?}", wrong.stats.error());
    assert_eq!(wrong.cursor(), wrong.base, "nothing counted as delivered");
    wrong.stop().await;
    let schemas = c.query("SELECT 1 FROM pg_namespace WHERE nspname = 'tls_wrong'", &[]).await.unwrap();
    assert!(schemas.is_empty(), "no statement ran over the refused connection");
    // The right CA: the rows land over TLS.
    let mut chain = Chain::new("pgtls", BufferConfig::default());
    chain.push_n(&meta, 0, 100, Duration::ZERO).await;
    spawn(&mut chain, pg_sink("pgtls", &pg.url(), "tls_ok", "tls = true\nca_file = \"ca.pem\"", dir.path()));
    let head = chain.head();
    assert!(eventually(Duration::from_secs(20), || chain.cursor() >= head).await, "{:?}", chain.stats.error());
    let ssl: Vec<bool> = c
        .query("SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'relais gw pgtls'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ssl, vec![true; 2], "relais's two connections (the default) use TLS");
    chain.stop().await;
    assert_exactly_once(&c, "tls_ok", chain.base + 1, head).await;
}
