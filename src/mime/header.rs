//! Header field parsing and decoding. (Implementation in progress.)
//!
//! Planned API (other modules code against it):
//! - `decode_text(raw: &[u8]) -> String`: an unstructured field (Subject, a display name):
//!   RFC 2047 encoded words (adjacent words joined before decoding), raw 8-bit text detected;
//!   CR, LF and other control characters in the result become spaces.
//! - `parse_content_type(raw: &[u8]) -> Option<ContentType>` and
//!   `parse_params(raw: &[u8]) -> (String, Vec<(String, String)>)` with RFC 2231.
//! - `parse_addresses(raw: &[u8]) -> Vec<Address>`; `parse_msg_ids(raw: &[u8]) -> Vec<String>`.

/// A mailbox: display name (decoded) and addr-spec.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Address {
    pub name: Option<String>,
    pub addr: String,
}
