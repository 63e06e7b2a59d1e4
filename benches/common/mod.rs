//! Helpers shared by the end-to-end benches: ports, Mosquitto, process CPU
//! and memory from /proc, graceful stop.

#![allow(dead_code)]
#![allow(unsafe_code)] // kill(2) to stop child processes gracefully

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn mosquitto() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join("mosquitto")).find(|p| p.is_file()).expect("mosquitto not found: apt-get install mosquitto")
}

pub fn wait_port(port: u16) {
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(20), "port {port} never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// utime + stime of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0) + f.get(12).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

pub fn rss_mb(pid: u32, field: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

pub fn stop(mut c: Child) {
    unsafe { kill(c.id() as i32, 15) };
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(6) {
        if c.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// Adds the benches' MQTT sink (QoS 1, json-batch, `bench/{device}/{tag}`)
/// to the gateway config and writes both files; returns (sim, gateway) paths.
pub fn write_configs(dir: &std::path::Path, sim: &str, mut gw: String, broker: u16) -> (PathBuf, PathBuf) {
    gw += &format!(
        "[[sink]]\nname = \"broker\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{broker}\"\ntopic = \"bench/{{device}}/{{tag}}\"\nqos = 1\nformat = \"json-batch\"\nmax_inflight = 200\nread_rows = 5000\n"
    );
    let (sp, gp) = (dir.join("sim.toml"), dir.join("relais.toml"));
    std::fs::write(&sp, sim).unwrap();
    std::fs::write(&gp, gw).unwrap();
    (sp, gp)
}
