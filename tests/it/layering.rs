//! The layering of `src/` (issue 8): a lower layer never imports a higher one,
//! and components (one folder each under `sources/`, `sinks/`,
//! `processors/`) never import each other.
//!
//! The test reads every `src/**/*.rs`, finds the `crate::…`, `$crate::…` and
//! `super::…` paths in code (comments and string literals are skipped), maps
//! each to the module it names, and reports every forbidden edge with its
//! file, line and the edge. The table below is the one in `src/lib.rs`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Layers, lowest first. A module may import its own layer or a lower one.
const LAYERS: &[(&str, &[&str])] = &[
    ("model", &["model", "units"]),
    ("util", &["util", "diag", "names", "secret", "console", "memory"]),
    ("telemetry", &["telemetry"]),
    ("ingest", &["ingest"]),
    ("buffer", &["buffer"]),
    ("shared codecs", &["parse", "mqtt"]),
    ("contract", &["component"]),
    ("components", &["sources", "sinks", "processors", "sim", "proxy"]),
    ("config", &["config"]),
    ("fault bench", &["lab"]),
    ("app", &["app", "demo"]),
    ("cli", &["cli", "main"]),
];

/// Folders whose subfolders are components: `sources::modbus` may not import
/// `sources::opcua`. Their own files (`sources/mod.rs`, `sources/common.rs`)
/// are shared by the family and may be imported by its members.
const FAMILIES: &[&str] = &["sources", "sinks", "processors"];

/// Folders of a family that are shared by its members, not components: the
/// sink driver (reconnect, lanes, cursor) that every sink implements.
const FAMILY_SHARED: &[(&str, &str)] = &[("sinks", "driver")];

/// Same-layer edges between components that are allowed, with the reason.
const ALLOWED: &[(&str, &str, &str)] = &[
    // The simulator plays Modbus devices: it encodes registers with the same
    // codec the poller decodes with (one definition of each data type).
    ("sim", "sources::modbus", "the simulator encodes with the Modbus codec"),
];

fn layer_of(top: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&top))
}

/// The module path of a file: `src/sources/file/ingest.rs` → `["sources", "file", "ingest"]`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

/// The unit an edge is judged at: the top module, or `family::component` for
/// a component folder (`sources::modbus`), or `family` for the family's own files.
fn unit(path: &[String]) -> String {
    match path {
        [f, c, ..] if FAMILIES.contains(&f.as_str()) && is_component_dir(f, c) => format!("{f}::{c}"),
        [top, ..] => top.clone(),
        [] => "lib".into(),
    }
}

/// `sources/modbus/` is a component; `sources/common.rs` and the items of
/// `sources/mod.rs` belong to the family.
fn is_component_dir(family: &str, name: &str) -> bool {
    !FAMILY_SHARED.contains(&(family, name)) && Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(family).join(name).is_dir()
}

/// `src/{name}.rs` or `src/{name}/mod.rs` exists.
fn is_module(name: &str) -> bool {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    src.join(format!("{name}.rs")).is_file() || src.join(name).join("mod.rs").is_file()
}

/// Code with comments and string/char literals blanked (kept line by line).
fn code_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut block = 0usize;
    for line in text.lines() {
        let b = line.as_bytes();
        let mut s = String::with_capacity(line.len());
        let mut i = 0;
        while i < b.len() {
            if block > 0 {
                if b[i..].starts_with(b"*/") {
                    block -= 1;
                    i += 2;
                } else if b[i..].starts_with(b"/*") {
                    block += 1;
                    i += 2;
                } else {
                    i += 1;
                }
                continue;
            }
            if b[i..].starts_with(b"//") {
                break;
            }
            if b[i..].starts_with(b"/*") {
                block += 1;
                i += 2;
                continue;
            }
            if b[i] == b'"' {
                // Skip a string literal (raw strings are rare in imports; a
                // `crate::` inside one is skipped as long as it has no `"`).
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                s.push_str("\"\"");
                continue;
            }
            s.push(b[i] as char);
            i += 1;
        }
        out.push(s);
    }
    out
}

/// The module paths one line of code names, resolved from `here` (the
/// file's module path): `crate::a::b`, `crate::{a, b::c}`, `super::x`.
fn referenced(line: &str, here: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes = line.as_bytes();
    for (start, kw) in [("crate::", 0usize), ("super::", 1)].iter().flat_map(|(pat, k)| line.match_indices(pat).map(move |(i, _)| (i, *k)))
    {
        // A path start: not part of a longer identifier (`$crate` is fine).
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_' || bytes[start - 1] == b':') {
            continue;
        }
        let (mut base, mut rest): (Vec<String>, &str) = if kw == 0 {
            (Vec::new(), &line[start + "crate::".len()..])
        } else {
            let mut b = here.to_vec();
            let mut r = &line[start..];
            while let Some(t) = r.strip_prefix("super::") {
                b.pop();
                r = t;
            }
            (b, r)
        };
        if let Some(t) = rest.strip_prefix("self::") {
            rest = t;
        }
        for p in expand(rest) {
            let mut full = base.clone();
            full.extend(p);
            found.push(full);
        }
        base.clear();
    }
    found
}

/// The paths a `use` tail names, two segments deep: `a::b::C` → `[a, b]`;
/// `{a, b::c}` → `[a]`, `[b, c]`.
fn expand(rest: &str) -> Vec<Vec<String>> {
    let rest = rest.trim_start();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut items = Vec::new();
        let mut cur = String::new();
        for ch in inner.chars() {
            match ch {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(std::mem::take(&mut cur));
                    continue;
                }
                _ => {}
            }
            cur.push(ch);
        }
        items.push(cur);
        return items.iter().filter(|i| !i.trim().is_empty()).flat_map(|i| expand(i.trim())).collect();
    }
    let mut segs = Vec::new();
    let mut r = rest;
    for _ in 0..2 {
        let end = r.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(r.len());
        if end == 0 {
            break;
        }
        segs.push(r[..end].to_string());
        match r[end..].strip_prefix("::") {
            Some(t) if !t.starts_with('{') => r = t,
            Some(t) => {
                // `a::{b, c}`: the group's first segments.
                let mut out = Vec::new();
                if segs.len() >= 2 {
                    return vec![segs];
                }
                for mut p in expand(t) {
                    let mut s = segs.clone();
                    s.append(&mut p);
                    s.truncate(2);
                    out.push(s);
                }
                return out;
            }
            None => break,
        }
    }
    if segs.is_empty() { Vec::new() } else { vec![segs] }
}

/// Why the edge `from → to` is forbidden, or `None` when it is allowed.
fn forbidden(from: &[String], to: &[String]) -> Option<String> {
    let (fu, tu) = (unit(from), unit(to));
    if fu == tu {
        return None;
    }
    let ftop = from.first().map(String::as_str).unwrap_or("lib");
    let ttop = to.first().map(String::as_str)?;
    if ftop == "lib" || !is_module(ttop) {
        // The crate root, and root items that are no module (exported macros).
        return None;
    }
    let (Some(fl), Some(tl)) = (layer_of(ftop), layer_of(ttop)) else {
        return Some(format!("{ftop} or {ttop} is not in the layer table (tests/it/layering.rs, src/lib.rs)"));
    };
    if tl > fl {
        return Some(format!("{fu} (layer {}) imports {tu} (layer {}, higher)", LAYERS[fl].0, LAYERS[tl].0));
    }
    if ALLOWED.iter().any(|(a, b, _)| *a == fu && *b == tu) {
        return None;
    }
    // Components never import each other; a family's members may use the
    // family's own files, never the other way round.
    let is_component = |u: &str| u.contains("::");
    if tl == fl && is_component(&tu) && (is_component(&fu) || ftop != ttop) {
        return Some(format!("component {fu} imports component {tu} (components are independent)"));
    }
    None
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every forbidden edge under `src`, one line each: `file:line: edge`.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap();
        let here = module_of(rel);
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in code_lines(&text).iter().enumerate() {
            for to in referenced(line, &here) {
                if let Some(why) = forbidden(&here, &to) {
                    out.push(format!("src/{}:{}: {} -> {}: {why}", rel.display(), n + 1, here.join("::"), to.join("::")));
                }
            }
        }
    }
    out
}

#[test]
fn no_module_imports_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let v = violations(&src);
    let mut msg = String::new();
    for l in &v {
        writeln!(msg, "  {l}").unwrap();
    }
    assert!(v.is_empty(), "{} forbidden import(s) across the layers of src/lib.rs:\n{msg}", v.len());
}

#[test]
fn the_checker_sees_back_edges() {
    let here = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    // A buffer file reaching up into the root config, in each spelling.
    for line in ["use crate::config::BufferConfig;", "use crate::{model::Sample, config};", "let d: crate::config::Durability = x;"] {
        let refs = referenced(&code_lines(line)[0], &here("buffer::writer"));
        assert!(refs.iter().any(|r| forbidden(&here("buffer::writer"), r).is_some()), "{line}: {refs:?}");
    }
    // One component reaching into another through `super::`.
    let refs = referenced("use super::super::file::ingest::parse_input;", &here("sources::http::server"));
    assert_eq!(refs, vec![here("sources::file::ingest")]);
    assert!(forbidden(&here("sources::http::server"), &refs[0]).unwrap().contains("components are independent"));
    // Comments and strings are not imports; downward and sibling-file edges are fine.
    assert!(referenced(&code_lines("// see crate::app")[0], &here("buffer")).is_empty());
    assert!(referenced(&code_lines("let s = \"crate::app\";")[0], &here("buffer")).is_empty());
    assert!(forbidden(&here("sources::http::server"), &here("sources::common")).is_none());
    assert!(forbidden(&here("app"), &here("sources::http")).is_none());
    assert!(forbidden(&here("sources::http::server"), &here("sources::http::config")).is_none());
}
