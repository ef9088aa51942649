//! The durable spool of accepted messages. (In progress.)
