//! The SMTP protocol without I/O: command lines in, commands out ([`command`]), replies out
//! ([`reply`]), the command-line splitter ([`line`]) and the message data receivers ([`data`]).
//!
//! Nothing here touches a socket, a clock or a file, so every piece is tested by feeding bytes
//! split in every possible way, and the fuzz targets can drive it directly. The tokio server in
//! [`super::server`] only moves bytes between the socket and these types.

pub mod command;
pub mod data;
pub mod line;
pub mod reply;

pub use command::{parse, BodyType, Command, CommandError};
pub use data::{DataOutcome, DataReceiver, LineEndingCheck};
pub use line::{LineError, LineEvent, LineSplitter};
pub use reply::{Enhanced, Reply};
