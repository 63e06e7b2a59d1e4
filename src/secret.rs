//! Secrets (passwords, tokens): read from the config, a file or an
//! environment variable; never shown by `Debug` or in logs.
//!
//! Files named by the config for secrets, keys and certificates are read
//! with [`read_capped`]: regular files only (a device such as `/dev/zero`
//! never ends, a pipe nobody writes to never opens) and at most a set size,
//! so `check` and `run` answer at once instead of hanging and eating memory.

use std::path::Path;

use toml::Spanned;

use crate::diag::Diag;

/// A secret that never appears in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret text, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if COMPARING.with(std::cell::Cell::get) {
            // A salted digest: two configurations compare equal only when
            // the secret is the same, and the text shows nothing of it.
            use sha2::Digest;
            let salt = SALT.get_or_init(|| fastrand::u64(..));
            let d = sha2::Sha256::new().chain_update(salt.to_le_bytes()).chain_update(self.0.as_bytes()).finalize();
            return write!(f, "Secret({:x})", d);
        }
        f.write_str("Secret(***)")
    }
}

thread_local! {
    static COMPARING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}
static SALT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Runs `f` (which formats configurations with `Debug`) with every
/// [`Secret`] shown as a salted digest instead of `***`, so a changed
/// password makes a different text (`app::reload` compares configurations
/// that way). The text must stay in memory: never log it.
pub fn comparing<R>(f: impl FnOnce() -> R) -> R {
    COMPARING.with(|c| c.set(true));
    let r = f();
    COMPARING.with(|c| c.set(false));
    r
}

/// What [`read_secret`] found.
#[derive(Debug)]
pub enum SecretKey {
    /// None of the three keys is set.
    Absent,
    /// The secret.
    Read(Secret),
    /// A key is set but unusable (unreadable file, unset variable, empty,
    /// several keys): the error is recorded already.
    Failed,
}

impl SecretKey {
    /// The secret, if read.
    pub fn secret(self) -> Option<Secret> {
        match self {
            SecretKey::Read(s) => Some(s),
            _ => None,
        }
    }
}

/// Most bytes of a `*_file` secret (passwords and tokens are far shorter).
pub const SECRET_FILE_MAX: u64 = 64 << 10;

/// Reads the regular file `path` whole if it holds at most `max` bytes.
/// Errors say what is wrong in words an operator can act on: not a regular
/// file (a device, a pipe, a folder), larger than `max`, or the OS error.
pub fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    // metadata follows symbolic links (Kubernetes and systemd credentials
    // are links to regular files) and never blocks, unlike opening a pipe.
    let md = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !md.is_file() {
        let kind = if md.is_dir() { "a folder" } else { "a device, pipe or socket" };
        return Err(format!("{} is not a regular file ({kind}); name a file holding the value", path.display()));
    }
    let limit = crate::units::format_size(max);
    if md.len() > max {
        return Err(format!("{} is larger than {limit} ({} bytes): not the right file?", path.display(), md.len()));
    }
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut buf = Vec::with_capacity(md.len() as usize);
    f.take(max + 1).read_to_end(&mut buf).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if buf.len() as u64 > max {
        return Err(format!("{} is larger than {limit}: not the right file?", path.display()));
    }
    Ok(buf)
}

/// Reads a secret given inline (`<what>`), in a file (`<what>_file`, relative
/// to `base`, trailing newline removed) or in an environment variable
/// (`<what>_env`). At most one may be set; `key` prefixes error keys.
pub fn read_secret(
    d: &mut Diag<'_>,
    key: &str,
    what: &str,
    inline: &Option<Spanned<String>>,
    file: &Option<Spanned<String>>,
    env: &Option<Spanned<String>>,
    base: &Path,
) -> SecretKey {
    let given = [inline.is_some(), file.is_some(), env.is_some()].iter().filter(|g| **g).count();
    let k = |s: &str| format!("{key} / {s}");
    if given > 1 {
        let span = inline.as_ref().or(file.as_ref()).or(env.as_ref()).map(|s| s.span()).unwrap_or(0..0);
        d.error(span, &k(what), format!("set only one of {what}, {what}_file, {what}_env"));
        return SecretKey::Failed;
    }
    if let Some(p) = inline {
        if p.get_ref().is_empty() {
            d.error(p.span(), &k(what), format!("{what} is empty"));
        }
        return SecretKey::Read(Secret(p.get_ref().clone()));
    }
    if let Some(f) = file {
        let path = base.join(f.get_ref());
        // Name the file as the OS sees it, whatever the current directory.
        let path = std::path::absolute(&path).unwrap_or(path);
        let text = read_capped(&path, SECRET_FILE_MAX)
            .and_then(|b| String::from_utf8(b).map_err(|_| format!("{} is not UTF-8 text", path.display())));
        return match text {
            Ok(s) if !s.trim().is_empty() => SecretKey::Read(Secret(s.trim_end_matches(['\r', '\n']).to_string())),
            Ok(_) => {
                d.error(f.span(), &k(&format!("{what}_file")), format!("{} is empty", path.display()));
                SecretKey::Failed
            }
            Err(e) => {
                d.error(f.span(), &k(&format!("{what}_file")), e);
                SecretKey::Failed
            }
        };
    }
    if let Some(v) = env {
        return match std::env::var(v.get_ref()) {
            Ok(s) if !s.is_empty() => SecretKey::Read(Secret(s)),
            _ => {
                d.error(v.span(), &k(&format!("{what}_env")), format!("environment variable {} is not set or empty", v.get_ref()));
                SecretKey::Failed
            }
        };
    }
    SecretKey::Absent
}
