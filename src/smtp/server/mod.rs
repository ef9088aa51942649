//! The tokio SMTP server. (In progress.)
