//! Delivery to the next hop: queue manager, SMTP client, retries, DSN. (In progress.)
