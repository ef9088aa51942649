//! Policy rules: which `[sanitize]` settings apply to a message for a recipient.
//!
//! Administrators never run one policy for everyone: the finance section receives Excel
//! invoices from known suppliers, a first contact deserves the strictest handling. The
//! `[[policy]]` tables of the configuration are tried in order for each recipient; the first
//! rule whose conditions all hold applies, else the global `[sanitize]`. Conditions (each an
//! empty list = no condition): `sender` and `recipient` address patterns ([`pattern`]), `client`
//! networks (CIDR; an IPv4-mapped IPv6 client counts as IPv4), `authenticated` verdicts of a
//! trusted upstream ([`auth`]; all listed must hold), and `min_size` / `max_size` (inclusive,
//! octets of the message as received).
//!
//! A rule's `[policy.sanitize]` table is laid over the global `[sanitize]` (deep merge: a rule
//! that sets `attachments.office` keeps the other attachment keys), read with the same
//! `deny_unknown_fields` types and checked by the same [`SanitizeConfig::validate`], once, when
//! [`Policies::new`] is built from the configuration. So trust can only relax within the
//! actions that exist, and none of them passes an attachment uninspected: the output is always
//! rebuilt and verified. `temp_dir` and `memory_buffer` size the process, not a message, and
//! cannot be overridden.
//!
//! First contact (`[policies] first_contact_policy`): the named rule applies only to senders
//! the caller says are first contacts (the `first_contact` fact; the quarantine database knows)
//! and then before every other rule, if its own conditions hold. It is skipped in the ordinary
//! first-match order, where a condition-less rule would otherwise swallow every later rule.
//!
//! Everything here is pure: no I/O. [`explain`] (the `mugaika explain` command) is the one
//! part that reads files and runs the pipeline.

pub mod auth;
pub mod explain;
pub mod pattern;

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::{Config, ConfigError, PolicyRule, SanitizeConfig};

pub use auth::{auth_results, AuthCond, AuthResult};
pub use pattern::AddrPattern;

/// `[sanitize]` keys a rule may not override: they size the process, not a message.
const SERVER_ONLY: &[&str] = &["temp_dir", "memory_buffer"];

/// What is known about a message and one of its recipients when a rule is chosen.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The envelope sender (`MAIL FROM`), with or without angle brackets; `""` or `"<>"` for
    /// the null sender.
    pub sender: &'a str,
    /// One envelope recipient (ignored by [`Policies::group`], which supplies each in turn).
    pub recipient: &'a str,
    /// The SMTP client's address (`None`: unknown, and `client` conditions do not hold).
    pub client: Option<IpAddr>,
    /// Octets of the message as received.
    pub size: u64,
    /// The trusted verdicts, from [`auth_results`].
    pub auth: &'a [AuthResult],
    /// The sender was not seen within `first_contact_days` (decided by the caller).
    pub first_contact: bool,
}

/// The outcome for one recipient.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The rule's name, `None` for the global `[sanitize]`.
    pub rule: Option<String>,
    /// The settings to sanitise with (already merged and validated).
    pub sanitize: SanitizeConfig,
    /// The first-contact rule applied (the notice may say so).
    pub first_contact: bool,
    /// Why, for `explain` and logs: the conditions that held, or for the default why each
    /// rule did not apply.
    pub why: Vec<String>,
    /// The rule's overrides as `key = value` lines (empty for the default).
    pub overrides: Vec<String>,
}

/// One compiled rule.
#[derive(Debug, Clone)]
struct Rule {
    name: String,
    sender: Vec<AddrPattern>,
    recipient: Vec<AddrPattern>,
    client: Vec<IpNet>,
    auth: Vec<AuthCond>,
    min_size: Option<u64>,
    max_size: Option<u64>,
    sanitize: SanitizeConfig,
    overrides: Vec<String>,
}

/// The rules of a configuration, compiled and merged once.
#[derive(Debug, Clone)]
pub struct Policies {
    rules: Vec<Rule>,
    first_contact: Option<Rule>,
    default: SanitizeConfig,
    trusted: Vec<String>,
    first_contact_days: u32,
}

impl Policies {
    /// Compiles the `[[policy]]` rules of `cfg` (patterns, conditions, merged overrides); an
    /// error names the rule. Called by [`Config::validate`], so a loaded `Config` always
    /// compiles.
    pub fn new(cfg: &Config) -> Result<Policies, ConfigError> {
        let global = toml::Value::try_from(&cfg.sanitize)
            .map_err(|e| ConfigError::Invalid(format!("sanitize: {e}")))?;
        let mut names = HashSet::new();
        let mut rules = Vec::new();
        let mut first_contact = None;
        let fc_name = cfg.policies.first_contact_policy.as_deref();
        for r in &cfg.policy {
            let rule = compile(r, &global)
                .map_err(|m| ConfigError::Invalid(format!("policy {:?}: {m}", r.name)))?;
            if !names.insert(rule.name.clone()) {
                return Err(ConfigError::Invalid(format!(
                    "policy {:?}: the name is used by an earlier rule too",
                    r.name
                )));
            }
            if Some(rule.name.as_str()) == fc_name {
                first_contact = Some(rule);
            } else {
                rules.push(rule);
            }
        }
        if let Some(name) = fc_name {
            if first_contact.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "policies.first_contact_policy: no [[policy]] is named {name:?}"
                )));
            }
        }
        for id in &cfg.policies.trusted_authserv_ids {
            if id.trim().is_empty() || id.contains(|c: char| c.is_whitespace() || c == ';') {
                return Err(ConfigError::Invalid(format!(
                    "policies.trusted_authserv_ids: {id:?} is not an authserv-id"
                )));
            }
        }
        Ok(Policies {
            rules,
            first_contact,
            default: cfg.sanitize.clone(),
            trusted: cfg.policies.trusted_authserv_ids.clone(),
            first_contact_days: cfg.policies.first_contact_days,
        })
    }

    /// The authserv-ids to pass to [`auth_results`].
    pub fn trusted_authserv_ids(&self) -> &[String] {
        &self.trusted
    }

    /// Whether first contact is in use (`first_contact_days` > 0 and a rule named for it): the
    /// caller need not look the sender up otherwise.
    pub fn first_contact_enabled(&self) -> bool {
        self.first_contact_days > 0 && self.first_contact.is_some()
    }

    /// The rule (or default) for one recipient.
    pub fn resolve(&self, f: &Facts) -> Resolved {
        let sender = pattern::normalise(f.sender);
        let recipient = pattern::normalise(f.recipient);
        let facts = Norm {
            sender: &sender,
            recipient: &recipient,
            f,
        };
        let mut not = Vec::new();
        if f.first_contact && self.first_contact_enabled() {
            if let Some(rule) = &self.first_contact {
                match rule.check(&facts) {
                    Ok(mut why) => {
                        why.insert(0, "the sender is a first contact".to_string());
                        return rule.resolved(why, true);
                    }
                    Err(e) => not.push(format!("first-contact rule {:?}: {e}", rule.name)),
                }
            }
        }
        for rule in &self.rules {
            match rule.check(&facts) {
                Ok(why) => return rule.resolved(why, false),
                Err(e) => not.push(format!("rule {:?}: {e}", rule.name)),
            }
        }
        not.push(if not.is_empty() {
            "there are no [[policy]] rules".to_string()
        } else {
            "no rule matched".to_string()
        });
        Resolved {
            rule: None,
            sanitize: self.default.clone(),
            first_contact: false,
            why: not,
            overrides: Vec::new(),
        }
    }

    /// Recipients grouped by the rule that applies, in the order of their first recipient:
    /// one clean message per group. `f.recipient` is ignored.
    pub fn group<S: AsRef<str>>(
        &self,
        f: &Facts,
        recipients: &[S],
    ) -> Vec<(Resolved, Vec<String>)> {
        let mut out: Vec<(Resolved, Vec<String>)> = Vec::new();
        for r in recipients {
            let r = r.as_ref();
            let resolved = self.resolve(&Facts { recipient: r, ..*f });
            match out
                .iter_mut()
                .find(|(g, _)| g.rule == resolved.rule && g.first_contact == resolved.first_contact)
            {
                Some((_, list)) => list.push(r.to_string()),
                None => out.push((resolved, vec![r.to_string()])),
            }
        }
        out
    }

    /// Human-readable warnings: rules that can never apply (after a catch-all, or matching
    /// only what an earlier rule matches), conditions that can never hold, and first-contact
    /// settings that do nothing. Empty when all is well.
    pub fn shadowed(&self) -> Vec<String> {
        let mut w = Vec::new();
        for (i, b) in self.rules.iter().enumerate() {
            if let Some(a) = self.rules[..i].iter().find(|a| b.within(a)) {
                if a.is_catch_all() {
                    w.push(format!(
                        "policy {:?} is unreachable: it comes after {:?}, which has no \
                         conditions and matches every message",
                        b.name, a.name
                    ));
                } else {
                    w.push(format!(
                        "policy {:?} is shadowed by the earlier {:?}: every message it matches \
                         is matched there first",
                        b.name, a.name
                    ));
                }
            }
        }
        let all = self.rules.iter().chain(self.first_contact.iter());
        for r in all {
            if !r.auth.is_empty() && self.trusted.is_empty() {
                w.push(format!(
                    "policy {:?} never matches: it has authenticated conditions but \
                     policies.trusted_authserv_ids is empty, so no verdict is believed",
                    r.name
                ));
            }
            if let (Some(lo), Some(hi)) = (r.min_size, r.max_size) {
                if lo > hi {
                    w.push(format!(
                        "policy {:?} never matches: min_size is larger than max_size",
                        r.name
                    ));
                }
            }
        }
        match (&self.first_contact, self.first_contact_days) {
            (Some(fc), 0) => w.push(format!(
                "policies.first_contact_policy names {:?} but first_contact_days = 0 \
                 disables first contact: the rule is never used",
                fc.name
            )),
            // Only once rules are in use: the built-in defaults must check without warnings.
            (None, d) if d > 0 && !self.rules.is_empty() => w.push(
                "policies.first_contact_policy names no rule: first contacts are handled like \
                 everyone else (set it, or first_contact_days = 0 to say so)"
                    .to_string(),
            ),
            _ => {}
        }
        w
    }
}

/// Facts with the addresses normalised once.
struct Norm<'a> {
    sender: &'a str,
    recipient: &'a str,
    f: &'a Facts<'a>,
}

fn show(addr: &str) -> &str {
    if addr.is_empty() {
        "<>"
    } else {
        addr
    }
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Rule {
    /// `Ok(why)` when every condition holds, else `Err(the first that does not)`.
    fn check(&self, n: &Norm) -> Result<Vec<String>, String> {
        let mut why = Vec::new();
        let addr = |what: &str, pats: &[AddrPattern], a: &str, why: &mut Vec<String>| {
            if pats.is_empty() {
                return Ok(());
            }
            match pats.iter().find(|p| p.matches(a)) {
                Some(p) => {
                    why.push(format!("{what} {} matches \"{p}\"", show(a)));
                    Ok(())
                }
                None => Err(format!("{what} {} matches none of {}", show(a), list(pats))),
            }
        };
        addr("sender", &self.sender, n.sender, &mut why)?;
        addr("recipient", &self.recipient, n.recipient, &mut why)?;
        if !self.client.is_empty() {
            let client = n.f.client.map(|c| match c {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(c, IpAddr::V4),
                v4 => v4,
            });
            match client {
                None => return Err("the client address is unknown".into()),
                Some(c) => match self.client.iter().find(|net| net.contains(&c)) {
                    Some(net) => why.push(format!("client {c} is in {net}")),
                    None => return Err(format!("client {c} is in none of {}", list(&self.client))),
                },
            }
        }
        for cond in &self.auth {
            if cond.holds(n.f.auth) {
                why.push(format!("authenticated: {cond}"));
            } else {
                return Err(format!("no trusted Authentication-Results says {cond}"));
            }
        }
        if let Some(lo) = self.min_size {
            if n.f.size < lo {
                return Err(format!("size {} is below min_size {lo}", n.f.size));
            }
        }
        if let Some(hi) = self.max_size {
            if n.f.size > hi {
                return Err(format!("size {} is above max_size {hi}", n.f.size));
            }
        }
        if self.min_size.is_some() || self.max_size.is_some() {
            why.push(format!("size {} is within the limits", n.f.size));
        }
        if why.is_empty() {
            why.push("the rule has no conditions".into());
        }
        Ok(why)
    }

    fn resolved(&self, why: Vec<String>, first_contact: bool) -> Resolved {
        Resolved {
            rule: Some(self.name.clone()),
            sanitize: self.sanitize.clone(),
            first_contact,
            why,
            overrides: self.overrides.clone(),
        }
    }

    fn is_catch_all(&self) -> bool {
        self.sender.is_empty()
            && self.recipient.is_empty()
            && self.client.is_empty()
            && self.auth.is_empty()
            && self.min_size.is_none()
            && self.max_size.is_none()
    }

    /// Whether every message this rule matches is matched by `a` (each of `a`'s conditions
    /// follows from this rule's).
    fn within(&self, a: &Rule) -> bool {
        let pats = |mine: &[AddrPattern], theirs: &[AddrPattern]| {
            theirs.is_empty()
                || (!mine.is_empty() && mine.iter().all(|p| theirs.iter().any(|q| p.within(q))))
        };
        let nets = self
            .client
            .iter()
            .all(|n| a.client.iter().any(|m| m.contains(n)));
        pats(&self.sender, &a.sender)
            && pats(&self.recipient, &a.recipient)
            && (a.client.is_empty() || (!self.client.is_empty() && nets))
            && a.auth.iter().all(|c| self.auth.contains(c))
            && a.min_size.unwrap_or(0) <= self.min_size.unwrap_or(0)
            && a.max_size.unwrap_or(u64::MAX) >= self.max_size.unwrap_or(u64::MAX)
    }
}

/// Compiles one rule against the global `[sanitize]` (as a TOML value).
fn compile(r: &PolicyRule, global: &toml::Value) -> Result<Rule, String> {
    if r.name.trim().is_empty() || r.name.chars().count() > 100 {
        return Err("name: between 1 and 100 characters".into());
    }
    if r.name.chars().any(char::is_control) {
        return Err("name: control characters are not allowed".into());
    }
    let pats = |what: &str, list: &[String], null_ok: bool| {
        list.iter()
            .map(|p| AddrPattern::parse(p, null_ok).map_err(|e| format!("{what}: {e}")))
            .collect::<Result<Vec<_>, _>>()
    };
    let sender = pats("sender", &r.sender, true)?;
    let recipient = pats("recipient", &r.recipient, false)?;
    let auth = r
        .authenticated
        .iter()
        .map(|a| AuthCond::parse(a).map_err(|e| format!("authenticated: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let (min_size, max_size) = (r.min_size.map(|s| s.0), r.max_size.map(|s| s.0));
    if let (Some(lo), Some(hi)) = (min_size, max_size) {
        if lo > hi {
            return Err(format!("min_size {lo} is larger than max_size {hi}"));
        }
    }
    for key in SERVER_ONLY {
        if r.sanitize.contains_key(*key) {
            return Err(format!(
                "sanitize.{key} cannot be set per rule: it sizes the server, not a message"
            ));
        }
    }
    let mut merged = global.clone();
    merge(&mut merged, &toml::Value::Table(r.sanitize.clone()));
    let sanitize: SanitizeConfig = merged.try_into().map_err(|e: toml::de::Error| {
        format!("sanitize: {}", e.to_string().trim().replace('\n', " "))
    })?;
    sanitize.validate("sanitize")?;
    let mut overrides = Vec::new();
    flatten("", &r.sanitize, &mut overrides);
    Ok(Rule {
        name: r.name.clone(),
        sender,
        recipient,
        client: r.client.clone(),
        auth,
        min_size,
        max_size,
        sanitize,
        overrides,
    })
}

/// Lays `over` onto `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Value, over: &toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// `key = value` lines of a table, nested keys dotted (`attachments.office = "disarm"`).
fn flatten(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
    for (k, v) in t {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(inner) => flatten(&key, inner, out),
            v => out.push(format!("{key} = {v}")),
        }
    }
}
