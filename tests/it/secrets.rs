//! Secrets and credentials: files read with a size cap (issue 9 item 13),
//! credentials never echoed in messages (issue 9 item 14).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `relais check` on `config` under a 1 GiB address-space limit; its exit
/// code and output, or None when it did not finish within `within` (killed).
fn check(config: &Path, within: Duration) -> Option<(Option<i32>, String)> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v 1048576; exec {} check --config \"$1\"", env!("CARGO_BIN_EXE_relais")))
        .arg("sh")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while t.elapsed() < within {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            return Some((out.status.code(), text));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Issue 9 item 13: `token_file` / `password_file` naming an endless file
/// (`/dev/zero`), a pipe nobody writes, or a huge file: `check` answers at
/// once with an error naming the key and the file, instead of hanging and
/// eating memory.
#[test]
fn secret_files_that_never_end_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let huge = dir.path().join("huge.txt");
    std::fs::File::create(&huge).unwrap().set_len(200 << 20).unwrap();
    for (file, what) in [
        ("/dev/zero", "not a regular file"),
        (fifo.to_str().unwrap(), "not a regular file"),
        (huge.to_str().unwrap(), "larger than 64.0 KiB"),
    ] {
        let configs = [
            format!(
                "[gateway]\nid = \"g\"\n[[source]]\nname = \"web\"\ntype = \"http\"\nlisten = \"127.0.0.1:18080\"\ntoken_file = \"{file}\"\n"
            ),
            format!(
                "[gateway]\nid = \"g\"\n[[sink]]\nname = \"b\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\nusername = \"u\"\npassword_file = \"{file}\"\n"
            ),
            format!(
                "[gateway]\nid = \"g\"\n[[device]]\nname = \"plc\"\nprotocol = \"opcua\"\nendpoint = \"opc.tcp://127.0.0.1:4840\"\nusername = \"u\"\npassword_file = \"{file}\"\n[[device.tag]]\nname = \"t\"\nnode_id = \"i=2258\"\n"
            ),
            // A certificate file is read the same way.
            format!(
                "[gateway]\nid = \"g\"\n[[device]]\nname = \"plc\"\nprotocol = \"opcua\"\nendpoint = \"opc.tcp://127.0.0.1:4840\"\nsecurity_policy = \"Basic256Sha256\"\ntrust_server_certificate = \"{file}\"\n[[device.tag]]\nname = \"t\"\nnode_id = \"i=2258\"\n"
            ),
        ];
        for text in configs {
            let cfg = dir.path().join("relais.toml");
            std::fs::write(&cfg, &text).unwrap();
            let Some((code, out)) = check(&cfg, Duration::from_secs(20)) else {
                panic!("`relais check` did not finish within 20 s with {file}:\n{text}");
            };
            assert_eq!(code, Some(2), "{out}");
            let key = if text.contains("trust_server_certificate") { "trust_server_certificate" } else { "_file" };
            // Certificates may be larger than secrets (1 MiB).
            let what = if key == "trust_server_certificate" && what.starts_with("larger") { "larger than 1.0 MiB" } else { what };
            assert!(out.contains(key) && out.contains(file) && out.contains(what), "{file}: {out}");
        }
    }
}

/// Issue 9 item 14: a URL with a password was echoed whole in the
/// configuration error (`broker url "mqtt://user:secret@…" carries
/// credentials`). `relais check` and `relais run` name the URL without its
/// user information, for an MQTT sink, an MQTT ingest source, an HTTP sink
/// and a malformed OPC UA endpoint.
#[test]
fn check_and_run_never_echo_a_password_written_in_a_url() {
    let dir = tempfile::tempdir().unwrap();
    let configs = [
        ("[[sink]]\nname = \"b\"\ntype = \"mqtt\"\nurl = \"mqtt://user:s3cret-pw@127.0.0.1:1883\"\n", "mqtt://***@127.0.0.1:1883"),
        ("[[sink]]\nname = \"b\"\ntype = \"mqtt\"\nurl = \"mqtt://user:s3cret-pw@127.0.0.1:1883/x?y\"\n", "mqtt://***@127.0.0.1:1883"),
        (
            "[[source]]\nname = \"m\"\ntype = \"mqtt-in\"\nurl = \"mqtts://user:s3cret-pw@broker.example:8883\"\ntopics = [\"a/#\"]\n",
            "mqtts://***@broker.example:8883",
        ),
        ("[[sink]]\nname = \"c\"\ntype = \"http\"\nurl = \"https://user:s3cret-pw@cloud.example/in\"\n", "carries credentials"),
        ("[[sink]]\nname = \"c\"\ntype = \"http\"\nurl = \"https://user:s3cret-pw@[cloud/in\"\n", "https://[cloud/in"),
        (
            "[[device]]\nname = \"plc\"\nprotocol = \"opcua\"\nendpoint = \"opc.tcp://user:s3cret-pw@h:0\"\n[[device.tag]]\nname = \"t\"\nnode_id = \"i=2258\"\n",
            "opc.tcp://***@h:0",
        ),
        // A well-formed endpoint with credentials was accepted, then logged and
        // shown by `relais check` whole.
        (
            "[[device]]\nname = \"plc\"\nprotocol = \"opcua\"\nendpoint = \"opc.tcp://user:s3cret-pw@127.0.0.1:4840\"\n[[device.tag]]\nname = \"t\"\nnode_id = \"i=2258\"\n",
            "opc.tcp://***@127.0.0.1:4840\" carries credentials",
        ),
    ];
    for (part, shown) in configs {
        let cfg = dir.path().join("relais.toml");
        let text = format!("[gateway]\nid = \"g\"\ndata_dir = \"{}\"\n{part}", dir.path().join("data").display());
        std::fs::write(&cfg, &text).unwrap();
        let Some((code, out)) = check(&cfg, Duration::from_secs(20)) else { panic!("check hung on {part}") };
        assert_eq!(code, Some(2), "{out}");
        assert!(out.contains(shown) && !out.contains("s3cret-pw"), "{part}\n{out}");
        let run = Command::new(env!("CARGO_BIN_EXE_relais")).args(["run", "--config"]).arg(&cfg).output().unwrap();
        let out = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
        assert_eq!(run.status.code(), Some(2), "{out}");
        assert!(out.contains(shown) && !out.contains("s3cret-pw"), "{part}\n{out}");
    }
}
