//! mugaika — a mail sanitisation (無害化) relay.
//!
//! ```text
//! smtp::server ─▶ smtp::proto (DATA) ─▶ spool (original, fsync) ─▶ mime (streaming parser)
//!    │                                                                │ events
//!    │                                                                ▼
//!    │                                              sanitise (policy → per-part actions)
//!    │                                                                │ CleanModel
//!    │                                                                ▼
//!    └── 250 only after ◀────── spool (clean message + envelope, fsync) ◀── rebuild ─▶ verify
//!                                        │
//!                                        ▼
//!                         deliver (queue manager, SMTP client, retries, DSN)
//! ```
//!
//! [`pipeline`] ties parser, sanitiser, rebuild and verifier together for one message; the CLI
//! (`mugaika sanitize`) and the SMTP server both go through it.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cdr;
pub mod config;
pub mod deliver;
pub mod mime;
pub mod pipeline;
pub mod policy;
pub mod quarantine;
pub mod rebuild;
pub mod sanitise;
pub mod smtp;
pub mod spool;
pub mod verify;
