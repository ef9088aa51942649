//! TNEF (`winmail.dat`, `application/ms-tnef`): the container Outlook and Exchange wrap a
//! message's attachments and rich body in when they send to a client they think is Outlook.
//!
//! A recipient without Outlook sees one opaque `winmail.dat`; a filter that does not open it
//! lets everything inside through uninspected. So it is unpacked here (MS-OXTNEF): the
//! attachments come from the legacy attributes (`attAttachRendData` starts one,
//! `attAttachTitle` names it, `attAttachData` holds it) and from the MAPI properties of
//! `attAttachment` (`PR_ATTACH_LONG_FILENAME`, `PR_ATTACH_DATA_BIN`/`_OBJ`); the body from
//! `PR_BODY`, `attBody`, or the compressed RTF body (`PR_RTF_COMPRESSED`, MS-OXRTFCP, which
//! is decompressed and reduced to text). Every attachment goes through [`super::disarm`]
//! one level deeper (a TNEF inside a TNEF recurses, bounded by `max_archive_depth`).
//!
//! The result, when anything survives, is [`Verdict::Keep`] whose `data` is the body as
//! UTF-8 `text/plain` (empty when the container has no body text) and whose `extra` holds the
//! disarmed attachments under their own names (the caller applies `extension` to them as to
//! any attachment). The container itself is never delivered. An attachment quarantined
//! (password-protected) makes the whole container quarantined, as for archives.

use super::archive::{base_name, TreeScope};
use super::{Disarmed, Policy, Verdict};

/// TNEF signature (little-endian 0x223E9F78).
pub fn is_tnef(data: &[u8]) -> bool {
    data.starts_with(b"\x78\x9F\x3E\x22")
}

const ATT_BODY: u32 = 0x0002_800C;
const ATT_ATTACH_DATA: u32 = 0x0006_800F;
const ATT_ATTACH_TITLE: u32 = 0x0001_8010;
const ATT_ATTACH_REND_DATA: u32 = 0x0006_9002;
const ATT_MAPI_PROPS: u32 = 0x0006_9003;
const ATT_ATTACHMENT: u32 = 0x0006_9005;
const ATT_OEM_CODEPAGE: u32 = 0x0006_9007;

const PR_BODY: u16 = 0x1000;
const PR_RTF_COMPRESSED: u16 = 0x1009;
const PR_ATTACH_DATA: u16 = 0x3701;
const PR_ATTACH_FILENAME: u16 = 0x3704;
const PR_ATTACH_LONG_FILENAME: u16 = 0x3707;
const PR_DISPLAY_NAME: u16 = 0x3001;

const PT_STRING8: u16 = 0x001E;
const PT_UNICODE: u16 = 0x001F;
const PT_BINARY: u16 = 0x0102;
const PT_OBJECT: u16 = 0x000D;

#[derive(Default)]
struct Attachment<'a> {
    title: Option<String>,
    long_name: Option<String>,
    short_name: Option<String>,
    data: Option<&'a [u8]>,
}

impl Attachment<'_> {
    fn name(&self, n: usize) -> String {
        let raw = self
            .long_name
            .as_ref()
            .or(self.short_name.as_ref())
            .or(self.title.as_ref())
            .map(|s| s.trim_end_matches('\0').to_string())
            .unwrap_or_default();
        let clean: String = base_name(&raw)
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        if clean.trim().is_empty() {
            format!("attachment-{n}")
        } else {
            clean
        }
    }
}

/// What a TNEF stream holds.
#[derive(Default)]
struct Contents<'a> {
    body: Option<String>,
    rtf: Option<Vec<u8>>,
    attachments: Vec<Attachment<'a>>,
}

/// One MAPI property value (the raw octets of a single value).
struct Prop<'a> {
    id: u16,
    ptype: u16,
    value: &'a [u8],
}

struct Reader<'a> {
    d: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.d.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn padded(&mut self, n: usize) -> Option<&'a [u8]> {
        let v = self.take(n)?;
        self.take((4 - n % 4) % 4)?;
        Some(v)
    }
}

/// Parses a MAPI property list (`attMAPIProps`, `attAttachment`). Multi-valued properties
/// yield one [`Prop`] per value. Parsing stops at the first property it cannot size.
fn mapi_props(data: &[u8], max: usize) -> Vec<Prop<'_>> {
    let mut r = Reader { d: data, pos: 0 };
    let mut out = Vec::new();
    let Some(count) = r.u32() else { return out };
    for _ in 0..count.min(4096) {
        let (Some(ptype), Some(id)) = (r.u16(), r.u16()) else {
            break;
        };
        if id >= 0x8000 {
            // Named property: GUID, kind, then an id or a name.
            if r.take(16).is_none() {
                break;
            }
            match r.u32() {
                Some(0) => {
                    if r.u32().is_none() {
                        break;
                    }
                }
                Some(1) => {
                    let Some(len) = r.u32() else { break };
                    if r.padded(len as usize).is_none() {
                        break;
                    }
                }
                _ => break,
            }
        }
        let multi = ptype & 0x1000 != 0;
        let base = ptype & !0x1000;
        let fixed = match base {
            0x0002 | 0x0003 | 0x0004 | 0x000A | 0x000B | 0x0001 => Some(4),
            0x0005 | 0x0006 | 0x0007 | 0x0014 | 0x0040 => Some(8),
            0x0048 => Some(16),
            PT_STRING8 | PT_UNICODE | PT_BINARY | PT_OBJECT => None,
            _ => break,
        };
        let values = match (fixed, multi) {
            (Some(_), false) => 1,
            _ => match r.u32() {
                Some(n) => n,
                None => break,
            },
        };
        let mut ok = true;
        for _ in 0..values.min(4096) {
            let v = match fixed {
                Some(n) => r.padded(n),
                None => r.u32().and_then(|len| r.padded(len as usize)),
            };
            match v {
                Some(value) => {
                    if out.len() < max {
                        out.push(Prop {
                            id,
                            ptype: base,
                            value,
                        });
                    }
                }
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            break;
        }
    }
    out
}

fn decode_string(p: &Prop, codepage: &'static encoding_rs::Encoding) -> String {
    match p.ptype {
        PT_UNICODE => {
            let units: Vec<u16> = p
                .value
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        _ => codepage.decode_without_bom_handling(p.value).0.into_owned(),
    }
    .trim_end_matches('\0')
    .to_string()
}

fn codepage_of(cp: u32) -> &'static encoding_rs::Encoding {
    use encoding_rs::*;
    match cp {
        932 => SHIFT_JIS,
        936 => GBK,
        949 => EUC_KR,
        950 => BIG5,
        1251 => WINDOWS_1251,
        1250 => WINDOWS_1250,
        65001 => UTF_8,
        _ => WINDOWS_1252,
    }
}

fn parse(data: &[u8], max_entries: usize) -> Result<Contents<'_>, String> {
    let mut r = Reader { d: data, pos: 0 };
    if r.u32() != Some(0x223E_9F78) || r.u16().is_none() {
        return Err("not a TNEF stream".into());
    }
    let mut c = Contents::default();
    let mut codepage: &'static encoding_rs::Encoding = encoding_rs::WINDOWS_1252;
    while r.pos < data.len() {
        let (Some(level), Some(id), Some(len)) = (r.take(1), r.u32(), r.u32()) else {
            return Err("truncated attribute header".into());
        };
        let Some(value) = r.take(len as usize) else {
            return Err("attribute runs past the end".into());
        };
        if r.u16().is_none() {
            return Err("truncated attribute checksum".into());
        }
        let _ = level;
        match id {
            ATT_OEM_CODEPAGE if value.len() >= 4 => {
                codepage =
                    codepage_of(u32::from_le_bytes([value[0], value[1], value[2], value[3]]));
            }
            ATT_BODY => {
                let text = codepage.decode_without_bom_handling(value).0;
                c.body
                    .get_or_insert_with(|| text.trim_end_matches('\0').to_string());
            }
            ATT_MAPI_PROPS => {
                for p in mapi_props(value, 4096) {
                    match (p.id, p.ptype) {
                        (PR_BODY, PT_STRING8 | PT_UNICODE) => {
                            c.body = Some(decode_string(&p, codepage));
                        }
                        (PR_RTF_COMPRESSED, PT_BINARY) => c.rtf = Some(p.value.to_vec()),
                        _ => {}
                    }
                }
            }
            ATT_ATTACH_REND_DATA => {
                if c.attachments.len() >= max_entries {
                    return Err(format!("more than {max_entries} attachments"));
                }
                c.attachments.push(Attachment::default());
            }
            ATT_ATTACH_TITLE | ATT_ATTACH_DATA | ATT_ATTACHMENT => {
                if c.attachments.is_empty() {
                    c.attachments.push(Attachment::default());
                }
                let Some(a) = c.attachments.last_mut() else {
                    continue;
                };
                match id {
                    ATT_ATTACH_TITLE => {
                        a.title = Some(codepage.decode_without_bom_handling(value).0.into_owned());
                    }
                    ATT_ATTACH_DATA => a.data = Some(value),
                    _ => {
                        for p in mapi_props(value, 4096) {
                            match (p.id, p.ptype) {
                                (PR_ATTACH_LONG_FILENAME, PT_STRING8 | PT_UNICODE) => {
                                    a.long_name = Some(decode_string(&p, codepage));
                                }
                                (PR_ATTACH_FILENAME | PR_DISPLAY_NAME, PT_STRING8 | PT_UNICODE) => {
                                    a.short_name.get_or_insert(decode_string(&p, codepage));
                                }
                                (PR_ATTACH_DATA, PT_BINARY) => {
                                    a.data.get_or_insert(p.value);
                                }
                                (PR_ATTACH_DATA, PT_OBJECT) => {
                                    // An embedded object: its interface id, then the data.
                                    a.data.get_or_insert(p.value.get(16..).unwrap_or(&[]));
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(c)
}

/// Decompresses an RTF body compressed as MS-OXRTFCP describes ("LZFu"; "MELA" is stored).
pub(crate) fn decompress_rtf(data: &[u8], max: usize) -> Result<Vec<u8>, String> {
    const PREBUF: &[u8] = b"{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss \\fmodern \\fscript \\fdecor MS Sans SerifSymbolArialTimes New RomanCourier{\\colortbl\\red0\\green0\\blue0\r\n\\par \\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx";
    let mut r = Reader { d: data, pos: 0 };
    let (Some(comp_size), Some(raw_size), Some(kind), Some(_crc)) =
        (r.u32(), r.u32(), r.u32(), r.u32())
    else {
        return Err("truncated compressed RTF header".into());
    };
    let end = (comp_size as usize).saturating_add(4).min(data.len());
    let cap = (raw_size as usize).min(max);
    match kind {
        0x414C_454D => {
            return Ok(data
                .get(16..end)
                .unwrap_or(&[])
                .iter()
                .take(cap)
                .copied()
                .collect())
        }
        0x7546_5A4C => {}
        _ => return Err("unknown compressed RTF type".into()),
    }
    let mut dict = [0u8; 4096];
    dict[..PREBUF.len()].copy_from_slice(PREBUF);
    let mut wpos = PREBUF.len();
    let mut out = Vec::with_capacity(cap.min(1 << 20));
    let mut i = 16usize;
    'outer: while i < end {
        let control = data[i];
        i += 1;
        for bit in 0..8 {
            if i >= end || out.len() >= cap {
                break 'outer;
            }
            if control & (1 << bit) == 0 {
                let b = data[i];
                i += 1;
                out.push(b);
                dict[wpos] = b;
                wpos = (wpos + 1) % 4096;
            } else {
                let Some(pair) = data.get(i..i + 2) else {
                    break 'outer;
                };
                i += 2;
                let word = u16::from_be_bytes([pair[0], pair[1]]);
                let offset = usize::from(word >> 4);
                let len = usize::from(word & 0xF) + 2;
                if offset == wpos {
                    break 'outer;
                }
                for k in 0..len {
                    let b = dict[(offset + k) % 4096];
                    out.push(b);
                    dict[wpos] = b;
                    wpos = (wpos + 1) % 4096;
                }
            }
        }
    }
    out.truncate(cap);
    Ok(out)
}

/// Unpacks a TNEF container: its attachments (disarmed, in `extra`) and its body as text.
pub fn disarm(data: &[u8], policy: &Policy) -> Verdict {
    let limits = &policy.limits;
    if policy.depth > limits.max_depth {
        return Verdict::Remove {
            reason: format!(
                "tnef: nested deeper than max_archive_depth ({})",
                limits.max_depth
            ),
        };
    }
    let _scope = TreeScope::enter(limits);
    let contents = match parse(data, limits.max_entries) {
        Ok(c) => c,
        Err(e) => {
            return Verdict::Remove {
                reason: format!("tnef: {e}"),
            }
        }
    };
    let mut changes = vec!["TNEF container (winmail.dat) unpacked".to_string()];
    let body = match (contents.body, contents.rtf) {
        (Some(b), _) if !b.trim().is_empty() => b,
        (_, Some(rtf)) => match decompress_rtf(&rtf, limits.max_size) {
            Ok(raw) => {
                changes.push("rich text body converted to plain text".into());
                super::legacy::rtf_to_text(&raw, limits.max_size)
            }
            Err(e) => {
                changes.push(format!("rich text body dropped ({e})"));
                String::new()
            }
        },
        (b, None) => b.unwrap_or_default(),
    };
    let child = Policy {
        depth: policy.depth + 1,
        ..*policy
    };
    let mut extra = Vec::new();
    for (n, a) in contents.attachments.iter().enumerate() {
        if limits.expired() {
            return Verdict::Remove {
                reason: "tnef: sanitising deadline reached".into(),
            };
        }
        let name = a.name(n + 1);
        let Some(bytes) = a.data else {
            continue;
        };
        match super::disarm(bytes, &name, None, &child) {
            Verdict::Keep(d) => {
                changes.push(if d.changes.is_empty() {
                    format!("{name}: extracted")
                } else {
                    format!("{name}: extracted; {}", d.changes.join("; "))
                });
                extra.extend(d.extra.iter().cloned());
                let mut d = d;
                d.extra.clear();
                extra.push((name, d));
            }
            Verdict::Remove { reason } => changes.push(format!("{name}: removed ({reason})")),
            Verdict::Quarantine { reason } => {
                return Verdict::Quarantine {
                    reason: format!("tnef: attachment {name}: {reason}"),
                }
            }
        }
    }
    if body.trim().is_empty() && extra.is_empty() {
        return Verdict::Remove {
            reason: format!(
                "tnef: nothing deliverable inside ({})",
                changes[1..].join("; ")
            ),
        };
    }
    // The body is delivered as a text attachment: cleaned as one (CRLF, no control or
    // bidirectional control characters).
    let (body, removed) = super::text::clean(&body);
    changes.extend(
        removed
            .changes()
            .into_iter()
            .map(|c| format!("body text: {c}")),
    );
    Verdict::Keep(Disarmed {
        data: body.into_bytes(),
        content_type: "text/plain; charset=utf-8".into(),
        extension: Some("txt".into()),
        changes,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_rtf_as_in_ms_oxrtfcp() {
        // The first example of MS-OXRTFCP section 3.1.
        let comp: &[u8] = b"\x2d\x00\x00\x00\x2b\x00\x00\x00\x4c\x5a\x46\x75\xf1\xc5\xc7\xa7\x03\x00\x0a\x00\x72\x63\x70\x67\x31\x32\x35\x42\x32\x0a\xf3\x20\x68\x65\x6c\x09\x00\x20\x62\x77\x05\xb0\x6c\x64\x7d\x0a\x80\x0f\xa0";
        let out = decompress_rtf(comp, 1 << 20).unwrap();
        assert_eq!(out, b"{\\rtf1\\ansi\\ansicpg1252\\pard hello world}\r\n");
        assert!(decompress_rtf(&comp[..10], 100).is_err());
        assert!(decompress_rtf(comp, 5).unwrap().len() <= 5);
    }

    #[test]
    fn mapi_properties_are_bounded_by_their_data() {
        // A count far beyond the data and a string length past the end.
        let mut v = 0xFFFF_FFFFu32.to_le_bytes().to_vec();
        v.extend_from_slice(&0x001Eu16.to_le_bytes());
        v.extend_from_slice(&0x3707u16.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        v.extend_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
        assert!(mapi_props(&v, 100).is_empty());
    }
}
