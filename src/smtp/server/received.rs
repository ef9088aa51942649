//! Our `Received:` trace field (RFC 5321 4.4) and the RFC 5322 date it ends with.
//!
//! The value is built from what the client said (HELO name), what we saw (its IP address, TLS)
//! and who we are (hostname, the spool id), so an administrator can follow one message from the
//! Internet MTA's logs through ours to the LGWAN server's. Client-supplied text is reduced to
//! characters that cannot break the field's syntax (no parentheses, semicolons or controls).

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the `Received:` field describes.
#[derive(Debug, Clone)]
pub struct TraceInfo<'a> {
    pub helo: &'a str,
    pub client: IpAddr,
    pub hostname: &'a str,
    pub id: &'a str,
    /// `SMTP` after HELO, `ESMTP` after EHLO; `S` is appended for TLS (RFC 3848).
    pub esmtp: bool,
    /// e.g. `using TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384`, when encrypted.
    pub tls: Option<&'a str>,
    /// The single recipient, if there is exactly one (more are not listed, for privacy).
    pub for_rcpt: Option<&'a str>,
    pub when: SystemTime,
}

/// The field value, without `Received:` and on one line (the rebuild folds it).
pub fn received_value(t: &TraceInfo<'_>) -> String {
    let proto = match (t.esmtp, t.tls.is_some()) {
        (false, false) => "SMTP",
        (false, true) => "SMTPS",
        (true, false) => "ESMTP",
        (true, true) => "ESMTPS",
    };
    let addr = match t.client {
        IpAddr::V4(a) => format!("[{a}]"),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => format!("[{v4}]"),
            None => format!("[IPv6:{a}]"),
        },
    };
    let mut v = format!(
        "from {} ({addr}) by {} (mugaika) with {proto}",
        safe(t.helo),
        safe(t.hostname)
    );
    if let Some(tls) = t.tls {
        let words: Vec<String> = tls.split(' ').map(safe).collect();
        v.push_str(&format!(" ({})", words.join(" ")));
    }
    v.push_str(&format!(" id {}", safe(t.id)));
    if let Some(r) = t.for_rcpt {
        v.push_str(&format!(" for <{}>", safe(r)));
    }
    v.push_str("; ");
    v.push_str(&rfc5322_date(t.when));
    v
}

/// Visible ASCII without the characters that structure a Received field.
fn safe(s: &str) -> String {
    let out: String = s
        .chars()
        .take(255)
        .map(|c| {
            if c.is_ascii_graphic() && !"()<>;\\\"".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        "unknown".into()
    } else {
        out
    }
}

/// `Tue, 01 Jul 2025 03:04:05 +0000` (UTC; times before 1970 are written as the epoch).
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let wd = WD.get((days % 7) as usize).copied().unwrap_or("Thu");
    let mon = MON
        .get(m.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("Jan");
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} +0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31): Howard Hinnant's algorithm.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 +0000");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_723); // 2000-02-29 01:02:03
        assert_eq!(rfc5322_date(t), "Tue, 29 Feb 2000 01:02:03 +0000");
        let t = UNIX_EPOCH + Duration::from_secs(1_751_338_800); // 2025-07-01 03:00:00
        assert_eq!(rfc5322_date(t), "Tue, 01 Jul 2025 03:00:00 +0000");
    }

    #[test]
    fn value() {
        let v = received_value(&TraceInfo {
            helo: "evil(host);\r\nX-Injected: 1",
            client: "::ffff:192.0.2.7".parse().unwrap(),
            hostname: "mugaika.example.lg.jp",
            id: "0123ABCD",
            esmtp: true,
            tls: Some("using TLSv1.3 with (cipher)"),
            for_rcpt: Some("user@city.example.lg.jp"),
            when: UNIX_EPOCH,
        });
        assert_eq!(
            v,
            "from evil_host____X-Injected:_1 ([192.0.2.7]) by mugaika.example.lg.jp (mugaika) \
             with ESMTPS (using TLSv1.3 with _cipher_) id 0123ABCD for <user@city.example.lg.jp>; \
             Thu, 01 Jan 1970 00:00:00 +0000"
        );
        let v = received_value(&TraceInfo {
            helo: "",
            client: "2001:db8::1".parse().unwrap(),
            hostname: "h",
            id: "1",
            esmtp: false,
            tls: None,
            for_rcpt: None,
            when: UNIX_EPOCH,
        });
        assert!(v.starts_with("from unknown ([IPv6:2001:db8::1]) by h (mugaika) with SMTP id 1;"));
    }
}
