//! Legacy Office formats: OLE2 Word/Excel/PowerPoint (doc/xls/ppt), RTF, OneNote and ODF.
//!
//! These formats cannot be rebuilt without their active parts the way OOXML packages can
//! (macros, OLE objects and the text live side by side in binary streams), so the policy
//! `legacy_office` decides: `remove` (the default) drops them, `quarantine` holds the original,
//! and `text` delivers only their text as a UTF-8 `text/plain` attachment (`NAME.txt`) —
//! nothing but extracted characters leaves, so macros, OLE objects and embedded files never do.
//! Encrypted OLE2 files (an encrypted OOXML package, a .doc with `fEncrypted`, an .xls with a
//! FILEPASS record, a .ppt with encrypted streams) follow `encrypted_archive` whatever
//! `legacy_office` says, like password-protected archives.
//!
//! Text extraction reads the compound file with the `cfb` crate (which refuses sector chains
//! that loop or leave the file; every stream read is capped by `max_attachment_size`) and
//! then each application's own records, never trusting a length or offset:
//! - Word 97+ (`WordDocument`): the piece table (CLX in the `0Table`/`1Table` stream) maps
//!   character positions to UTF-16LE or "compressed" 8-bit (cp1252) pieces; field codes are
//!   dropped and their displayed result kept. "Compressed" pieces are cp1252 by definition
//!   (MS-DOC 2.4.1; Word stores any Japanese text in UTF-16 pieces), so the language id only
//!   matters for Word 6/95 files, which hold 8-bit text in its code page (cp932 for Japanese).
//! - Excel (`Workbook`/`Book`, BIFF8 and BIFF5): the shared string table (SST, continued over
//!   CONTINUE records, where a string may switch between 8- and 16-bit characters) and the
//!   cells (LABELSST, LABEL, NUMBER, RK, MULRK, cached FORMULA results), one line per row,
//!   cells separated by tabs, each sheet under its name.
//! - PowerPoint (`PowerPoint Document`): TextCharsAtom (UTF-16LE) and TextBytesAtom records,
//!   outside the master slides.

use std::io::{Cursor, Read};

use super::archive::{self, ArchiveError, TreeScope, ZipIn};
use super::office::xml::{self, Kind, Tokenizer};
use super::{Disarmed, Limits, Policy, Verdict};
use crate::config::AttachmentAction;

/// Legacy OLE2 Office, RTF, OneNote, ODF, by `legacy_office`: removed, held in the quarantine,
/// or reduced to their text (`text`). Encrypted OLE2 documents follow `encrypted_archive`.
pub fn legacy(data: &[u8], name: &str, policy: &Policy) -> Verdict {
    // An encrypted OOXML document is an OLE2 file holding "EncryptionInfo" and
    // "EncryptedPackage" streams (directory names in UTF-16LE); a .doc/.xls/.ppt says so in
    // its own records. Checked whatever `legacy_office` says: like a password-protected
    // archive, it is held (by default) so that its owner can have it released.
    if name == "ole2" && (ole2_encrypted(data) || ole::encrypted(data, &policy.limits)) {
        return archive::encrypted_verdict(policy, "encrypted Office document");
    }
    match policy.attachments.legacy_office {
        AttachmentAction::Quarantine => {
            return Verdict::Quarantine {
                reason: format!("{name}: legacy_office = quarantine"),
            }
        }
        AttachmentAction::Text => return text_verdict(data, name, policy),
        _ => {}
    }
    Verdict::Remove {
        reason: format!(
            "{name}: {}, macros and embedded objects cannot be removed from it (legacy_office = remove)",
            what(name)
        ),
    }
}

/// What a legacy format is, and why it is a risk, for the reasons.
fn what(name: &str) -> &'static str {
    match name {
        "ole2" => "legacy binary Office document (doc/xls/ppt)",
        "rtf" => "RTF document (may embed OLE objects)",
        "onenote" => "OneNote document (may embed files)",
        "odf" => "OpenDocument file (may carry macros)",
        _ => "legacy office document",
    }
}

/// `legacy_office = "text"`: the document's text as a UTF-8 text attachment, or removal when
/// the text cannot be read.
fn text_verdict(data: &[u8], name: &str, policy: &Policy) -> Verdict {
    let limits = &policy.limits;
    let mut changes = Vec::new();
    let text = match name {
        "rtf" => {
            changes.push("only the text of the rtf document was kept".to_string());
            Ok(rtf_to_text(data, limits.max_size))
        }
        "odf" => {
            let _scope = TreeScope::enter(limits);
            changes.push("only the text of the odf document was kept".to_string());
            odf_text(data, limits).map_err(|e| e.to_string())
        }
        "ole2" => match ole::extract(data, limits) {
            Ok(doc) => {
                changes.push(format!(
                    "only the text of the .{} document was kept",
                    doc.kind.ext()
                ));
                if doc.macros {
                    changes.push("VBA macro project removed".to_string());
                }
                if doc.xlm {
                    changes.push("Excel 4 macro sheet removed".to_string());
                }
                if doc.objects {
                    changes.push("embedded OLE object removed".to_string());
                }
                if doc.truncated {
                    changes.push("text cut at the size limit".to_string());
                }
                Ok(doc.text)
            }
            Err(ole::OleError::Encrypted) => {
                return archive::encrypted_verdict(policy, "encrypted Office document")
            }
            Err(e) => Err(e.to_string()),
        },
        _ => Err("no text reader for this format".to_string()),
    };
    match text {
        Ok(text) => Verdict::Keep(Disarmed {
            data: text.into_bytes(),
            content_type: "text/plain; charset=utf-8".into(),
            extension: Some("txt".into()),
            changes,
            extra: Vec::new(),
        }),
        Err(e) => Verdict::Remove {
            reason: format!("{name}: {}, its text cannot be extracted ({e})", what(name)),
        },
    }
}

// =========================================================================================
// OLE2 (compound file) documents.

mod ole {
    use super::*;

    /// Which application wrote an OLE2 document, by its main stream.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum OleKind {
        Word,
        Excel,
        PowerPoint,
    }

    impl OleKind {
        pub fn ext(self) -> &'static str {
            match self {
                OleKind::Word => "doc",
                OleKind::Excel => "xls",
                OleKind::PowerPoint => "ppt",
            }
        }
    }

    /// Why an OLE2 document's text could not be read.
    #[derive(Debug, thiserror::Error)]
    pub enum OleError {
        #[error("not a readable compound file: {0}")]
        Cfb(String),
        #[error("no Word, Excel or PowerPoint stream")]
        Unknown,
        #[error("damaged {0} stream: {1}")]
        Damaged(&'static str, &'static str),
        #[error("password-protected")]
        Encrypted,
        #[error("sanitising deadline reached")]
        Deadline,
    }

    /// The text of one OLE2 document and what it held besides.
    #[derive(Debug)]
    pub struct OleText {
        pub kind: OleKind,
        pub text: String,
        /// A VBA project was present (not delivered: only the text leaves).
        pub macros: bool,
        /// Excel 4 macro sheets or VBA module sheets were present (their cells are skipped).
        pub xlm: bool,
        /// Embedded OLE objects were present (not delivered).
        pub objects: bool,
        /// The text was longer than the size limit and was cut.
        pub truncated: bool,
    }

    type Cf<'a> = cfb::CompoundFile<Cursor<&'a [u8]>>;

    fn open(data: &[u8]) -> Result<Cf<'_>, OleError> {
        cfb::CompoundFile::open(Cursor::new(data)).map_err(|e| OleError::Cfb(e.to_string()))
    }

    /// One stream, at most `max` octets (`None` when absent).
    fn stream(cf: &mut Cf, path: &str, max: usize) -> Result<Option<Vec<u8>>, OleError> {
        if !cf.is_stream(path) {
            return Ok(None);
        }
        let s = cf
            .open_stream(path)
            .map_err(|e| OleError::Cfb(e.to_string()))?;
        let mut buf = Vec::new();
        s.take(max as u64)
            .read_to_end(&mut buf)
            .map_err(|e| OleError::Cfb(e.to_string()))?;
        Ok(Some(buf))
    }

    fn u16_at(b: &[u8], i: usize) -> Option<u16> {
        let s = b.get(i..i.checked_add(2)?)?;
        Some(u16::from_le_bytes([s[0], s[1]]))
    }

    fn u32_at(b: &[u8], i: usize) -> Option<u32> {
        let s = b.get(i..i.checked_add(4)?)?;
        Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// Names of streams and storages holding macros or embedded objects.
    fn inventory(cf: &Cf) -> (bool, bool) {
        let mut macros = false;
        let mut objects = false;
        for e in cf.walk() {
            let n = e.name().to_ascii_lowercase();
            if matches!(
                n.as_str(),
                "macros" | "_vba_project_cur" | "vba" | "_vba_project"
            ) {
                macros = true;
            }
            if n == "objectpool" || n.starts_with("mbd") || n.starts_with("\u{1}ole") {
                objects = true;
            }
        }
        (macros, objects)
    }

    /// True when the document is password-protected (its text cannot be read).
    pub fn encrypted(data: &[u8], limits: &Limits) -> bool {
        let Ok(mut cf) = open(data) else { return false };
        if cf.is_stream("EncryptedSummary") {
            return true;
        }
        let max = limits.max_size;
        if let Ok(Some(wd)) = stream(&mut cf, "WordDocument", 64) {
            if u16_at(&wd, 0x0A).is_some_and(|f| f & 0x0100 != 0) {
                return true;
            }
        }
        for name in ["Workbook", "Book"] {
            if let Ok(Some(wb)) = stream(&mut cf, name, max) {
                return xls_filepass(&wb);
            }
        }
        false
    }

    /// True when the workbook globals (up to their EOF record) hold a FILEPASS record.
    fn xls_filepass(wb: &[u8]) -> bool {
        let mut pos = 0usize;
        while let (Some(typ), Some(len)) = (u16_at(wb, pos), u16_at(wb, pos + 2)) {
            match typ {
                0x002F => return true,
                0x000A => return false,
                _ => pos += 4 + len as usize,
            }
        }
        false
    }

    /// The text of a Word, Excel or PowerPoint OLE2 document.
    pub fn extract(data: &[u8], limits: &Limits) -> Result<OleText, OleError> {
        let mut cf = open(data)?;
        let max = limits.max_size;
        let (mut macros, mut objects) = inventory(&cf);
        let mut xlm = false;
        let (kind, raw) = if let Some(wd) = stream(&mut cf, "WordDocument", max)? {
            let table = match u16_at(&wd, 0x0A) {
                Some(f) if f & 0x0200 != 0 => "1Table",
                _ => "0Table",
            };
            let table = stream(&mut cf, table, max)?.unwrap_or_default();
            (OleKind::Word, word_text(&wd, &table, limits)?)
        } else if let Some(wb) = match stream(&mut cf, "Workbook", max)? {
            Some(s) => Some(s),
            None => stream(&mut cf, "Book", max)?,
        } {
            let (t, x) = xls_text(&wb, limits)?;
            xlm = x;
            (OleKind::Excel, t)
        } else if let Some(pp) = stream(&mut cf, "PowerPoint Document", max)? {
            let (t, m, o) = ppt_text(&pp, limits)?;
            macros |= m;
            objects |= o;
            (OleKind::PowerPoint, t)
        } else {
            return Err(OleError::Unknown);
        };
        let mut text = raw;
        let truncated = text.len() > max;
        if truncated {
            let mut cut = max;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        Ok(OleText {
            kind,
            text,
            macros,
            xlm,
            objects,
            truncated,
        })
    }

    /// Checks the deadline every 4096 steps.
    fn tick(n: &mut usize, limits: &Limits) -> Result<(), OleError> {
        *n += 1;
        if n.is_multiple_of(4096) && limits.expired() {
            return Err(OleError::Deadline);
        }
        Ok(())
    }

    /// The code page of a Windows language id (Word 6/95 8-bit text).
    fn lid_encoding(lid: u16) -> &'static encoding_rs::Encoding {
        use encoding_rs::*;
        match lid & 0x3FF {
            0x11 => SHIFT_JIS,
            0x04 if lid == 0x0404 || lid == 0x0C04 || lid == 0x1404 => BIG5,
            0x04 => GBK,
            0x12 => EUC_KR,
            0x19 | 0x02 | 0x22 | 0x23 => WINDOWS_1251,
            0x05 | 0x0E | 0x15 | 0x18 | 0x1A | 0x1B | 0x24 => WINDOWS_1250,
            0x08 => WINDOWS_1253,
            0x1F => WINDOWS_1254,
            0x0D => WINDOWS_1255,
            0x01 => WINDOWS_1256,
            0x1E => WINDOWS_874,
            _ => WINDOWS_1252,
        }
    }

    /// Word's special characters: paragraph and cell marks become line breaks and tabs, field
    /// codes (between 0x13 and 0x14) are dropped with their field result (up to 0x15) kept,
    /// anchors of pictures, objects and notes are dropped.
    struct WordChars {
        out: String,
        /// For each open field: true while its code (before the separator) is being read.
        fields: Vec<bool>,
        max: usize,
    }

    impl WordChars {
        fn push(&mut self, c: char) {
            match c {
                '\u{13}' => {
                    if self.fields.len() < 64 {
                        self.fields.push(true);
                    }
                    return;
                }
                '\u{14}' => {
                    if let Some(f) = self.fields.last_mut() {
                        *f = false;
                    }
                    return;
                }
                '\u{15}' => {
                    self.fields.pop();
                    return;
                }
                _ => {}
            }
            if self.fields.iter().any(|&code| code) || self.out.len() > self.max {
                return;
            }
            match c {
                '\r' | '\u{0B}' | '\u{0C}' | '\u{0E}' => self.out.push('\n'),
                '\u{07}' | '\t' => self.out.push('\t'),
                '\u{1E}' => self.out.push('-'),
                '\u{A0}' => self.out.push(' '),
                c if c.is_control() => {}
                c => self.out.push(c),
            }
        }
    }

    /// The text of a Word document from its WordDocument and table streams.
    fn word_text(wd: &[u8], table: &[u8], limits: &Limits) -> Result<String, OleError> {
        const S: &str = "WordDocument";
        let bad = |why| OleError::Damaged(S, why);
        let ident = u16_at(wd, 0).ok_or(bad("too short"))?;
        if ident != 0xA5EC && ident != 0xA5DC {
            return Err(bad("not a Word document"));
        }
        let nfib = u16_at(wd, 2).ok_or(bad("too short"))?;
        let lid = u16_at(wd, 6).ok_or(bad("too short"))?;
        let flags = u16_at(wd, 0x0A).ok_or(bad("too short"))?;
        if flags & 0x0100 != 0 {
            return Err(OleError::Encrypted);
        }
        let mut w = WordChars {
            out: String::new(),
            fields: Vec::new(),
            max: limits.max_size,
        };
        let mut n = 0usize;
        if nfib < 193 {
            // Word 6 / Word 95: the text is fcMin..fcMac, 8-bit in the language's code page.
            let min = u32_at(wd, 0x18).ok_or(bad("too short"))? as usize;
            let mac = u32_at(wd, 0x1C).ok_or(bad("too short"))? as usize;
            let bytes = wd
                .get(min..mac.min(wd.len()))
                .ok_or(bad("text outside the stream"))?;
            let (text, _) = lid_encoding(lid).decode_without_bom_handling(bytes);
            for c in text.chars() {
                tick(&mut n, limits)?;
                w.push(c);
            }
            return Ok(w.out);
        }
        // FIB: base (32 octets), csw + fibRgW, cslw + fibRgLw, cbRgFcLcb + fibRgFcLcb.
        let csw = u16_at(wd, 32).ok_or(bad("too short"))? as usize;
        let at_cslw = 34 + csw * 2;
        let cslw = u16_at(wd, at_cslw).ok_or(bad("too short"))? as usize;
        let at_cb = at_cslw + 2 + cslw * 4;
        let cb = u16_at(wd, at_cb).ok_or(bad("too short"))? as usize;
        if cb < 34 {
            return Err(bad("no piece table in the file information block"));
        }
        let rg = at_cb + 2;
        // fcClx / lcbClx: the 34th pair of fibRgFcLcb97.
        let fc_clx = u32_at(wd, rg + 33 * 8).ok_or(bad("too short"))? as usize;
        let lcb_clx = u32_at(wd, rg + 33 * 8 + 4).ok_or(bad("too short"))? as usize;
        let clx = table
            .get(fc_clx..fc_clx.saturating_add(lcb_clx))
            .ok_or(OleError::Damaged("table", "piece table outside the stream"))?;
        // Clx: Prc* (0x01, cbGrpprl, grpprl) then Pcdt (0x02, lcb, PlcPcd).
        let mut i = 0usize;
        let plc = loop {
            match clx.get(i) {
                Some(1) => {
                    let cb = u16_at(clx, i + 1).ok_or(bad("piece table truncated"))? as i16;
                    i += 3 + (cb.max(0) as usize);
                }
                Some(2) => {
                    let lcb = u32_at(clx, i + 1).ok_or(bad("piece table truncated"))? as usize;
                    break clx
                        .get(i + 5..(i + 5).saturating_add(lcb))
                        .ok_or(bad("piece table truncated"))?;
                }
                _ => return Err(bad("no piece table")),
            }
        };
        if plc.len() < 4 {
            return Err(bad("empty piece table"));
        }
        let pieces = (plc.len() - 4) / 12;
        let pcds = 4 * (pieces + 1);
        for k in 0..pieces {
            let start = u32_at(plc, 4 * k).unwrap_or(0) as usize;
            let end = u32_at(plc, 4 * k + 4).unwrap_or(0) as usize;
            let count = end.saturating_sub(start);
            let fc_raw = u32_at(plc, pcds + 8 * k + 2).unwrap_or(0);
            let fc = (fc_raw & 0x3FFF_FFFF) as usize;
            if fc_raw & 0x4000_0000 != 0 {
                // Compressed: one octet per character at fc / 2, cp1252.
                let from = fc / 2;
                let to = from.saturating_add(count).min(wd.len());
                let bytes = wd.get(from..to).unwrap_or_default();
                let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
                for c in text.chars() {
                    tick(&mut n, limits)?;
                    w.push(c);
                }
            } else {
                let to = fc.saturating_add(count.saturating_mul(2)).min(wd.len());
                let bytes = wd.get(fc..to).unwrap_or_default();
                let units = bytes
                    .chunks_exact(2)
                    .map(|p| u16::from_le_bytes([p[0], p[1]]));
                for c in char::decode_utf16(units) {
                    tick(&mut n, limits)?;
                    w.push(c.unwrap_or('\u{FFFD}'));
                }
            }
            if w.out.len() > limits.max_size {
                break;
            }
        }
        Ok(w.out)
    }

    /// BIFF record payloads after an SST record (the SST and its CONTINUE records), read as
    /// one sequence in which character arrays restart their 8/16-bit flag at each record.
    struct Segs<'a> {
        segs: Vec<&'a [u8]>,
        i: usize,
        pos: usize,
    }

    impl Segs<'_> {
        fn byte(&mut self) -> Option<u8> {
            loop {
                let s = self.segs.get(self.i)?;
                if let Some(&b) = s.get(self.pos) {
                    self.pos += 1;
                    return Some(b);
                }
                self.i += 1;
                self.pos = 0;
            }
        }

        fn u16(&mut self) -> Option<u16> {
            Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
        }

        fn u32(&mut self) -> Option<u32> {
            Some(u32::from_le_bytes([
                self.byte()?,
                self.byte()?,
                self.byte()?,
                self.byte()?,
            ]))
        }

        fn skip(&mut self, mut n: usize) -> Option<()> {
            while n > 0 {
                let s = self.segs.get(self.i)?;
                let here = s.len().saturating_sub(self.pos).min(n);
                if here == 0 {
                    self.i += 1;
                    self.pos = 0;
                    continue;
                }
                self.pos += here;
                n -= here;
            }
            Some(())
        }

        /// `cch` characters, 16-bit when `high`; at a record boundary the next record starts
        /// with a fresh flag octet.
        fn chars(&mut self, mut cch: usize, mut high: bool, out: &mut String) -> Option<()> {
            while cch > 0 {
                let s = *self.segs.get(self.i)?;
                if self.pos >= s.len() {
                    self.i += 1;
                    let next = self.segs.get(self.i)?;
                    high = next.first()? & 1 != 0;
                    self.pos = 1;
                    continue;
                }
                let rest = s.get(self.pos..)?;
                let take = if high { rest.len() / 2 } else { rest.len() }.min(cch);
                if take == 0 {
                    return None;
                }
                push_chars(&rest[..take * if high { 2 } else { 1 }], high, out);
                self.pos += take * if high { 2 } else { 1 };
                cch -= take;
            }
            Some(())
        }
    }

    /// BIFF8 characters: UTF-16LE, or "compressed" (the high octet of each unit is zero).
    fn push_chars(b: &[u8], high: bool, out: &mut String) {
        if high {
            let units = b.chunks_exact(2).map(|p| u16::from_le_bytes([p[0], p[1]]));
            out.extend(char::decode_utf16(units).map(|c| c.unwrap_or('\u{FFFD}')));
        } else {
            out.extend(b.iter().map(|&c| c as char));
        }
    }

    /// The shared strings: at most this many (their offsets are kept in memory).
    const MAX_SST: usize = 1 << 20;

    /// Parses the SST: the strings concatenated in `arena`, their ends in `ends`.
    fn read_sst(mut s: Segs, arena: &mut String, ends: &mut Vec<usize>, max: usize) {
        let (Some(_total), Some(unique)) = (s.u32(), s.u32()) else {
            return;
        };
        for _ in 0..(unique as usize).min(MAX_SST) {
            let Some(cch) = s.u16() else { return };
            let Some(flags) = s.byte() else { return };
            let runs = if flags & 0x08 != 0 { s.u16() } else { Some(0) };
            let ext = if flags & 0x04 != 0 { s.u32() } else { Some(0) };
            let (Some(runs), Some(ext)) = (runs, ext) else {
                return;
            };
            if s.chars(cch as usize, flags & 0x01 != 0, arena).is_none() {
                return;
            }
            ends.push(arena.len());
            if s.skip(runs as usize * 4).is_none() || s.skip(ext as usize).is_none() {
                return;
            }
            if arena.len() > max {
                return;
            }
        }
    }

    /// A cell's text placed by row and column: a new line for a new row, tabs between columns.
    struct Grid {
        out: String,
        row: Option<u16>,
        col: u16,
        max: usize,
        /// In a macro sheet: cells are not text.
        skip: bool,
    }

    impl Grid {
        fn cell(&mut self, row: u16, col: u16, text: &str) {
            if self.skip || self.out.len() > self.max || text.is_empty() {
                return;
            }
            match self.row {
                Some(r) if r == row => {
                    let tabs = col.saturating_sub(self.col).max(1);
                    self.out.extend(std::iter::repeat_n('\t', tabs as usize));
                }
                Some(_) => self.out.push('\n'),
                None => {}
            }
            if self.row != Some(row) {
                self.out
                    .extend(std::iter::repeat_n('\t', col.min(255) as usize));
            }
            self.row = Some(row);
            self.col = col;
            // A cell's own line breaks and tabs would break the grid.
            self.out.extend(text.chars().map(|c| match c {
                '\t' | '\n' | '\r' => ' ',
                c => c,
            }));
        }

        fn heading(&mut self, name: &str) {
            if !self.out.is_empty() {
                self.out.push_str("\n\n");
            }
            self.out.push('[');
            self.out.push_str(name);
            self.out.push_str("]\n");
            self.row = None;
            self.col = 0;
        }
    }

    fn number(v: f64) -> String {
        if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
            format!("{}", v as i64)
        } else {
            format!("{v}")
        }
    }

    fn rk(v: u32) -> f64 {
        let x = if v & 2 != 0 {
            ((v as i32) >> 2) as f64
        } else {
            f64::from_bits(((v & 0xFFFF_FFFC) as u64) << 32)
        };
        if v & 1 != 0 {
            x / 100.0
        } else {
            x
        }
    }

    /// A BIFF string with a 16-bit (`wide`) or 8-bit character count: BIFF8 has a flag octet
    /// (16-bit characters or Latin-1), BIFF5 8-bit characters in the workbook's code page.
    fn biff_string(
        b: &[u8],
        wide: bool,
        biff8: bool,
        enc: &'static encoding_rs::Encoding,
    ) -> Option<String> {
        let (cch, mut i) = if wide {
            (u16_at(b, 0)? as usize, 2)
        } else {
            (*b.first()? as usize, 1)
        };
        if !biff8 {
            let bytes = b.get(i..(i + cch).min(b.len()))?;
            return Some(enc.decode_without_bom_handling(bytes).0.into_owned());
        }
        let flags = *b.get(i)?;
        i += 1;
        if flags & 0x08 != 0 {
            i += 2;
        }
        if flags & 0x04 != 0 {
            i += 4;
        }
        let high = flags & 1 != 0;
        let len = if high { cch * 2 } else { cch };
        let bytes = b.get(i..(i + len).min(b.len()))?;
        let mut s = String::new();
        push_chars(bytes, high, &mut s);
        Some(s)
    }

    /// The text of an Excel workbook stream (BIFF8 `Workbook` or BIFF5 `Book`), and whether
    /// it held Excel 4 macro sheets or VBA module sheets (their cells are not part of the text).
    fn xls_text(wb: &[u8], limits: &Limits) -> Result<(String, bool), OleError> {
        const S: &str = "Workbook";
        let mut pos = 0usize;
        let mut biff8 = true;
        let mut enc: &'static encoding_rs::Encoding = encoding_rs::WINDOWS_1252;
        let mut sheets: Vec<(usize, String, u8)> = Vec::new();
        let mut macros = false;
        let mut arena = String::new();
        let mut ends: Vec<usize> = Vec::new();
        let mut grid = Grid {
            out: String::new(),
            row: None,
            col: 0,
            max: limits.max_size,
            skip: false,
        };
        let mut pending_formula: Option<(u16, u16)> = None;
        let mut n = 0usize;
        let mut first = true;
        while let (Some(typ), Some(len)) = (u16_at(wb, pos), u16_at(wb, pos + 2)) {
            tick(&mut n, limits)?;
            let start = pos + 4;
            let end = start + len as usize;
            let Some(body) = wb.get(start..end) else {
                break;
            };
            let here = pos;
            pos = end;
            if first && typ != 0x0809 && typ != 0x0409 && typ != 0x0209 && typ != 0x0009 {
                return Err(OleError::Damaged(S, "no BOF record"));
            }
            first = false;
            match typ {
                // BOF: the globals (version) or a sheet, named by its BOUNDSHEET offset.
                0x0809 => {
                    if here == 0 {
                        biff8 = u16_at(body, 0) == Some(0x0600);
                    } else if let Some((_, name, dt)) = sheets.iter().find(|(o, ..)| *o == here) {
                        // Sheet types: 1 = Excel 4 macro sheet, 6 = VBA module; BOF type
                        // 0x0040 = macro sheet.
                        grid.skip = *dt == 1 || *dt == 6 || u16_at(body, 2) == Some(0x0040);
                        if grid.skip {
                            macros = true;
                        } else {
                            let name = name.clone();
                            grid.heading(&name);
                        }
                    }
                }
                0x002F => return Err(OleError::Encrypted),
                0x0042 => {
                    if let Some(cp) = u16_at(body, 0) {
                        enc = super::codepage(cp as i64);
                    }
                }
                0x0085 => {
                    let off = u32_at(body, 0).unwrap_or(0) as usize;
                    let dt = body.get(5).copied().unwrap_or(0);
                    if let Some(name) = body
                        .get(6..)
                        .and_then(|b| biff_string(b, false, biff8, enc))
                    {
                        if sheets.len() < 65536 {
                            sheets.push((off, name, dt));
                        }
                    }
                }
                0x00FC => {
                    let mut segs = vec![body];
                    let mut p = pos;
                    while let (Some(0x003C), Some(l)) = (u16_at(wb, p), u16_at(wb, p + 2)) {
                        let Some(b) = wb.get(p + 4..p + 4 + l as usize) else {
                            break;
                        };
                        segs.push(b);
                        p += 4 + l as usize;
                    }
                    pos = p;
                    arena.clear();
                    ends.clear();
                    let s = Segs { segs, i: 0, pos: 0 };
                    read_sst(s, &mut arena, &mut ends, limits.max_size);
                }
                // LABELSST
                0x00FD => {
                    let (Some(r), Some(c), Some(k)) =
                        (u16_at(body, 0), u16_at(body, 2), u32_at(body, 6))
                    else {
                        continue;
                    };
                    let k = k as usize;
                    if let Some(&e) = ends.get(k) {
                        let s = if k == 0 { 0 } else { ends[k - 1] };
                        if let Some(t) = arena.get(s..e) {
                            grid.cell(r, c, t);
                        }
                    }
                }
                // LABEL, RSTRING, and the STRING result of the preceding FORMULA.
                0x0204 | 0x00D6 | 0x0207 => {
                    let (r, c, b) = if typ == 0x0207 {
                        let Some((r, c)) = pending_formula.take() else {
                            continue;
                        };
                        (r, c, body)
                    } else {
                        let (Some(r), Some(c)) = (u16_at(body, 0), u16_at(body, 2)) else {
                            continue;
                        };
                        (r, c, body.get(6..).unwrap_or_default())
                    };
                    if let Some(t) = biff_string(b, true, biff8, enc) {
                        grid.cell(r, c, &t);
                    }
                }
                // NUMBER
                0x0203 => {
                    if let (Some(r), Some(c), Some(v)) =
                        (u16_at(body, 0), u16_at(body, 2), body.get(6..14))
                    {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(v);
                        grid.cell(r, c, &number(f64::from_le_bytes(a)));
                    }
                }
                // RK
                0x027E => {
                    if let (Some(r), Some(c), Some(v)) =
                        (u16_at(body, 0), u16_at(body, 2), u32_at(body, 6))
                    {
                        grid.cell(r, c, &number(rk(v)));
                    }
                }
                // MULRK: row, first column, (ixfe, rk)*, last column.
                0x00BD => {
                    let (Some(r), Some(c0)) = (u16_at(body, 0), u16_at(body, 2)) else {
                        continue;
                    };
                    let cells = body.len().saturating_sub(6) / 6;
                    for j in 0..cells {
                        if let Some(v) = u32_at(body, 4 + j * 6 + 2) {
                            grid.cell(r, c0.saturating_add(j as u16), &number(rk(v)));
                        }
                    }
                }
                // FORMULA: the cached result (a number, or a STRING record follows).
                0x0006 => {
                    let (Some(r), Some(c), Some(v)) =
                        (u16_at(body, 0), u16_at(body, 2), body.get(6..14))
                    else {
                        continue;
                    };
                    if v[6] == 0xFF && v[7] == 0xFF {
                        if v[0] == 0 {
                            pending_formula = Some((r, c));
                        }
                    } else {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(v);
                        grid.cell(r, c, &number(f64::from_le_bytes(a)));
                    }
                }
                _ => {}
            }
            if grid.out.len() > limits.max_size {
                break;
            }
        }
        if first {
            return Err(OleError::Damaged(S, "empty"));
        }
        Ok((grid.out, macros))
    }

    /// The text of a PowerPoint document stream, and whether it held a VBA project or OLE
    /// objects. Records are walked flat (a container's header, then its children), with the
    /// ends of open containers on a bounded stack to skip the master slides.
    fn ppt_text(pp: &[u8], limits: &Limits) -> Result<(String, bool, bool), OleError> {
        const MAIN_MASTER: u16 = 0x03F8;
        const TEXT_CHARS: u16 = 0x0FA0;
        const TEXT_BYTES: u16 = 0x0FA8;
        let mut out = String::new();
        let mut open: Vec<(usize, u16)> = Vec::new();
        let (mut macros, mut objects) = (false, false);
        let mut pos = 0usize;
        let mut n = 0usize;
        while let (Some(vi), Some(typ), Some(len)) =
            (u16_at(pp, pos), u16_at(pp, pos + 2), u32_at(pp, pos + 4))
        {
            tick(&mut n, limits)?;
            while open.last().is_some_and(|&(end, _)| pos >= end) {
                open.pop();
            }
            let body = pos + 8;
            let end = body.saturating_add(len as usize).min(pp.len());
            match typ {
                0x0400..=0x0402 => macros = true,
                // ExOleObjAtom, ExOleEmbed, ExOleLink (VBA lives in an ExOleObjStg too).
                0x0FC3 | 0x0FCC | 0x0FCE => objects = true,
                0x2F14 => return Err(OleError::Encrypted),
                _ => {}
            }
            if vi & 0x000F == 0x000F && open.len() < 64 {
                open.push((end, typ));
                pos = body;
                continue;
            }
            let in_master = open.iter().any(|&(_, t)| t == MAIN_MASTER);
            if !in_master && (typ == TEXT_CHARS || typ == TEXT_BYTES) {
                let b = pp.get(body..end).unwrap_or_default();
                let chars: Vec<char> = if typ == TEXT_CHARS {
                    let units = b.chunks_exact(2).map(|p| u16::from_le_bytes([p[0], p[1]]));
                    char::decode_utf16(units)
                        .map(|c| c.unwrap_or('\u{FFFD}'))
                        .collect()
                } else {
                    b.iter().map(|&c| c as char).collect()
                };
                for c in chars {
                    match c {
                        '\r' | '\u{0B}' => out.push('\n'),
                        '\t' => out.push('\t'),
                        c if c.is_control() => {}
                        c => out.push(c),
                    }
                }
                out.push('\n');
                if out.len() > limits.max_size {
                    break;
                }
            }
            pos = end.max(body);
        }
        Ok((out, macros, objects))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtf_text_in_its_code_page() {
        let rtf = b"{\\rtf1\\ansi\\ansicpg932{\\fonttbl{\\f0 MS Mincho;}}{\\*\\generator x;}\\f0 \\'82\\'a0\\'82\\'a2\\par {\\object{\\objdata 0102}}\\u12358?x\\tab y}";
        assert_eq!(rtf_to_text(rtf, 1000), "あい\nうx\ty");
        assert_eq!(rtf_to_text(b"{\\rtf1 {{{{", 1000), "");
        let deep = "{".repeat(100_000);
        assert_eq!(rtf_to_text(deep.as_bytes(), 1000), "");
    }

    #[test]
    fn not_ole2_is_not_read() {
        let limits = Limits::from_config(&crate::config::SanitizeConfig::default());
        assert!(ole::extract(b"plain text, not a compound file", &limits).is_err());
        assert!(!ole::encrypted(b"", &limits));
    }
}
