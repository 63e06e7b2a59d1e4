//! The Debian package's metadata (`[package.metadata.deb]` in Cargo.toml) agrees with
//! `deploy/relais.service`, `deploy/relais.sysusers`, the sample `deploy/relais.toml` and
//! `deploy/changelog` (issue 10): the unit runs the binary the package installs, on the config
//! file it installs, as the user it creates, in the state directory the config names.
//! `deploy/check-deb.sh` builds and installs the package itself (CI runs it).

use std::collections::BTreeMap;
use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `[package.metadata.deb]` from Cargo.toml.
fn deb_metadata() -> toml::Table {
    let manifest: toml::Table = read("Cargo.toml").parse().unwrap();
    manifest["package"]["metadata"]["deb"].as_table().expect("[package.metadata.deb]").clone()
}

/// The package's assets: destination (absolute, with the file name) → source.
fn assets(deb: &toml::Table) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for a in deb["assets"].as_array().expect("assets") {
        let a = a.as_array().expect("assets as [source, dest, mode]");
        let (src, dest) = (a[0].as_str().unwrap(), a[1].as_str().unwrap());
        let dest = match dest.strip_suffix('/') {
            Some(dir) => format!("/{dir}/{}", Path::new(src).file_name().unwrap().to_str().unwrap()),
            None => format!("/{dest}"),
        };
        out.insert(dest, src.to_string());
    }
    out
}

/// The `[Service]` settings of the unit (the last value of each key).
fn unit_settings() -> BTreeMap<String, String> {
    read("deploy/relais.service")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn the_unit_runs_the_packaged_binary_on_the_packaged_config() {
    let deb = deb_metadata();
    let assets = assets(&deb);
    let unit = unit_settings();
    let exec: Vec<&str> = unit["ExecStart"].split_whitespace().collect();
    assert_eq!(
        assets.get(exec[0]).map(String::as_str),
        Some("target/release/relais"),
        "ExecStart={} is not where the package puts the binary: {assets:#?}",
        unit["ExecStart"]
    );
    assert_eq!(exec[1], "run");
    // `systemctl reload relais` sends SIGHUP, which reloads the configuration (app::reload).
    assert_eq!(unit.get("ExecReload").map(String::as_str), Some("/bin/kill -HUP $MAINPID"));
    let config = exec.iter().position(|a| *a == "--config").map(|i| exec[i + 1]).expect("ExecStart names --config");
    assert_eq!(assets.get(config).map(String::as_str), Some("deploy/relais.toml"), "--config {config} is not the packaged sample");
    // Files under /etc are conffiles by themselves (cargo-deb): an upgrade keeps the user's edits.
    assert!(config.starts_with("/etc/relais/"), "{config}");
    assert_eq!(unit["ConfigurationDirectory"], "relais");
    let doc = unit["Documentation"].strip_prefix("file://").expect("Documentation=file://…");
    assert!(assets.contains_key(doc), "Documentation={doc} is not in the package: {assets:#?}");
}

#[test]
fn the_unit_runs_as_the_user_the_package_creates_in_its_state_directory() {
    let unit = unit_settings();
    let sysusers = read("deploy/relais.sysusers");
    let line = sysusers.lines().find(|l| l.starts_with("u ")).expect("a `u` line in deploy/relais.sysusers");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (user, home) = (fields[1], *fields.last().unwrap());
    assert_eq!(unit["User"], user);
    assert_eq!(unit["Group"], user, "sysusers `u` creates a group of the same name");
    let state = format!("/var/lib/{}", unit["StateDirectory"]);
    assert_eq!(home, state, "the user's home is the StateDirectory");
    assert_eq!(unit["WorkingDirectory"], state);
    // The sample config keeps its buffer there, as an absolute path.
    let sample: toml::Table = read("deploy/relais.toml").parse().unwrap();
    assert_eq!(sample["gateway"]["data_dir"].as_str(), Some(state.as_str()));
    // cargo-deb finds `<package>.service` and `<package>.sysusers` in unit-scripts.
    let deb = deb_metadata();
    let dir = deb["systemd-units"]["unit-scripts"].as_str().expect("systemd-units.unit-scripts");
    for f in ["relais.service", "relais.sysusers"] {
        assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(f).is_file(), "{dir}{f}");
    }
    // Installed, not started: the sample config is not the user's plant.
    assert_eq!(deb["systemd-units"]["enable"].as_bool(), Some(false));
    assert_eq!(deb["systemd-units"]["start"].as_bool(), Some(false));
}

#[test]
fn the_changelog_names_the_package_version() {
    let deb = deb_metadata();
    let changelog = read(deb["changelog"].as_str().expect("changelog"));
    let top = changelog.lines().next().unwrap();
    let want = format!("relais ({}-1) ", env!("CARGO_PKG_VERSION"));
    assert!(top.starts_with(&want), "deploy/changelog starts with `{top}`, the package is {want}: add an entry");
}
