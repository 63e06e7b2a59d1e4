//! Decides, at build time, which integration tests cannot run on this
//! machine, so they show up as *ignored, with the reason* in the test
//! summary instead of passing silently (issue 10):
//!
//! | cfg | set when | tests |
//! |---|---|---|
//! | `relais_no_skab` | no `valve1_0.csv` in `../shared/data/skab` or `data/skab` (`scripts/get-skab.sh`) | SKAB replay, import, detector evaluation |
//! | `relais_no_asyncua` | `$RELAIS_PYTHON` (default `python3`) cannot `import asyncua` | the Python asyncua OPC UA server test |
//! | `relais_no_node_opcua` | no `node` or no node-opcua in `$RELAIS_NODE_OPCUA` / `target/node-opcua/node_modules` | the node-opcua interoperability tests |
//! | `relais_no_timescaledb` | no `timescaledb.so` in the `lib` folder beside the newest `/usr/lib/postgresql/*/bin/initdb` (Debian does not package TimescaleDB) | the hypertable test (`tests/it/postgres_timescale.rs`) |
//!
//! CI sets `RELAIS_REQUIRE_SKAB=1`, `RELAIS_REQUIRE_ASYNCUA=1` and
//! `RELAIS_REQUIRE_NODE_OPCUA=1` (`.ci/run`): then the cfg is never set, the
//! tests run, and they fail when what they need is missing
//! (`RELAIS_REQUIRE_TIMESCALEDB=1` does the same for TimescaleDB; CI does not
//! set it, since no package registry it reaches has TimescaleDB). The checks run
//! again when these variables or the watched folders change; after
//! installing a tool elsewhere, `touch build.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn required(var: &str) -> bool {
    println!("cargo::rerun-if-env-changed={var}");
    std::env::var(var).is_ok_and(|v| v == "1")
}

/// Watches `p` when it exists (a missing path would rerun this script on every build).
fn watch(p: &Path) {
    if p.exists() {
        println!("cargo::rerun-if-changed={}", p.display());
    }
}

fn has_skab(root: &Path) -> bool {
    let dirs = [root.join("../shared/data/skab"), root.join("data/skab")];
    dirs.iter().for_each(|d| watch(d));
    dirs.iter().any(|d| d.join("valve1_0.csv").is_file())
}

fn has_asyncua(root: &Path) -> bool {
    println!("cargo::rerun-if-env-changed=RELAIS_PYTHON");
    watch(&root.join("target/ci-venv/pyvenv.cfg"));
    let python = std::env::var("RELAIS_PYTHON").unwrap_or_else(|_| "python3".into());
    Command::new(python).args(["-c", "import asyncua"]).output().is_ok_and(|o| o.status.success())
}

fn has_node_opcua(root: &Path) -> bool {
    println!("cargo::rerun-if-env-changed=RELAIS_NODE_OPCUA");
    let dir = std::env::var_os("RELAIS_NODE_OPCUA").map(PathBuf::from).unwrap_or_else(|| root.join("target/node-opcua/node_modules"));
    let package = dir.join("node-opcua/package.json");
    watch(&package);
    package.is_file() && Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// The TimescaleDB extension of the PostgreSQL the tests' own clusters use
/// (the newest `/usr/lib/postgresql/N` with `bin/initdb`).
fn has_timescaledb(_root: &Path) -> bool {
    let Ok(dirs) = std::fs::read_dir("/usr/lib/postgresql") else { return false };
    let newest = dirs
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path())))
        .filter(|(_, p)| p.join("bin/initdb").is_file())
        .max_by_key(|(v, _)| *v);
    newest.is_some_and(|(_, p)| {
        watch(&p.join("lib"));
        p.join("lib/timescaledb.so").is_file()
    })
}

/// Whether what a group of tests needs is here.
type Check = fn(&Path) -> bool;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let checks: [(&str, &str, Check); 4] = [
        ("relais_no_skab", "RELAIS_REQUIRE_SKAB", has_skab),
        ("relais_no_asyncua", "RELAIS_REQUIRE_ASYNCUA", has_asyncua),
        ("relais_no_node_opcua", "RELAIS_REQUIRE_NODE_OPCUA", has_node_opcua),
        ("relais_no_timescaledb", "RELAIS_REQUIRE_TIMESCALEDB", has_timescaledb),
    ];
    for (cfg, require, present) in checks {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if !required(require) && !present(&root) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
