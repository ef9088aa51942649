//! SMTP: the sans-I/O protocol layer (`proto`) and the tokio server (`server`). (In progress.)
