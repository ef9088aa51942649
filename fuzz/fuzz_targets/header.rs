//! Header field decoding on arbitrary bytes: RFC 2047 text, address lists, message ids,
//! Content-Type / Content-Disposition parameters (RFC 2231) and body charset decoding.
//!
//! Besides "never a panic", each decoder's documented promise is asserted, because the rebuild
//! re-encodes these values into the clean message's header: no decoded text may carry a line
//! break or a control character (header injection), every result is bounded, and the streaming
//! charset decoder gives the same text however its input is split.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mugaika::mime::{charset, header, params};
use mugaika_fuzz::{is_line_break_or_control, pieces, Choices};

/// Charset labels the body decoder is asked for, `None` meaning "detect".
const LABELS: &[Option<&str>] = &[
    None,
    Some("iso-2022-jp"),
    Some("ISO-2022-JP-2"),
    Some("shift_jis"),
    Some("cp932"),
    Some("euc-jp"),
    Some("utf-8"),
    Some("us-ascii"),
    Some("utf-7"),
    Some("utf-16"),
    Some("iso-8859-1"),
    Some("gb2312"),
    Some("x-unknown"),
];

fn check_text(t: &str, what: &str) {
    assert!(
        !t.chars().any(is_line_break_or_control),
        "{what}: control or line break left in {t:?}"
    );
}

fn check_value(v: &str, what: &str) {
    assert!(
        !v.chars().any(|c| c.is_control()),
        "{what}: control character left in {v:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    // Unstructured text (Subject, display names).
    let (text, _) = header::decode_text_checked(data);
    check_text(&text, "decode_text");
    assert!(
        text.len() <= header::MAX_TEXT_LEN,
        "decode_text: {} octets",
        text.len()
    );
    assert_eq!(text, text.trim_matches(' '), "decode_text: not trimmed");

    // Address lists.
    let (addrs, _) = header::parse_addresses_checked(data);
    assert!(addrs.len() <= header::MAX_ADDRESSES);
    for a in &addrs {
        assert!(
            !a.addr
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>'),
            "parse_addresses: bad addr-spec {:?}",
            a.addr
        );
        if let Some(name) = &a.name {
            check_text(name, "display name");
        }
    }

    // Message identifiers.
    let ids = header::parse_msg_ids(data);
    assert!(ids.len() <= header::MAX_MSG_IDS);
    for (i, id) in ids.iter().enumerate() {
        assert!(
            !id.is_empty() && id.len() <= 250,
            "msg id length {}",
            id.len()
        );
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>'),
            "msg id {id:?}"
        );
        assert!(!ids[..i].contains(id), "duplicate msg id {id:?}");
    }

    // Parameterised fields.
    let field = params::parse_field(data);
    for (name, value) in field.params.iter().chain(field.duplicates.iter()) {
        assert!(
            !name.bytes().any(|b| b.is_ascii_uppercase()),
            "param name {name:?}"
        );
        check_value(value, "parameter value");
    }
    if let Some(ct) = params::parse_content_type(data) {
        let (t, s) = ct.mime_type.split_once('/').expect("type/subtype");
        assert!(
            !t.is_empty() && !s.is_empty() && !s.contains('/'),
            "{:?}",
            ct.mime_type
        );
        assert_eq!(ct.mime_type, ct.mime_type.to_ascii_lowercase());
    }
    if let Some((disposition, _)) = params::parse_disposition(data) {
        assert_eq!(disposition, disposition.to_ascii_lowercase());
    }

    // Body charset decoding: whole and split give the same text.
    let mut c = Choices::new(data);
    let label = LABELS[c.below(LABELS.len())];
    let seed = [c.byte(), c.byte()];
    let body = c.rest();
    let whole = charset::decode(label, body);
    let mut d = charset::TextDecoder::new(label);
    let mut split = String::new();
    for p in pieces(&seed, body) {
        d.feed(p, &mut split);
    }
    let info = d.finish(&mut split);
    assert_eq!(
        whole.text, split,
        "charset {label:?}: split changed the text"
    );
    assert_eq!(
        (whole.charset, whole.detected, whole.had_errors),
        (info.charset, info.detected, info.had_errors),
        "charset {label:?}: split changed the decision"
    );
});
