//! `[commands]`: the broker connection (the keys of every MQTT client of
//! relais, `crate::mqtt`), the topics, the time-to-live and deduplication
//! window, and the optional token and allow-list. See `README.md` and
//! `sample.toml` beside this file.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::topic::{Template, Topics, check_pattern, defaults};
use crate::diag::{Diag, Item, Reader, de_item, reject_unknown_keys};
use crate::mqtt::{CONN_KEYS, ClientConn, parse_conn};
use crate::secret::{Secret, read_secret};

/// A validated `[commands]` section.
#[derive(Debug, Clone)]
pub struct CommandsConfig {
    /// Broker connection (client id default `relais-{gateway}-commands`).
    pub conn: ClientConn,
    /// The command, alarm and result topics.
    pub topics: Topics,
    /// Time to live of a command that gives no `ttl` (default 10 s).
    pub default_ttl: Duration,
    /// How long a settled command id is kept (default 24 h): a duplicate
    /// within it is answered from the store, never executed again. The
    /// largest `ttl` a command may carry.
    pub dedup_window: Duration,
    /// The token every command must carry (`token_file` / `token_env`).
    pub token: Option<Secret>,
    /// Targets accepted (`device/tag`, `device/*`, `alarm/rule`, `alarm/*`,
    /// `*`); `None`: all (the tags' own `writable` still decides).
    pub allow: Option<Vec<String>>,
    /// Refuse a command without `ts` (its age then cannot count the time it
    /// waited in the broker).
    pub require_ts: bool,
    /// `[[commands.grant]]`: tokens per target. A command on a target some
    /// grant covers must carry the token of one of those grants (instead of
    /// `token`).
    pub grants: Vec<Grant>,
}

/// One `[[commands.grant]]`: the targets a token may command.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Target patterns, as in `allow`.
    pub targets: Vec<String>,
    /// The token (`token_file` / `token_env`).
    pub token: Secret,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    targets: Spanned<Vec<String>>,
    token_file: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
}

#[derive(Deserialize)]
struct RawCommands {
    prefix: Option<Spanned<String>>,
    topic: Option<Spanned<String>>,
    alarm_topic: Option<Spanned<String>>,
    result_topic: Option<Spanned<String>>,
    alarm_result_topic: Option<Spanned<String>>,
    default_ttl: Option<Spanned<String>>,
    dedup_window: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    allow: Option<Spanned<Vec<String>>>,
    require_ts: Option<bool>,
    grant: Option<Vec<Spanned<RawGrant>>>,
}

/// Keys of `[commands]` besides the connection keys.
pub const COMMANDS_KEYS: &[&str] = &[
    "prefix",
    "topic",
    "alarm_topic",
    "result_topic",
    "alarm_result_topic",
    "default_ttl",
    "dedup_window",
    "token_file",
    "token_env",
    "allow",
    "require_ts",
    "grant",
];

const KEY: &str = "commands";

/// Reads `[commands]`; relative paths resolve against `base`. Every error is
/// recorded in `d`; `None` when there was one.
pub fn parse_commands(mut item: Item<'_>, d: &mut Diag<'_>, gateway: &str, base: &Path) -> Option<CommandsConfig> {
    let section = item.span();
    let keys: Vec<&str> = COMMANDS_KEYS.iter().chain(CONN_KEYS).copied().collect();
    reject_unknown_keys(&mut item, &keys, d, KEY);
    let raw: RawCommands = de_item(item.clone(), d, KEY)?;
    let before = d.error_count();
    let conn = parse_conn(item, d, KEY, base, format!("relais-{gateway}-commands"));
    let topics = read_topics(&raw, d, gateway, section.clone());
    let mut r = Reader::new(d, KEY);
    let dedup_window =
        r.duration_in(&raw.dedup_window, "dedup_window", Duration::from_secs(86_400), Duration::from_secs(60)..=Duration::MAX);
    let default_ttl =
        r.duration_in(&raw.default_ttl, "default_ttl", Duration::from_secs(10), Duration::from_millis(100)..=Duration::from_secs(86_400));
    if let Some(t) = &raw.default_ttl
        && default_ttl > dedup_window
    {
        r.error(t.span(), "default_ttl", "default_ttl must not be longer than dedup_window");
    }
    let allow = raw.allow.as_ref().map(|a| {
        for p in a.get_ref() {
            if let Err(e) = check_pattern(p) {
                r.error(a.span(), "allow", e);
            }
        }
        a.get_ref().clone()
    });
    let token = read_secret(d, KEY, "token", &None, &raw.token_file, &raw.token_env, base).secret();
    let grants = read_grants(raw.grant.as_deref().unwrap_or(&[]), d, base);
    if d.error_count() > before {
        return None;
    }
    Some(CommandsConfig {
        conn: conn?,
        topics: topics?,
        default_ttl,
        dedup_window,
        token,
        allow,
        require_ts: raw.require_ts.unwrap_or(false),
        grants,
    })
}

fn read_grants(raw: &[Spanned<RawGrant>], d: &mut Diag<'_>, base: &Path) -> Vec<Grant> {
    let mut out = Vec::new();
    for (i, g) in raw.iter().enumerate() {
        let key = format!("{KEY} / grant #{}", i + 1);
        let t = &g.get_ref().targets;
        if t.get_ref().is_empty() {
            d.error(t.span(), &format!("{key} / targets"), "targets is empty; give patterns such as \"pump1/*\" or \"alarm/*\"");
        }
        for p in t.get_ref() {
            if let Err(e) = check_pattern(p) {
                d.error(t.span(), &format!("{key} / targets"), e);
            }
        }
        let (file, env) = (&g.get_ref().token_file, &g.get_ref().token_env);
        match read_secret(d, &key, "token", &None, file, env, base) {
            crate::secret::SecretKey::Read(token) => out.push(Grant { targets: t.get_ref().clone(), token }),
            crate::secret::SecretKey::Absent => d.error(g.span(), &key, "a grant needs its token: `token_file` or `token_env`"),
            crate::secret::SecretKey::Failed => {}
        }
    }
    out
}

fn read_topics(raw: &RawCommands, d: &mut Diag<'_>, gateway: &str, section: std::ops::Range<usize>) -> Option<Topics> {
    let prefix = raw.prefix.as_ref().map_or("", |p| p.get_ref().as_str());
    if let Some(p) = &raw.prefix
        && p.get_ref().contains(['+', '#', '{', '}'])
    {
        d.error(p.span(), "commands / prefix", "prefix is literal topic levels (no wildcards, no placeholders)");
        return None;
    }
    let [c, a, r, ar] = defaults(prefix);
    let mut one = |v: &Option<Spanned<String>>, name: &str, default: &str, vars: &[&'static str]| {
        let (text, span) = v.as_ref().map_or((default, section.clone()), |s| (s.get_ref().as_str(), s.span()));
        Template::parse(text, gateway, vars).map_err(|e| d.error(span, &format!("{KEY} / {name}"), e)).ok()
    };
    let command = one(&raw.topic, "topic", &c, &["device", "tag"]);
    let alarm = one(&raw.alarm_topic, "alarm_topic", &a, &["rule"]);
    let result = one(&raw.result_topic, "result_topic", &r, &["device", "tag"]);
    let alarm_result = one(&raw.alarm_result_topic, "alarm_result_topic", &ar, &["rule"]);
    let topics = Topics { command: command?, alarm: alarm?, result: result?, alarm_result: alarm_result? };
    for (t, name) in [(&topics.result, "result_topic"), (&topics.alarm_result, "alarm_result_topic")] {
        if topics.route(&t.render(&[("device", "d"), ("tag", "t"), ("rule", "r")])).is_some() {
            d.error(
                section.clone(),
                &format!("{KEY} / {name}"),
                format!("{:?} falls under the command topics: relais would read its own answers as commands", t.as_str()),
            );
            return None;
        }
    }
    Some(topics)
}
