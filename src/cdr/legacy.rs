//! Legacy Office formats: OLE2 Word/Excel/PowerPoint (doc/xls/ppt), RTF, OneNote and ODF.
//!
//! These formats cannot be rebuilt without their active parts the way OOXML packages can
//! (macros live in binary streams interleaved with the document), so the policy
//! `legacy_office` decides: `remove` (the default) drops them, `quarantine` holds the
//! original, and `text` delivers only their text as a UTF-8 `text/plain` attachment — nothing
//! but extracted characters leaves, so macros, OLE objects and embedded files never do.
//! Encrypted OLE2 files (EncryptionInfo / EncryptedPackage) follow `encrypted_archive`.

use super::archive::{self, ArchiveError, TreeScope, ZipIn};
use super::office::xml::{self, Kind, Tokenizer};
use super::{Disarmed, Limits, Policy, Verdict};
use crate::config::AttachmentAction;

/// Legacy OLE2 Office, RTF, OneNote, ODF: removed, or their text extracted (`office = "text"`).
pub fn legacy(data: &[u8], name: &str, policy: &Policy) -> Verdict {
    // An encrypted OOXML document is an OLE2 file holding "EncryptionInfo" and
    // "EncryptedPackage" streams (directory names in UTF-16LE).
    if name == "ole2" && ole2_encrypted(data) {
        return archive::encrypted_verdict(policy, "encrypted Office document");
    }
    if policy.attachments.office == AttachmentAction::Text {
        let text = match name {
            "rtf" => Some(rtf_to_text(data, policy.limits.max_size)),
            "odf" => {
                let _scope = TreeScope::enter(&policy.limits);
                match odf_text(data, &policy.limits) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        return Verdict::Remove {
                            reason: format!("{name}: {e}"),
                        }
                    }
                }
            }
            _ => None,
        };
        if let Some(text) = text {
            return Verdict::Keep(Disarmed {
                data: text.into_bytes(),
                content_type: "text/plain; charset=utf-8".into(),
                extension: Some("txt".into()),
                changes: vec![format!("only the text of the {name} document was kept")],
                extra: Vec::new(),
            });
        }
    }
    let what = match name {
        "ole2" => "legacy binary Office document (doc/xls/ppt)",
        "rtf" => "RTF document (may embed OLE objects)",
        "onenote" => "OneNote document (may embed files)",
        "odf" => "OpenDocument file (may carry macros)",
        _ => "legacy office document",
    };
    let how = if policy.attachments.office == AttachmentAction::Text {
        "its text cannot be extracted"
    } else {
        "macros and embedded objects cannot be removed from it"
    };
    Verdict::Remove {
        reason: format!("{name}: {what}, {how}"),
    }
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

fn ole2_encrypted(data: &[u8]) -> bool {
    memchr::memmem::find(data, &utf16le("EncryptedPackage")).is_some()
        && memchr::memmem::find(data, &utf16le("EncryptionInfo")).is_some()
}

fn odf_text(data: &[u8], limits: &Limits) -> Result<String, ArchiveError> {
    let mut zin = ZipIn::open(data, limits)?;
    let i = zin
        .entries()
        .iter()
        .position(|e| e.name == "content.xml")
        .ok_or_else(|| ArchiveError::Invalid("no content.xml".into()))?;
    let bytes = zin.read(i)?;
    let mut text = String::new();
    // ODF text lives directly in text:p / text:h / text:span; take all character data.
    for tok in Tokenizer::new(&bytes) {
        let tok = tok.map_err(ArchiveError::Invalid)?;
        let b = &bytes[tok.start..tok.end];
        match tok.kind {
            Kind::Text => text.push_str(&xml::unescape(b)),
            Kind::End if matches!(xml::local(xml::tag_name(b)), b"p" | b"h") => text.push('\n'),
            Kind::Empty => match xml::local(xml::tag_name(b)) {
                b"tab" => text.push('\t'),
                b"line-break" => text.push('\n'),
                b"s" => text.push(' '),
                _ => {}
            },
            _ => {}
        }
        if text.len() > limits.max_size {
            break;
        }
    }
    Ok(text)
}

/// The text of an RTF document: control words dropped, `\'hh` decoded in the document's code
/// page (`\ansicpg`, CP932 for Japanese), `\uN` Unicode escapes honoured, destinations that are
/// not text (font tables, pictures, objects, `\*` groups) skipped. Output is bounded by `max`.
pub(crate) fn rtf_to_text(data: &[u8], max: usize) -> String {
    struct Group {
        skip: bool,
        uc: usize,
    }
    const SKIP: &[&str] = &[
        "fonttbl",
        "colortbl",
        "stylesheet",
        "info",
        "pict",
        "object",
        "objdata",
        "themedata",
        "colorschememapping",
        "datastore",
        "latentstyles",
        "listtable",
        "listoverridetable",
        "rsidtbl",
        "generator",
        "xmlnstbl",
        "header",
        "footer",
        "headerl",
        "headerr",
        "footerl",
        "footerr",
        "fldinst",
        "filetbl",
        "revtbl",
        "bkmkstart",
        "bkmkend",
        "nonshppict",
        "shppict",
        "pgdsctbl",
        "mmathPr",
        "xe",
        "tc",
    ];
    let mut out = String::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut encoding: &'static encoding_rs::Encoding = encoding_rs::WINDOWS_1252;
    let mut stack: Vec<Group> = Vec::new();
    let mut cur = Group { skip: false, uc: 1 };
    let mut skip_chars = 0usize;
    let mut i = 0usize;
    let flush = |pending: &mut Vec<u8>, out: &mut String, enc: &'static encoding_rs::Encoding| {
        if !pending.is_empty() {
            out.push_str(&enc.decode_without_bom_handling(pending).0);
            pending.clear();
        }
    };
    while i < data.len() && out.len() < max {
        let c = data[i];
        match c {
            b'{' => {
                flush(&mut pending, &mut out, encoding);
                if stack.len() > 256 {
                    break;
                }
                stack.push(Group {
                    skip: cur.skip,
                    uc: cur.uc,
                });
                i += 1;
                // "{\*\dest" marks an optional destination: skipped.
                if data[i..].starts_with(b"\\*") {
                    cur.skip = true;
                }
            }
            b'}' => {
                flush(&mut pending, &mut out, encoding);
                if let Some(g) = stack.pop() {
                    cur = g;
                }
                i += 1;
            }
            b'\\' => {
                i += 1;
                let Some(&n) = data.get(i) else { break };
                if n.is_ascii_alphabetic() {
                    let ws = i;
                    while i < data.len() && data[i].is_ascii_alphabetic() && i - ws < 32 {
                        i += 1;
                    }
                    let word = std::str::from_utf8(&data[ws..i]).unwrap_or("");
                    let ps = i;
                    if data.get(i) == Some(&b'-') {
                        i += 1;
                    }
                    while i < data.len() && data[i].is_ascii_digit() && i - ps < 11 {
                        i += 1;
                    }
                    let param: Option<i64> = std::str::from_utf8(&data[ps..i])
                        .ok()
                        .and_then(|s| s.parse().ok());
                    if data.get(i) == Some(&b' ') {
                        i += 1;
                    }
                    if SKIP.contains(&word) {
                        cur.skip = true;
                        continue;
                    }
                    match word {
                        "ansicpg" => {
                            flush(&mut pending, &mut out, encoding);
                            encoding = codepage(param.unwrap_or(1252));
                        }
                        "uc" => cur.uc = param.unwrap_or(1).clamp(0, 8) as usize,
                        "u" if !cur.skip => {
                            flush(&mut pending, &mut out, encoding);
                            let mut v = param.unwrap_or(0);
                            if v < 0 {
                                v += 65536;
                            }
                            out.push(char::from_u32(v as u32).unwrap_or('\u{FFFD}'));
                            skip_chars = cur.uc;
                        }
                        "par" | "line" | "sect" | "page" | "row" if !cur.skip => {
                            flush(&mut pending, &mut out, encoding);
                            out.push('\n');
                        }
                        "tab" | "cell" if !cur.skip => {
                            flush(&mut pending, &mut out, encoding);
                            out.push('\t');
                        }
                        "bin" => {
                            // Binary data follows: skip it unread.
                            i = i.saturating_add(param.unwrap_or(0).max(0) as usize);
                        }
                        _ => {}
                    }
                } else if n == b'\'' {
                    let hex = data
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok());
                    i += 3;
                    if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        if skip_chars > 0 {
                            skip_chars -= 1;
                        } else if !cur.skip {
                            pending.push(b);
                        }
                    }
                } else {
                    i += 1;
                    if !cur.skip {
                        match n {
                            b'\\' | b'{' | b'}' => {
                                flush(&mut pending, &mut out, encoding);
                                out.push(n as char);
                            }
                            b'~' => out.push('\u{A0}'),
                            _ => {}
                        }
                    }
                }
            }
            b'\r' | b'\n' => i += 1,
            _ => {
                i += 1;
                if skip_chars > 0 {
                    skip_chars -= 1;
                } else if !cur.skip {
                    pending.push(c);
                }
            }
        }
    }
    flush(&mut pending, &mut out, encoding);
    out
}

fn codepage(cp: i64) -> &'static encoding_rs::Encoding {
    use encoding_rs::*;
    match cp {
        932 => SHIFT_JIS,
        936 => GBK,
        949 => EUC_KR,
        950 => BIG5,
        1250 => WINDOWS_1250,
        1251 => WINDOWS_1251,
        1253 => WINDOWS_1253,
        1254 => WINDOWS_1254,
        1255 => WINDOWS_1255,
        1256 => WINDOWS_1256,
        1257 => WINDOWS_1257,
        1258 => WINDOWS_1258,
        874 => WINDOWS_874,
        65001 => UTF_8,
        _ => WINDOWS_1252,
    }
}
