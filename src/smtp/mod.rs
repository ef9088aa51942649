//! SMTP: the inbound side of the relay. [`proto`] is the protocol without I/O (command parsing,
//! replies, the DATA receiver that defeats SMTP smuggling); [`server`] is the tokio listener and
//! session state machine that streams each message into the spool, has it sanitised, and
//! answers 250 only once the entry is durable.

pub mod proto;
pub mod server;
