//! Delivery status notifications (RFC 3464): a `multipart/report; report-type=delivery-status`
//! with a human-readable part (English and Japanese, UTF-8 base64 so that it survives any
//! 7-bit hop), the machine-readable `message/delivery-status`, and the header section of the
//! clean message as `text/rfc822-headers` (never the body: the sender has it, and a bounce
//! must not become a way to carry content around the sanitiser).
//!
//! A DSN is sent from the null reverse path, so it can never cause another DSN.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use base64::Engine;

use crate::spool::{Envelope, Recipient};

/// At most this much of the clean message's header section goes into the DSN.
const MAX_HEADERS: u64 = 64 << 10;

/// An RFC 5322 date for `ms` Unix milliseconds.
pub fn rfc822_date(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(0);
    mail_parser::DateTime::from_timestamp(secs).to_rfc822()
}

/// The header section of the message at `path` (up to the empty line), CRLF line endings,
/// bounded to [`MAX_HEADERS`] at a line boundary.
pub fn read_headers(path: &Path) -> io::Result<Vec<u8>> {
    let mut r = BufReader::new(File::open(path)?.take(MAX_HEADERS));
    let mut out = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 || !line.ends_with(b"\n") {
            break; // end of file, or a line cut by the bound: drop it
        }
        while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            line.pop();
        }
        if line.is_empty() {
            break;
        }
        // The part is declared 7-bit: anything else (impossible in a clean message) becomes '?'.
        out.extend(
            line.iter()
                .map(|&b| if b.is_ascii() && b != 0 { b } else { b'?' }),
        );
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

/// The RFC 3463 status of a bounced recipient and whether it bounced on a permanent reply
/// (`false`: the queue lifetime expired on temporary failures).
pub fn status_of(r: &Recipient) -> (String, bool) {
    let reply = r.last_reply.as_deref().unwrap_or("");
    let mut words = reply.split_whitespace();
    let code = words
        .next()
        .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()));
    let enhanced = words.next().filter(|e| is_enhanced(e));
    let permanent = code.is_some_and(|c| c.starts_with('5'));
    let status = match (enhanced, permanent) {
        (Some(e), true) if e.starts_with('5') => e.to_string(),
        (_, true) => "5.0.0".to_string(),
        (Some(e), false) if e.starts_with('4') => e.to_string(),
        (_, false) => "4.4.7".to_string(),
    };
    (status, permanent)
}

fn is_enhanced(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && matches!(parts.first(), Some(&("2" | "4" | "5")))
        && parts
            .iter()
            .skip(1)
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// True if `s` looks like an SMTP reply (`NNN text`), for the Diagnostic-Code type.
fn is_smtp_reply(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 3
        && b.iter().take(3).all(u8::is_ascii_digit)
        && b.get(3).is_none_or(|&c| c == b' ' || c == b'-')
}

/// An address for a DSN field: ASCII as is (`rfc822`), otherwise RFC 6533 `utf-8` with
/// non-ASCII and control characters as `\x{HEX}`.
fn address_field(addr: &str) -> String {
    if addr.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return format!("rfc822; {addr}");
    }
    let mut out = String::from("utf-8; ");
    for c in addr.chars() {
        if c.is_ascii_graphic() && c != '\\' {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{{{:X}}}", c as u32));
        }
    }
    out
}

/// Text from the spool or the network made safe for one header line.
fn field_text(s: &str) -> String {
    crate::deliver::client::printable(s)
}

fn wrap_base64(data: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = Vec::with_capacity(b64.len() + b64.len() / 76 * 2 + 2);
    for chunk in b64.as_bytes().chunks(76) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Everything a DSN needs.
pub struct DsnInput<'a> {
    /// Our host name (`Reporting-MTA`, `From: MAILER-DAEMON@…`).
    pub hostname: &'a str,
    /// The envelope of the failed message.
    pub envelope: &'a Envelope,
    /// The bounced recipients to report.
    pub recipients: Vec<&'a Recipient>,
    /// The header section of the clean message (see [`read_headers`]).
    pub headers: &'a [u8],
    /// Now, in Unix milliseconds.
    pub now_ms: u64,
}

/// Builds the DSN message (CRLF, 7-bit, lines ≤ 998).
pub fn build(input: &DsnInput<'_>) -> Vec<u8> {
    let host = field_text(input.hostname);
    let env = input.envelope;
    let mut boundary;
    loop {
        boundary = format!("=_mugaika_dsn_{:016x}", rand::random::<u64>());
        if !input
            .headers
            .windows(boundary.len())
            .any(|w| w == boundary.as_bytes())
        {
            break;
        }
    }
    let date = rfc822_date(input.now_ms);
    let subject_ja = base64::engine::general_purpose::STANDARD.encode("配信不能のお知らせ");
    let sender = if env.sender.is_ascii() {
        field_text(&env.sender)
    } else {
        String::new()
    };

    let mut m: Vec<u8> = Vec::new();
    let line = |m: &mut Vec<u8>, s: &str| {
        m.extend_from_slice(s.as_bytes());
        m.extend_from_slice(b"\r\n");
    };
    line(
        &mut m,
        &format!("From: Mail Delivery System <MAILER-DAEMON@{host}>"),
    );
    if sender.is_empty() {
        line(&mut m, "To: undisclosed-recipients:;");
    } else {
        line(&mut m, &format!("To: <{sender}>"));
    }
    line(
        &mut m,
        &format!("Subject: Undelivered Mail Returned to Sender =?UTF-8?B?{subject_ja}?="),
    );
    line(&mut m, &format!("Date: {date}"));
    line(
        &mut m,
        &format!(
            "Message-ID: <{}.{:08x}.dsn@{host}>",
            field_text(&env.id),
            rand::random::<u32>()
        ),
    );
    line(&mut m, "Auto-Submitted: auto-replied");
    line(&mut m, "MIME-Version: 1.0");
    line(
        &mut m,
        &format!(
            "Content-Type: multipart/report; report-type=delivery-status;\r\n boundary=\"{boundary}\""
        ),
    );
    line(&mut m, "");
    line(
        &mut m,
        "This is a MIME-encapsulated delivery status notification.",
    );
    line(&mut m, "");

    // 1. Human-readable text, English then Japanese.
    let mut en = String::new();
    let mut ja = String::new();
    for r in &input.recipients {
        let (_, permanent) = status_of(r);
        let reply = field_text(r.last_reply.as_deref().unwrap_or(""));
        let addr = &r.addr;
        if permanent {
            en.push_str(&format!(
                "<{addr}>: refused by the receiving server: {reply}\n"
            ));
            ja.push_str(&format!(
                "<{addr}>: 受信側サーバーが拒否しました: {reply}\n"
            ));
        } else {
            en.push_str(&format!(
                "<{addr}>: delivery time expired; last error: {reply}\n"
            ));
            ja.push_str(&format!(
                "<{addr}>: 配信期限を過ぎました。最後のエラー: {reply}\n"
            ));
        }
    }
    let text = format!(
        "This is the mail system at host {host}.\n\n\
         Your message could not be delivered to one or more recipients.\n\
         It has been returned with the headers of the delivered (sanitised) form attached.\n\n\
         {en}\n\
         ----\n\n\
         {host} のメールシステムからのお知らせです。\n\n\
         お送りいただいたメールを、次の宛先に配信できませんでした。\n\
         添付のヘッダーは無害化後のメッセージのものです。\n\n\
         {ja}\n\
         (This message was generated automatically. / このメールは自動送信されています。)\n"
    )
    .replace('\n', "\r\n");
    line(&mut m, &format!("--{boundary}"));
    line(&mut m, "Content-Type: text/plain; charset=utf-8");
    line(&mut m, "Content-Transfer-Encoding: base64");
    line(&mut m, "Content-Description: Notification");
    line(&mut m, "");
    m.extend_from_slice(&wrap_base64(text.as_bytes()));
    line(&mut m, "");

    // 2. message/delivery-status.
    line(&mut m, &format!("--{boundary}"));
    line(&mut m, "Content-Type: message/delivery-status");
    line(&mut m, "Content-Description: Delivery report");
    line(&mut m, "");
    line(&mut m, &format!("Reporting-MTA: dns; {host}"));
    line(
        &mut m,
        &format!("X-Mugaika-Queue-ID: {}", field_text(&env.id)),
    );
    if !sender.is_empty() {
        line(&mut m, &format!("X-Mugaika-Sender: rfc822; {sender}"));
    }
    line(
        &mut m,
        &format!("Arrival-Date: {}", rfc822_date(env.received_at)),
    );
    for r in &input.recipients {
        let (status, _) = status_of(r);
        let reply = field_text(r.last_reply.as_deref().unwrap_or(""));
        line(&mut m, "");
        line(
            &mut m,
            &format!("Final-Recipient: {}", address_field(&r.addr)),
        );
        line(&mut m, "Action: failed");
        line(&mut m, &format!("Status: {status}"));
        if let Some(mta) = &r.remote_mta {
            line(&mut m, &format!("Remote-MTA: dns; {}", field_text(mta)));
        }
        if is_smtp_reply(&reply) {
            line(&mut m, &format!("Diagnostic-Code: smtp; {reply}"));
        } else if !reply.is_empty() {
            line(&mut m, &format!("Diagnostic-Code: X-mugaika; {reply}"));
        }
        if r.updated_at > 0 {
            line(
                &mut m,
                &format!("Last-Attempt-Date: {}", rfc822_date(r.updated_at)),
            );
        }
    }
    line(&mut m, "");

    // 3. The clean message's header section.
    line(&mut m, &format!("--{boundary}"));
    line(&mut m, "Content-Type: text/rfc822-headers");
    line(&mut m, "Content-Description: Undelivered message headers");
    line(&mut m, "");
    m.extend_from_slice(input.headers);
    line(&mut m, "");
    line(&mut m, &format!("--{boundary}--"));
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::RcptState;
    use mail_parser::MimeHeaders;

    fn rcpt(addr: &str, reply: Option<&str>) -> Recipient {
        let mut r = Recipient::new(addr);
        r.state = RcptState::Bounced;
        r.last_reply = reply.map(str::to_string);
        r
    }

    #[test]
    fn statuses() {
        assert_eq!(
            status_of(&rcpt("a", Some("550 5.1.1 no such user"))),
            ("5.1.1".into(), true)
        );
        assert_eq!(
            status_of(&rcpt("a", Some("554 transaction failed"))),
            ("5.0.0".into(), true)
        );
        assert_eq!(
            status_of(&rcpt("a", Some("450 4.2.1 busy"))),
            ("4.2.1".into(), false)
        );
        assert_eq!(
            status_of(&rcpt("a", Some("cannot connect to x: refused"))),
            ("4.4.7".into(), false)
        );
        assert_eq!(status_of(&rcpt("a", None)), ("4.4.7".into(), false));
        assert_eq!(
            status_of(&rcpt("a", Some("550 4.1.1 odd"))),
            ("5.0.0".into(), true)
        );
    }

    #[test]
    fn addresses_in_fields() {
        assert_eq!(address_field("a@b.example"), "rfc822; a@b.example");
        assert_eq!(
            address_field("山田@例.jp"),
            "utf-8; \\x{5C71}\\x{7530}@\\x{4F8B}.jp"
        );
    }

    #[test]
    fn dsn_is_a_seven_bit_crlf_multipart_report() {
        let mut env = Envelope::new("alice@example.com", ["bob@city.example.lg.jp"]);
        env.id = "0123456789ABCDEF01".into();
        let r = rcpt(
            "bob@city.example.lg.jp",
            Some("550 5.1.1 <bob>: unknown\r\nuser"),
        );
        let msg = build(&DsnInput {
            hostname: "mugaika.example",
            envelope: &env,
            recipients: vec![&r],
            headers: b"Subject: hello\r\nFrom: alice@example.com\r\n",
            now_ms: 1_700_000_000_000,
        });
        assert!(msg.is_ascii());
        assert!(!msg.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
        assert!(msg.split(|&b| b == b'\n').all(|l| l.len() <= 998));
        let parsed = mail_parser::MessageParser::default().parse(&msg).unwrap();
        let ct = parsed.content_type().unwrap();
        assert_eq!(ct.ctype(), "multipart");
        assert_eq!(ct.subtype(), Some("report"));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        assert_eq!(parsed.parts.len(), 4);
        let text = parsed.body_text(0).unwrap();
        assert!(text.contains("bob@city.example.lg.jp"), "{text}");
        assert!(text.contains("配信できませんでした"), "{text}");
        let s = String::from_utf8_lossy(&msg);
        assert!(s.contains("Final-Recipient: rfc822; bob@city.example.lg.jp\r\n"));
        assert!(s.contains("Status: 5.1.1\r\n"));
        assert!(s.contains("Diagnostic-Code: smtp; 550 5.1.1 <bob>: unknown user\r\n"));
        assert!(s.contains(
            "Content-Type: text/rfc822-headers\r\nContent-Description: Undelivered message \
             headers\r\n\r\nSubject: hello\r\nFrom: alice@example.com\r\n"
        ));
        assert!(s.contains("Reporting-MTA: dns; mugaika.example\r\n"));
    }
}
