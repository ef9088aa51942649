//! Configuration: one TOML file, parsed with serde (`deny_unknown_fields`, so a typo is an error
//! rather than a silently ignored key), with built-in defaults for every key and a validation
//! pass that turns nonsense (a zero limit, an empty listen list) into a clear error.
//!
//! Every key is documented, with its default, in `config/mugaika.toml`; keep the two in step.
//! Sizes are written as `"50MiB"`, `"64KiB"`, `"1000"` and durations as `"90s"`, `"5m"`, `"4h"`,
//! `"5d"`, because administrators read these files more often than programs do.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub delivery: DeliveryConfig,
    pub spool: SpoolConfig,
    pub quarantine: QuarantineConfig,
    pub sanitize: SanitizeConfig,
    pub mime: MimeConfig,
    pub log: LogConfig,
    pub admin: AdminConfig,
    /// `[policies]`: settings shared by the policy rules.
    pub policies: PoliciesConfig,
    /// `[[policy]]`: per sender / recipient / client rules, first match wins, then the global
    /// `[sanitize]` (see [`crate::policy`]). Kept last: TOML writes arrays of tables last.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy: Vec<PolicyRule>,
}

/// `[policies]`: what the policy rules share.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoliciesConfig {
    /// The authserv-ids (RFC 8601) whose `Authentication-Results` fields are believed. Empty:
    /// none are, and a rule with `authenticated` conditions never matches.
    pub trusted_authserv_ids: Vec<String>,
    /// A sender not seen within this many days is a first contact; 0 disables first contact.
    pub first_contact_days: u32,
    /// The `[[policy]]` rule applied to first contacts (and only to them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_contact_policy: Option<String>,
}

impl Default for PoliciesConfig {
    fn default() -> Self {
        PoliciesConfig {
            trusted_authserv_ids: Vec::new(),
            first_contact_days: 90,
            first_contact_policy: None,
        }
    }
}

/// One `[[policy]]` rule as written: conditions (all given ones must hold; an empty list is no
/// condition) and the `[sanitize]` keys it overrides. Compiled and checked by
/// [`crate::policy::Policies::new`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sender: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipient: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authenticated: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<ByteSize>,
    /// Keys of `[sanitize]` (and `[sanitize.attachments]`) laid over the global ones.
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub sanitize: toml::Table,
}

/// `[server]`: the inbound SMTP listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub hostname: String,
    pub allowed_clients: Vec<IpNet>,
    pub relay_domains: Vec<String>,
    pub max_message_size: ByteSize,
    pub bare_lf: BareLf,
    pub max_recipients: usize,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub max_line_length: ByteSize,
    pub command_timeout: Dur,
    pub data_timeout: Dur,
    pub shutdown_timeout: Dur,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec!["127.0.0.1:2525".parse().expect("literal address")],
            hostname: default_hostname(),
            allowed_clients: vec![
                "127.0.0.0/8".parse().expect("literal net"),
                "::1/128".parse().expect("literal net"),
            ],
            relay_domains: Vec::new(),
            max_message_size: ByteSize(50 << 20),
            bare_lf: BareLf::Reject,
            max_recipients: 100,
            max_connections: 200,
            max_connections_per_client: 50,
            max_line_length: ByteSize(4096),
            command_timeout: Dur(Duration::from_secs(300)),
            data_timeout: Dur(Duration::from_secs(600)),
            shutdown_timeout: Dur(Duration::from_secs(30)),
            tls_cert: None,
            tls_key: None,
        }
    }
}

fn default_hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.is_ascii())
        .unwrap_or_else(|| "localhost".to_string())
}

/// What to do with a bare LF (or bare CR) inside DATA. Only `reject` exists: accepting them is
/// how SMTP smuggling works, and a sanitising relay has no business being lenient here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BareLf {
    Reject,
}

/// `[delivery]`: the SMTP client towards the LGWAN-side server.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    pub next_hop: String,
    pub bounce_next_hop: Option<String>,
    pub tls: DeliveryTls,
    pub retry: Vec<Dur>,
    pub max_queue_time: Dur,
    pub concurrency: usize,
    pub connect_timeout: Dur,
    pub command_timeout: Dur,
    pub auth_user: Option<String>,
    pub auth_password_file: Option<PathBuf>,
    pub helo_name: Option<String>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            next_hop: "127.0.0.1:10025".into(),
            bounce_next_hop: None,
            tls: DeliveryTls::Opportunistic,
            retry: ["1m", "5m", "15m", "1h", "4h"]
                .iter()
                .map(|s| Dur(parse_duration(s).expect("literal duration")))
                .collect(),
            max_queue_time: Dur(Duration::from_secs(5 * 86400)),
            concurrency: 8,
            connect_timeout: Dur(Duration::from_secs(30)),
            command_timeout: Dur(Duration::from_secs(300)),
            auth_user: None,
            auth_password_file: None,
            helo_name: None,
        }
    }
}

/// TLS towards the next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryTls {
    /// Never STARTTLS.
    None,
    /// STARTTLS when offered, without certificate verification (like Postfix `may`).
    Opportunistic,
    /// STARTTLS required and the certificate verified against the system roots.
    Required,
}

/// `[spool]`: where accepted messages wait for delivery.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    pub dir: PathBuf,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: PathBuf::from("./mugaika-spool"),
        }
    }
}

/// `[quarantine]`: where originals are kept.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuarantineConfig {
    /// Encrypted originals (`blobs/`), the SQLite index and, by default, the key. Several
    /// relays sharing one PostgreSQL index share this directory too (e.g. over NFS).
    pub dir: PathBuf,
    /// Originals older than this are purged (by `mugaika quarantine purge` and by `serve`).
    pub retention: Dur,
    /// The AES-256-GCM key (32 random octets), created with mode 0600 if absent. Empty: `key`
    /// inside `dir`.
    pub key_file: Option<PathBuf>,
    /// The index: empty for SQLite at `dir/index.sqlite`, or `postgres://user@host/db`.
    pub database: String,
    /// How often `serve` runs the retention purge.
    pub purge_interval: Dur,
    /// zstd level of the stored originals (1-19).
    pub compression_level: i32,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        QuarantineConfig {
            dir: PathBuf::from("./mugaika-quarantine"),
            retention: Dur(Duration::from_secs(90 * 86400)),
            key_file: None,
            database: String::new(),
            purge_interval: Dur(Duration::from_secs(3600)),
            compression_level: 3,
        }
    }
}

/// `[admin]`: the administrators' HTTP listener (health, metrics, quarantine API and page).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// The bearer token of the API and the web page's login. Empty (and no `token_file`):
    /// the quarantine API and page refuse every request; health and metrics stay open.
    pub token: String,
    /// A file holding the token (first line), instead of `token`.
    pub token_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8025)),
            token: String::new(),
            token_file: None,
        }
    }
}

/// `[sanitize]`: how messages are made harmless.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SanitizeConfig {
    pub output_charset: OutputCharset,
    pub links: LinkPolicy,
    pub notice_language: Language,
    pub subject_tag: String,
    pub on_error: OnError,
    /// Wall-clock budget for sanitising one message.
    pub timeout: Dur,
    /// Largest HTML body handed to the HTML converter; larger ones are reduced by a plain
    /// streaming tag stripper instead.
    pub max_html_size: ByteSize,
    /// Wall-clock budget for one HTML conversion (html2text has hung on hostile input).
    pub html_timeout: Dur,
    /// Converted text kept in memory up to this size, then spilled to a temporary file.
    pub memory_buffer: ByteSize,
    /// Directory for spilled text when sanitising from the CLI (the server uses its spool).
    pub temp_dir: Option<PathBuf>,
    /// Largest attachment handed to a disarm converter; larger ones are removed.
    pub max_attachment_size: ByteSize,
    /// Largest image decoded for re-encoding, in pixels (width x height).
    pub max_image_pixels: u64,
    /// Most entries in one archive or Office package.
    pub max_archive_entries: usize,
    /// Most uncompressed octets in one archive, all members together.
    pub max_archive_size: ByteSize,
    /// Largest compression ratio of one archive member (zip bombs).
    pub max_archive_ratio: u64,
    /// Deepest nesting of archives inside archives.
    pub max_archive_depth: usize,
    /// Quality (1-100) of re-encoded JPEG images.
    pub jpeg_quality: u8,
    /// Resolution of `pdf = "rasterize"` pages, dots per inch.
    pub rasterize_dpi: u32,
    /// Most pages rasterised from one PDF; a longer PDF is disarmed instead.
    pub max_rasterize_pages: usize,
    pub attachments: AttachmentPolicy,
}

impl Default for SanitizeConfig {
    fn default() -> Self {
        SanitizeConfig {
            output_charset: OutputCharset::Utf8,
            links: LinkPolicy::Show,
            notice_language: Language::Ja,
            subject_tag: String::new(),
            on_error: OnError::Quarantine,
            timeout: Dur(Duration::from_secs(60)),
            max_html_size: ByteSize(1 << 20),
            html_timeout: Dur(Duration::from_secs(10)),
            memory_buffer: ByteSize(4 << 20),
            temp_dir: None,
            max_attachment_size: ByteSize(25 << 20),
            max_image_pixels: 25_000_000,
            max_archive_entries: 1000,
            max_archive_size: ByteSize(200 << 20),
            max_archive_ratio: 100,
            max_archive_depth: 3,
            jpeg_quality: 85,
            rasterize_dpi: 100,
            max_rasterize_pages: 50,
            attachments: AttachmentPolicy::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum OutputCharset {
    #[serde(rename = "utf-8")]
    Utf8,
    #[serde(rename = "iso-2022-jp")]
    Iso2022Jp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkPolicy {
    /// Keep the link text and the URL as a plain `<url>` the reader may copy.
    Keep,
    /// Show the URL in brackets after the link text, e.g. `text [https://x]`.
    Show,
    /// Show the URL defanged: `hxxps://example[.]com/`.
    Defang,
    /// Drop URLs; keep only the link text.
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Language {
    Ja,
    En,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Keep the original and deliver a notice-only message.
    Quarantine,
    /// Refuse the message (554 5.6.0 in SMTP, exit 65 in the CLI).
    Reject,
}

/// `[sanitize.attachments]`: the action per attachment type. Disarm converters arrive with the
/// CDR work; until then every value is accepted and validated, and every attachment is removed
/// with a reason naming the policy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttachmentPolicy {
    pub image: AttachmentAction,
    pub pdf: AttachmentAction,
    /// OOXML documents (docx/xlsx/pptx and their macro-enabled forms).
    pub office: AttachmentAction,
    /// Legacy binary Office (doc/xls/ppt), RTF, OneNote, OpenDocument.
    pub legacy_office: AttachmentAction,
    /// Plain-text files (txt, csv, ...), found by content: re-encoded to UTF-8, controls removed.
    pub text: AttachmentAction,
    pub archive: AttachmentAction,
    pub encrypted_archive: AttachmentAction,
    pub other: AttachmentAction,
}

impl Default for AttachmentPolicy {
    fn default() -> Self {
        AttachmentPolicy {
            image: AttachmentAction::Reencode,
            pdf: AttachmentAction::Disarm,
            office: AttachmentAction::Disarm,
            legacy_office: AttachmentAction::Remove,
            text: AttachmentAction::Text,
            archive: AttachmentAction::Inspect,
            encrypted_archive: AttachmentAction::Quarantine,
            other: AttachmentAction::Remove,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttachmentAction {
    Remove,
    Disarm,
    Reencode,
    Rasterize,
    Text,
    Inspect,
    Quarantine,
}

impl AttachmentAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentAction::Remove => "remove",
            AttachmentAction::Disarm => "disarm",
            AttachmentAction::Reencode => "reencode",
            AttachmentAction::Rasterize => "rasterize",
            AttachmentAction::Text => "text",
            AttachmentAction::Inspect => "inspect",
            AttachmentAction::Quarantine => "quarantine",
        }
    }
}

/// `[mime]`: limits of the streaming parser. Past a limit the parser records a flag and
/// degrades safely (the rest of the part becomes opaque data); it never allocates past them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MimeConfig {
    pub max_header_size: ByteSize,
    pub max_depth: usize,
    pub max_parts: usize,
    pub max_boundary_length: usize,
    pub max_line_length: ByteSize,
}

impl Default for MimeConfig {
    fn default() -> Self {
        MimeConfig {
            max_header_size: ByteSize(256 << 10),
            max_depth: 20,
            max_parts: 1000,
            max_boundary_length: 200,
            max_line_length: ByteSize(64 << 10),
        }
    }
}

/// `[log]`: logs and the per-message audit record.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Loads `path` if given, or the built-in defaults.
    pub fn load_or_default(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(p) => Config::load(p),
            None => Ok(Config::default()),
        }
    }

    /// Checks what serde cannot: ranges, consistency between keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let s = &self.server;
        if s.listen.is_empty() {
            return bad("server.listen: at least one address is required".into());
        }
        if s.hostname.is_empty()
            || !s.hostname.is_ascii()
            || s.hostname.contains(char::is_whitespace)
        {
            return bad(format!(
                "server.hostname: {:?} is not a host name",
                s.hostname
            ));
        }
        if s.max_message_size.0 < 1024 {
            return bad("server.max_message_size: must be at least 1KiB".into());
        }
        if s.max_recipients == 0 || s.max_connections == 0 || s.max_connections_per_client == 0 {
            return bad("server.max_recipients, max_connections and max_connections_per_client must be at least 1".into());
        }
        if s.max_line_length.0 < 512 {
            return bad("server.max_line_length: RFC 5321 requires at least 512".into());
        }
        if s.tls_cert.is_some() != s.tls_key.is_some() {
            return bad("server.tls_cert and server.tls_key must be given together".into());
        }
        // An empty relay_domains means "any recipient domain". That is only safe while every
        // allowed client is this machine itself; anything wider would make an open relay.
        if s.relay_domains.is_empty() {
            if let Some(net) = s.allowed_clients.iter().find(|n| !n.addr().is_loopback()) {
                return bad(format!(
                    "server.relay_domains is empty (any domain) but server.allowed_clients admits {net}: \
                     name the domains mugaika relays for, or it would be an open relay"
                ));
            }
        }
        for d in &s.relay_domains {
            if d.is_empty() || d.contains('@') || d.contains(char::is_whitespace) {
                return bad(format!("server.relay_domains: {d:?} is not a domain"));
            }
        }
        let d = &self.delivery;
        check_host_port("delivery.next_hop", &d.next_hop)?;
        if let Some(b) = &d.bounce_next_hop {
            check_host_port("delivery.bounce_next_hop", b)?;
        }
        if d.retry.is_empty() {
            return bad("delivery.retry: at least one interval is required".into());
        }
        if d.concurrency == 0 {
            return bad("delivery.concurrency: must be at least 1".into());
        }
        if d.auth_user.is_some() != d.auth_password_file.is_some() {
            return bad(
                "delivery.auth_user and delivery.auth_password_file must be given together".into(),
            );
        }
        self.sanitize
            .validate("sanitize")
            .map_err(ConfigError::Invalid)?;
        let m = &self.mime;
        if m.max_depth == 0
            || m.max_parts == 0
            || m.max_boundary_length < 70
            || m.max_header_size.0 < 1024
            || m.max_line_length.0 < 1000
        {
            return bad("mime: max_depth and max_parts must be at least 1, max_boundary_length at least 70, max_header_size at least 1KiB, max_line_length at least 1000".into());
        }
        // The rules: patterns, names, and every override merged and checked like [sanitize].
        crate::policy::Policies::new(self)?;
        Ok(())
    }

    /// This configuration with another `[sanitize]`, e.g. a rule's
    /// ([`crate::policy::Resolved::sanitize`]), for the pipeline, which takes a `&Config`.
    pub fn with_sanitize(&self, sanitize: SanitizeConfig) -> Config {
        Config {
            sanitize,
            ..self.clone()
        }
    }
}

impl SanitizeConfig {
    /// Checks what serde cannot. `key` prefixes the key names in the message (`"sanitize"`,
    /// or the rule's name for an override), so the administrator finds the line.
    pub fn validate(&self, key: &str) -> Result<(), String> {
        let bad = |m: String| Err(m);
        let z = self;
        if z.subject_tag.chars().any(|c| c.is_control()) {
            return bad(format!(
                "{key}.subject_tag: control characters are not allowed"
            ));
        }
        if z.timeout.0.is_zero() || z.html_timeout.0.is_zero() {
            return bad(format!(
                "{key}.timeout and {key}.html_timeout must be positive"
            ));
        }
        if !(1..=100).contains(&z.jpeg_quality) {
            return bad(format!("{key}.jpeg_quality: must be between 1 and 100"));
        }
        if z.max_image_pixels == 0
            || z.max_archive_entries == 0
            || z.max_archive_ratio == 0
            || z.max_attachment_size.0 == 0
        {
            return bad(format!("{key}: max_attachment_size, max_image_pixels, max_archive_entries and max_archive_ratio must be positive"));
        }
        let a = &z.attachments;
        use AttachmentAction as A;
        // `quarantine` is allowed everywhere: the attachment is held with the original (which
        // is always kept) for an administrator to release, e.g. for first-contact senders.
        let allowed: [(&str, AttachmentAction, &[AttachmentAction]); 8] = [
            ("image", a.image, &[A::Remove, A::Reencode, A::Quarantine]),
            (
                "pdf",
                a.pdf,
                &[A::Remove, A::Disarm, A::Rasterize, A::Text, A::Quarantine],
            ),
            (
                "office",
                a.office,
                &[A::Remove, A::Disarm, A::Text, A::Quarantine],
            ),
            (
                "legacy_office",
                a.legacy_office,
                &[A::Remove, A::Text, A::Quarantine],
            ),
            ("text", a.text, &[A::Remove, A::Text, A::Quarantine]),
            (
                "archive",
                a.archive,
                &[A::Remove, A::Inspect, A::Quarantine],
            ),
            (
                "encrypted_archive",
                a.encrypted_archive,
                &[A::Remove, A::Quarantine],
            ),
            ("other", a.other, &[A::Remove, A::Quarantine]),
        ];
        for (name, value, ok) in allowed {
            if !ok.contains(&value) {
                let names: Vec<&str> = ok.iter().map(|a| a.as_str()).collect();
                return bad(format!(
                    "{key}.attachments.{name}: {:?} is not one of {}",
                    value.as_str(),
                    names.join(", ")
                ));
            }
        }
        Ok(())
    }
}

fn check_host_port(key: &str, value: &str) -> Result<(), ConfigError> {
    match value.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0) => {
            Ok(())
        }
        _ => Err(ConfigError::Invalid(format!(
            "{key}: {value:?} is not host:port"
        ))),
    }
}

/// A size in octets, written in the file as `"50MiB"`, `"512KiB"`, `"10MB"` or a bare integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n >= size && n.is_multiple_of(size) {
                return write!(f, "{}{unit}", n / size);
            }
        }
        write!(f, "{n}")
    }
}

/// Parses `"50MiB"`, `"64 KiB"`, `"10MB"`, `"1000"`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => return Err(format!("{s:?}: unknown unit {other:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses `"90s"`, `"5m"`, `"4h"`, `"5d"`, `"500ms"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration"))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86400)),
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (use ms, s, m, h or d)"
            ))
        }
    };
    Ok(d)
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => parse_size(&s).map(ByteSize).map_err(de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A duration, written in the file as `"90s"`, `"5m"`, `"4h"`, `"5d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        for (unit, size) in [
            ("d", 86_400_000u128),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ] {
            if ms >= size && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Dur).map_err(de::Error::custom)
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_design() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.server.listen[0].to_string(), "127.0.0.1:2525");
        assert_eq!(c.delivery.next_hop, "127.0.0.1:10025");
        assert_eq!(c.spool.dir, PathBuf::from("./mugaika-spool"));
        assert_eq!(c.server.max_message_size.0, 50 << 20);
    }

    #[test]
    fn the_example_file_parses_and_equals_the_defaults() {
        let text = include_str!("../config/mugaika.toml");
        let parsed = Config::parse(text).unwrap();
        let mut parsed = toml::to_string(&parsed).unwrap();
        let mut default = toml::to_string(&Config::default()).unwrap();
        // hostname is machine-dependent in the defaults and a placeholder in the example.
        for s in [&mut parsed, &mut default] {
            *s = s
                .lines()
                .filter(|l| !l.starts_with("hostname"))
                .collect::<Vec<_>>()
                .join("\n");
        }
        assert_eq!(
            parsed, default,
            "config/mugaika.toml documents a value different from the built-in default"
        );
    }

    #[test]
    fn the_example_rules_in_the_file_are_valid() {
        // The commented-out [[policy]] examples, uncommented, with first contact pointing at
        // the example first-contact rule: what an administrator gets by removing the `# `.
        let text = include_str!("../config/mugaika.toml");
        // The first line that is exactly `# [[policy]]` (the prose above it names the table too).
        let start = text
            .find("\n# [[policy]]\n")
            .map(|i| i + 1)
            .expect("the example rules are documented");
        let rules: String = text[start..]
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#')))
            .map(|l| format!("{l}\n"))
            .collect();
        let cfg = Config::parse(&format!(
            "[policies]\nfirst_contact_policy = \"first-contact\"\n\
             trusted_authserv_ids = [\"mx.city.example.lg.jp\"]\n{rules}"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.policy.len(), 2);
        let p = crate::policy::Policies::new(&cfg).unwrap();
        assert!(p.first_contact_enabled());
        assert_eq!(p.shadowed(), Vec::<String>::new());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(Config::parse("[server]\nlisten_on = []\n").is_err());
        assert!(Config::parse("[sanitize]\nlinks = \"maybe\"\n").is_err());
        assert!(Config::parse("[sanitize.attachments]\nother = \"disarm\"\n").is_err());
        assert!(Config::parse("[server]\nmax_message_size = \"12 parsecs\"\n").is_err());
        assert!(Config::parse("[delivery]\nnext_hop = \"nohost\"\n").is_err());
        // Never an open relay: any-domain relaying only for loopback clients.
        assert!(Config::parse("[server]\nallowed_clients = [\"0.0.0.0/0\"]\n").is_err());
        assert!(Config::parse(
            "[server]\nallowed_clients = [\"0.0.0.0/0\"]\nrelay_domains = [\"city.example.lg.jp\"]\n"
        )
        .is_ok());
        let c = Config::parse(
            "[server]\nmax_message_size = \"10MiB\"\n[delivery]\nretry = [\"30s\", \"2h\"]\n",
        )
        .unwrap();
        assert_eq!(c.server.max_message_size.0, 10 << 20);
        assert_eq!(c.delivery.retry[1].0, Duration::from_secs(7200));
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("MiB").is_err());
        assert_eq!(parse_duration("5d").unwrap(), Duration::from_secs(432000));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("5 fortnights").is_err());
        assert_eq!(ByteSize(50 << 20).to_string(), "50MiB");
        assert_eq!(Dur(Duration::from_secs(3600)).to_string(), "1h");
    }
}
