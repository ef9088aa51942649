//! The envelope of a spooled message: who sent it, to whom, from where, and where each
//! recipient stands in delivery. Stored as JSON next to the message (`envelope.json`) so that an
//! administrator can read it and so that a crash at any instant leaves either the old or the new
//! version (it is always rewritten atomically by [`super::Spool::update`]).
//!
//! Times are Unix milliseconds (`u64`): tests run the retry schedule in milliseconds and the
//! file stays trivially portable.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The current time in Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Where one recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RcptState {
    /// Not yet accepted by the next hop (never tried, or deferred by a 4xx / a connection error).
    Pending,
    /// The next hop accepted the message for this recipient: never sent again.
    Delivered,
    /// Permanently failed (5xx, or `max_queue_time` passed): never sent again; a DSN is due
    /// unless the sender is null.
    Bounced,
}

/// One envelope recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The address as given in `RCPT TO:<…>`, without the angle brackets.
    pub addr: String,
    pub state: RcptState,
    /// Delivery attempts that reached this recipient (RCPT sent or connection failed).
    #[serde(default)]
    pub attempts: u32,
    /// The last reply (or error) seen for this recipient, e.g. `"550 5.1.1 no such user"`.
    #[serde(default)]
    pub last_reply: Option<String>,
    /// The host that gave `last_reply`, for the DSN's `Remote-MTA`.
    #[serde(default)]
    pub remote_mta: Option<String>,
    /// For a bounced recipient: the DSN has been enqueued (or none is due). Set after the DSN
    /// entry is committed, so a crash in between yields at most a duplicate DSN, never none.
    #[serde(default)]
    pub dsn_done: bool,
    /// When `state` last changed (Unix ms); 0 if never.
    #[serde(default)]
    pub updated_at: u64,
    /// The clean message this recipient gets, a file name inside the entry; `None` for the
    /// entry's `clean`. Recipients under different policy rules get different clean messages
    /// of one original (issue 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean: Option<String>,
}

impl Recipient {
    /// A pending recipient that has never been tried.
    pub fn new(addr: impl Into<String>) -> Recipient {
        Recipient {
            addr: addr.into(),
            state: RcptState::Pending,
            attempts: 0,
            last_reply: None,
            remote_mta: None,
            dsn_done: false,
            updated_at: 0,
            clean: None,
        }
    }
}

/// What kind of spool entry this is: it decides the route and whether a DSN may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// A sanitised message accepted by the SMTP server.
    #[default]
    Message,
    /// A delivery status notification we generated; delivered via `delivery.bounce_next_hop`.
    Dsn,
}

/// The envelope of one spooled message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The spool id; [`super::Incoming::commit`] overwrites it with the entry's own id.
    pub id: String,
    /// The reverse path of `MAIL FROM:<…>`; empty for the null sender `<>`.
    pub sender: String,
    pub recipients: Vec<Recipient>,
    /// The client's IP address (text), empty for locally generated entries.
    #[serde(default)]
    pub client: String,
    /// The client's EHLO/HELO argument.
    #[serde(default)]
    pub helo: String,
    /// When the message arrived (Unix ms); the DSN's `Arrival-Date`.
    pub received_at: u64,
    /// When the entry entered the queue (Unix ms); `max_queue_time` counts from here.
    #[serde(default)]
    pub queued_at: u64,
    /// When the next delivery attempt is due (Unix ms); 0 means now.
    #[serde(default)]
    pub next_attempt: u64,
    /// Delivery attempts of the message as a whole (drives the retry schedule).
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub kind: EntryKind,
    /// Size of the clean message in octets (filled by commit).
    #[serde(default)]
    pub size: u64,
    /// The client used SMTPUTF8 (addresses may be non-ASCII).
    #[serde(default)]
    pub smtputf8: bool,
    /// The quarantine id of the original, if any (for the audit record).
    #[serde(default)]
    pub quarantine_id: Option<String>,
    /// The message was received over TLS.
    #[serde(default)]
    pub tls: bool,
}

impl Envelope {
    /// A new envelope for `sender` (`""` for `<>`) and `recipients`, received now.
    pub fn new<I, S>(sender: impl Into<String>, recipients: I) -> Envelope
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Envelope {
            id: String::new(),
            sender: sender.into(),
            recipients: recipients.into_iter().map(Recipient::new).collect(),
            client: String::new(),
            helo: String::new(),
            received_at: now_ms(),
            queued_at: 0,
            next_attempt: 0,
            attempts: 0,
            kind: EntryKind::Message,
            size: 0,
            smtputf8: false,
            quarantine_id: None,
            tls: false,
        }
    }

    /// True when no recipient is pending: the entry may leave the spool (once its DSNs are
    /// enqueued, see [`Envelope::dsn_due`]).
    pub fn is_finished(&self) -> bool {
        self.recipients
            .iter()
            .all(|r| r.state != RcptState::Pending)
    }

    /// Recipients still to be delivered.
    pub fn pending(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients
            .iter()
            .filter(|r| r.state == RcptState::Pending)
    }

    /// True for the null reverse path `<>`: such a message never causes a DSN.
    pub fn is_null_sender(&self) -> bool {
        self.sender.is_empty()
    }

    /// Bounced recipients whose DSN has not been enqueued yet (never any for a null sender or
    /// for a DSN itself).
    pub fn dsn_due(&self) -> bool {
        !self.is_null_sender()
            && self.kind == EntryKind::Message
            && self
                .recipients
                .iter()
                .any(|r| r.state == RcptState::Bounced && !r.dsn_done)
    }
}
