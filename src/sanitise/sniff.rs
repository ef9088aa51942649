//! Type by content: the magic bytes at the start of a part say what it really is.
//!
//! Senders (and attackers) choose the declared media type and the file name; the bytes are
//! what a program on the receiving side will act on. Every part is sniffed here and the policy
//! decides by the [`Category`] found, reporting a mismatch with the declared type. The table
//! covers what mail carries in practice, including what is abused: office formats (OOXML with
//! its macro-enabled variants, OLE2, RTF, OneNote), PDF, executables (PE, ELF, Mach-O, Java
//! class, LNK shortcuts, CHM), scripts, archives (zip with its encryption flag, gzip, 7z, rar,
//! LZH, cab, tar, ISO images), TNEF `winmail.dat`, images, HTML and SVG.
//!
//! [`MagicScanner`] looks for the unmistakable binary signatures anywhere inside a stream: a
//! part declared as text that carries a zip local header in its middle is not text.
//! [`MacroScanner`] looks for a VBA project anywhere in a zip, so that a large `xlsm` is not
//! reported as an `xlsx` because its VBA project lies past the sample.

use memchr::memmem;

/// What a detected type is, for the attachment policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Image,
    Pdf,
    Office,
    Archive,
    EncryptedArchive,
    /// Native code, shortcuts, installers: never delivered.
    Executable,
    /// Scripts with an interpreter line, registry files, HTML applications.
    Script,
    Html,
    /// S/MIME or PGP encrypted data.
    Encrypted,
    /// Plain text (and XML) without a binary signature: `text` policy, re-encoded to UTF-8 by
    /// `cdr::text`, which checks the whole file and refuses what is not text after all.
    Text,
    /// Known formats with no better category (audio, video, ...).
    Other,
}

/// A type found by content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detected {
    /// Short name shown in reports (`zip`, `docx`, `pdf`, `pe-executable`, ...).
    pub name: &'static str,
    pub category: Category,
}

const fn d(name: &'static str, category: Category) -> Option<Detected> {
    Some(Detected { name, category })
}

/// How many leading bytes [`sniff`] can use (ISO 9660 puts its signature at 32 KiB).
pub const SNIFF_LEN: usize = 0x9006;

/// Detects the type of `data` (the first bytes of a part; [`SNIFF_LEN`] is enough for all).
pub fn sniff(data: &[u8]) -> Option<Detected> {
    use Category::*;
    let at = |off: usize, sig: &[u8]| data.get(off..off + sig.len()) == Some(sig);
    if at(0, b"PK\x03\x04") || at(0, b"PK\x05\x06") || at(0, b"PK\x07\x08") {
        return sniff_zip(data);
    }
    if at(0, b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1") {
        return d("ole2", Office);
    }
    if at(0, b"{\\rtf") {
        return d("rtf", Office);
    }
    if at(
        0,
        b"\xE4\x52\x5C\x7B\x8C\xD8\xA7\x4D\xAE\xB1\x53\x78\xD0\x29\x96\xD3",
    ) {
        return d("onenote", Office);
    }
    if at(0, b"\x78\x9F\x3E\x22") && data.len() >= 6 {
        // TNEF (winmail.dat): Outlook's container of attachments. `Other` to policy: the
        // CDR dispatch recognises it by name and has its own TNEF reader. Before the PDF
        // search: a TNEF or tar holding a PDF member has `%PDF-` in its first KiB.
        return d("tnef", Other);
    }
    if at(257, b"ustar") {
        return d("tar", Archive);
    }
    // Adobe readers accept junk before the header within the first KiB.
    if memmem::find(&data[..data.len().min(1024)], b"%PDF-").is_some() {
        return d("pdf", Pdf);
    }
    if at(0, b"MZ") {
        return d("pe-executable", Executable);
    }
    if at(0, b"\x7FELF") {
        return d("elf", Executable);
    }
    for sig in [
        b"\xFE\xED\xFA\xCE",
        b"\xFE\xED\xFA\xCF",
        b"\xCE\xFA\xED\xFE",
        b"\xCF\xFA\xED\xFE",
    ] {
        if at(0, sig) {
            return d("mach-o", Executable);
        }
    }
    if at(0, b"\xCA\xFE\xBA\xBE") {
        return d("mach-o-or-java-class", Executable);
    }
    if at(0, b"\x4C\x00\x00\x00\x01\x14\x02\x00") {
        return d("lnk", Executable);
    }
    if at(0, b"ITSF") {
        return d("chm", Executable);
    }
    if at(0, b"dex\n") {
        return d("dex", Executable);
    }
    if at(0, b"\0asm") {
        return d("wasm", Executable);
    }
    if at(0, b"#!") {
        return d("script", Script);
    }
    if at(0, b"REGEDIT4") || at(0, b"Windows Registry Editor") {
        return d("registry", Script);
    }
    if at(0, b"\xFF\xFEW\0i\0n\0d\0o\0w\0s\0 \0R\0e\0g") {
        return d("registry", Script);
    }
    if at(0, b"\x89PNG\r\n\x1A\n") {
        return d("png", Image);
    }
    if at(0, b"\xFF\xD8\xFF") {
        return d("jpeg", Image);
    }
    if at(0, b"GIF87a") || at(0, b"GIF89a") {
        return d("gif", Image);
    }
    if at(0, b"RIFF") && at(8, b"WEBP") {
        return d("webp", Image);
    }
    if at(0, b"II*\0") || at(0, b"MM\0*") {
        return d("tiff", Image);
    }
    if at(0, b"BM") && data.len() >= 18 && matches!(data[14], 12 | 40 | 52 | 56 | 64 | 108 | 124) {
        return d("bmp", Image);
    }
    if at(0, b"\0\0\x01\0") && data.len() >= 6 && data[4] != 0 && data[5] == 0 {
        return d("ico", Image);
    }
    if at(4, b"ftypheic") || at(4, b"ftypheix") || at(4, b"ftypavif") || at(4, b"ftypmif1") {
        return d("heif", Image);
    }
    if at(0, b"\x1F\x8B") {
        return d("gzip", Archive);
    }
    if at(0, b"7z\xBC\xAF\x27\x1C") {
        return d("7z", Archive);
    }
    if at(0, b"Rar!\x1A\x07") {
        return d("rar", Archive);
    }
    if at(0, b"\xFD7zXZ\0") {
        return d("xz", Archive);
    }
    if at(0, b"BZh") && data.get(3).is_some_and(|c| (b'1'..=b'9').contains(c)) {
        return d("bzip2", Archive);
    }
    if at(0, b"\x28\xB5\x2F\xFD") {
        return d("zstd", Archive);
    }
    if at(0, b"MSCF") {
        return d("cab", Archive);
    }
    if at(2, b"-lh") && data.get(6) == Some(&b'-') || at(2, b"-lz") && data.get(6) == Some(&b'-') {
        return d("lzh", Archive);
    }
    if at(0x8001, b"CD001") || at(0x8801, b"CD001") || at(0x9001, b"CD001") {
        return d("iso", Archive);
    }
    if at(0, b"koly") || at(0, b"conectix") || at(0, b"vhdxfile") || at(0, b"KDM") {
        return d("disk-image", Archive);
    }
    if at(0, b"-----BEGIN PGP MESSAGE-----") {
        return d("pgp-encrypted", Encrypted);
    }
    if is_pkcs7(data) {
        return d("pkcs7", Encrypted);
    }
    if at(0, b"ID3") || at(0, b"OggS") || at(0, b"fLaC") || (at(0, b"RIFF") && at(8, b"WAVE")) {
        return d("audio", Other);
    }
    if at(4, b"ftyp") || (at(0, b"RIFF") && at(8, b"AVI ")) || at(0, b"\x1A\x45\xDF\xA3") {
        return d("video", Other);
    }
    sniff_markup(data)
}

/// [`sniff`] for an attachment: when no signature matches, content that reads as text
/// (see [`looks_text`]) is `text` ([`Category::Text`]), so that the `text` policy, not
/// `other`, decides it. Only for attachments: inside a part declared as text, "no signature"
/// must stay `None` (the binary check looks for signatures past the sample).
pub fn sniff_attachment(data: &[u8]) -> Option<Detected> {
    // The sample is enough to type it; the text converter checks the whole file.
    let sample = &data[..data.len().min(SNIFF_LEN)];
    sniff(data).or_else(|| {
        looks_text(sample).then_some(Detected {
            name: "text",
            category: Category::Text,
        })
    })
}

/// Whether a sample (the start of a file, maybe cut mid-character) reads as text: not empty,
/// no NUL, control characters other than tab, CR, LF, FF and the ISO-2022-JP shifts (ESC, SO,
/// SI) at most 1 % of it (or fewer than four), and it decodes without errors as UTF-8 (ASCII included) or as one
/// of the Japanese charsets found by detection (Shift_JIS, EUC-JP, ISO-2022-JP). A text in
/// another charset (Latin-1, GBK, UTF-16) is not recognised: it stays `other`. The decision
/// is made on the sample up to its last line feed, so that a character cut at the end of the
/// sample does not count as an error.
pub fn looks_text(sample: &[u8]) -> bool {
    if sample.is_empty() || memchr::memchr(0, sample).is_some() {
        return false;
    }
    let ctrl = sample
        .iter()
        .filter(|&&b| matches!(b, 0x01..=0x08 | 0x0B | 0x10..=0x1A | 0x1C..=0x1F | 0x7F))
        .count();
    if ctrl >= 4 && ctrl * 100 > sample.len() {
        return false;
    }
    let head = match memchr::memrchr(b'\n', sample) {
        Some(i) if i + 1 < sample.len() => &sample[..=i],
        _ => sample,
    };
    // Without a line feed to cut at, the sample may end inside a character: up to three
    // trailing octets (a UTF-8 sequence, a Shift_JIS or EUC-JP pair) may be left out.
    let tries = if head.len() == sample.len() { 4 } else { 1 };
    (0..tries.min(head.len())).any(|cut| {
        let decoded = crate::mime::charset::decode(None, &head[..head.len() - cut]);
        !decoded.had_errors && is_text_charset(decoded.charset)
    })
}

/// The charsets [`looks_text`] accepts (names as `crate::mime::charset` reports them).
pub fn is_text_charset(name: &str) -> bool {
    matches!(
        name,
        "UTF-8" | "us-ascii" | "Shift_JIS" | "EUC-JP" | "ISO-2022-JP"
    )
}

fn sniff_zip(data: &[u8]) -> Option<Detected> {
    use Category::*;
    // General purpose flag bit 0 of the first local header: the entry is encrypted.
    let encrypted =
        data.get(0..4) == Some(b"PK\x03\x04") && data.get(6).is_some_and(|f| f & 1 == 1);
    if encrypted {
        return d("zip-encrypted", EncryptedArchive);
    }
    let has = |s: &[u8]| memmem::find(data, s).is_some();
    if has(b"[Content_Types].xml") {
        let office = if has(b"word/") {
            d("docx", Office)
        } else if has(b"xl/") {
            d("xlsx", Office)
        } else if has(b"ppt/") {
            d("pptx", Office)
        } else {
            d("ooxml", Office)
        };
        return office.map(|o| with_macros(o, MACRO_MARKS.iter().any(|m| has(m))));
    }
    if data.get(30..38) == Some(b"mimetype") && has(b"application/vnd.oasis.opendocument") {
        return d("odf", Office);
    }
    if has(b"META-INF/MANIFEST.MF") || has(b"AndroidManifest.xml") || has(b"classes.dex") {
        return d("jar-or-apk", Executable);
    }
    d("zip", Archive)
}

/// What only a macro-enabled OOXML package holds: the VBA project entry (its name is stored
/// uncompressed in the local header and the central directory) or a macro-enabled content
/// type (visible when `[Content_Types].xml` is stored).
const MACRO_MARKS: &[&[u8]] = &[b"vbaProject.bin", b"vbaData.xml", b"macroEnabled"];
const MAX_MARK: usize = 14;

/// The macro-enabled variant of an OOXML type (`xlsx` → `xlsm`, ...) when `macros` is true;
/// anything else unchanged. Macro documents are the classic mail-borne malware, and the
/// notice should say so rather than show a harmless-looking `xlsx`.
pub fn with_macros(d: Detected, macros: bool) -> Detected {
    if !macros {
        return d;
    }
    let name = match d.name {
        "docx" => "docm",
        "xlsx" => "xlsm",
        "pptx" => "pptm",
        "ooxml" => "ooxml-macro",
        _ => return d,
    };
    Detected { name, ..d }
}

/// Looks for the marks of a macro-enabled OOXML package (`MACRO_MARKS`) anywhere in a stream
/// fed in chunks of any size: in a large workbook the VBA project lies far past the sniffing
/// sample, but the central directory at the end names it.
#[derive(Debug, Default)]
pub struct MacroScanner {
    tail: Vec<u8>,
    found: bool,
}

impl MacroScanner {
    pub fn found(&self) -> bool {
        self.found
    }

    pub fn feed(&mut self, data: &[u8]) {
        if self.found || data.is_empty() {
            return;
        }
        let hit = |hay: &[u8]| MACRO_MARKS.iter().any(|m| memmem::find(hay, m).is_some());
        if !self.tail.is_empty() {
            let mut joint = self.tail.clone();
            joint.extend_from_slice(&data[..data.len().min(MAX_MARK - 1)]);
            self.found = hit(&joint);
        }
        if !self.found {
            self.found = hit(data);
        }
        let keep = MAX_MARK - 1;
        if data.len() >= keep {
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - keep..]);
        } else {
            self.tail.extend_from_slice(data);
            let excess = self.tail.len().saturating_sub(keep);
            self.tail.drain(..excess);
        }
    }
}

/// DER `SEQUENCE` whose first element is the PKCS #7 / CMS content-type OID prefix.
fn is_pkcs7(data: &[u8]) -> bool {
    const OID: &[u8] = b"\x06\x09\x2A\x86\x48\x86\xF7\x0D\x01\x07";
    data.first() == Some(&0x30) && memmem::find(&data[..data.len().min(24)], OID).is_some()
}

fn sniff_markup(data: &[u8]) -> Option<Detected> {
    use Category::*;
    let mut s = &data[..data.len().min(2048)];
    if let Some(rest) = s.strip_prefix(b"\xEF\xBB\xBF") {
        s = rest;
    }
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let s = &s[start..];
    if s.first() != Some(&b'<') {
        return None;
    }
    let lower: Vec<u8> = s.iter().map(|b| b.to_ascii_lowercase()).collect();
    let has = |p: &[u8]| memmem::find(&lower, p).is_some();
    if has(b"<hta:application") {
        return d("hta", Script);
    }
    if has(b"<svg") {
        return d("svg", Script);
    }
    for p in [
        &b"<!doctype html"[..],
        b"<html",
        b"<head",
        b"<body",
        b"<script",
        b"<iframe",
        b"<meta",
        b"<div",
        b"<table",
        b"<p>",
        b"<a ",
        b"<!--",
    ] {
        if lower.starts_with(p) || (p.len() > 5 && has(p)) {
            return d("html", Html);
        }
    }
    if lower.starts_with(b"<?xml") {
        return d("xml", Text);
    }
    None
}

/// Whether a sample declared as text looks binary: control octets (NUL included; TAB, CR, LF,
/// FF, ESC, SO and SI are allowed: ISO-2022-JP uses the last three) make up more than 5 % of
/// it, at least eight of them, or NULs more than 1 % (at least four). A few stray controls are
/// text with damage (the normaliser removes them); binary data has them everywhere. UTF-16 text
/// (BOM, or a declared UTF-16 charset) is exempt from the NUL rule.
pub fn looks_binary(sample: &[u8], utf16: bool) -> bool {
    let utf16 = utf16 || sample.starts_with(b"\xFF\xFE") || sample.starts_with(b"\xFE\xFF");
    if sample.is_empty() {
        return false;
    }
    let mut nul = 0usize;
    let mut ctrl = 0usize;
    for &b in sample {
        match b {
            0 => nul += 1,
            b'\t' | b'\n' | b'\r' | 0x0C | 0x1B | 0x0E | 0x0F => {}
            0x01..=0x1F | 0x7F => ctrl += 1,
            _ => {}
        }
    }
    let nul = if utf16 { 0 } else { nul };
    let bad = nul + ctrl;
    (bad >= 8 && bad * 100 > sample.len() * 5) || (nul >= 4 && nul * 100 > sample.len())
}

/// Signatures that never occur in text: finding one anywhere in a part declared as text
/// means a binary object hides in it.
const STRONG: &[(&[u8], &str)] = &[
    (b"PK\x03\x04", "zip"),
    (b"PK\x01\x02", "zip"),
    (b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", "ole2"),
    (b"\x7FELF\x01", "elf"),
    (b"\x7FELF\x02", "elf"),
    (b"7z\xBC\xAF\x27\x1C", "7z"),
    (b"Rar!\x1A\x07", "rar"),
    (b"\x89PNG\r\n\x1A\n", "png"),
    (b"\x1F\x8B\x08\x00", "gzip"),
    (b"MZ\x90\x00\x03\x00", "pe-executable"),
];

const MAX_SIG: usize = 8;

/// Finds the strong signatures (zip, OLE2, ELF, 7z, rar, PNG, gzip, PE) anywhere in a stream fed in chunks of any size.
#[derive(Debug, Default)]
pub struct MagicScanner {
    tail: Vec<u8>,
    found: Option<&'static str>,
}

impl MagicScanner {
    pub fn new() -> MagicScanner {
        MagicScanner::default()
    }

    /// The first signature found so far.
    pub fn found(&self) -> Option<&'static str> {
        self.found
    }

    pub fn feed(&mut self, data: &[u8]) {
        if self.found.is_some() || data.is_empty() {
            return;
        }
        // Signatures straddling the previous chunk and this one.
        if !self.tail.is_empty() {
            let mut joint = self.tail.clone();
            joint.extend_from_slice(&data[..data.len().min(MAX_SIG - 1)]);
            self.found = find_strong(&joint);
        }
        if self.found.is_none() {
            self.found = find_strong(data);
        }
        let keep = MAX_SIG - 1;
        if data.len() >= keep {
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - keep..]);
        } else {
            self.tail.extend_from_slice(data);
            let excess = self.tail.len().saturating_sub(keep);
            self.tail.drain(..excess);
        }
    }
}

/// The first strong signature (see [`MagicScanner`]) anywhere in `hay`.
pub fn strong_signature(hay: &[u8]) -> Option<&'static str> {
    find_strong(hay)
}

/// What a decoded piece of text turned out to be, if it is a binary object: a known magic at
/// its start (anything but markup) or a strong signature anywhere in it.
pub fn binary_magic(decoded: &[u8]) -> Option<&'static str> {
    sniff(decoded)
        .filter(|d| !matches!(d.category, Category::Html | Category::Other))
        .map(|d| d.name)
        .or_else(|| find_strong(decoded))
}

fn find_strong(hay: &[u8]) -> Option<&'static str> {
    // memmem is vectorised: a handful of passes over a chunk is cheap next to decoding it.
    let mut best: Option<(usize, &'static str)> = None;
    for (sig, name) in STRONG {
        if let Some(i) = memmem::find(hay, sig) {
            if best.is_none_or(|(b, _)| i < b) {
                best = Some((i, name));
            }
        }
    }
    best.map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(data: &[u8]) -> Option<&'static str> {
        sniff(data).map(|d| d.name)
    }

    #[test]
    fn detects_common_and_abused_formats() {
        assert_eq!(name(b"PK\x03\x04\x14\x00\x00\x00\x08\x00rest"), Some("zip"));
        assert_eq!(
            sniff(b"PK\x03\x04\x14\x00\x01\x00\x08\x00rest")
                .unwrap()
                .category,
            Category::EncryptedArchive
        );
        let mut docx = b"PK\x03\x04\x14\x00\x06\x00\x08\x00".to_vec();
        docx.extend_from_slice(b"....[Content_Types].xml....word/document.xml");
        assert_eq!(name(&docx), Some("docx"));
        assert_eq!(name(b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1\0\0"), Some("ole2"));
        assert_eq!(name(b"%PDF-1.7\n"), Some("pdf"));
        assert_eq!(name(b"junk junk\n%PDF-1.4"), Some("pdf"));
        assert_eq!(name(b"{\\rtf1\\ansi"), Some("rtf"));
        assert_eq!(name(b"MZ\x90\x00"), Some("pe-executable"));
        assert_eq!(name(b"\x7FELF\x02\x01"), Some("elf"));
        assert_eq!(name(b"\xCF\xFA\xED\xFE"), Some("mach-o"));
        assert_eq!(name(b"#!/bin/sh\nrm -rf /"), Some("script"));
        assert_eq!(name(b"\x89PNG\r\n\x1A\n\0\0"), Some("png"));
        assert_eq!(name(b"\xFF\xD8\xFF\xE0"), Some("jpeg"));
        assert_eq!(name(b"GIF89a"), Some("gif"));
        assert_eq!(name(b"RIFF\0\0\0\0WEBPVP8"), Some("webp"));
        assert_eq!(name(b"II*\0"), Some("tiff"));
        assert_eq!(name(b"\x1F\x8B\x08"), Some("gzip"));
        assert_eq!(name(b"7z\xBC\xAF\x27\x1C"), Some("7z"));
        assert_eq!(name(b"Rar!\x1A\x07\x00"), Some("rar"));
        assert_eq!(name(b"\x4C\x00\x00\x00\x01\x14\x02\x00\0\0"), Some("lnk"));
        assert_eq!(name(b"xx-lh5-rest"), Some("lzh"));
        let mut iso = vec![0u8; 0x8010];
        iso[0x8001..0x8006].copy_from_slice(b"CD001");
        assert_eq!(name(&iso), Some("iso"));
        assert_eq!(name(b"  <!DOCTYPE html><html>"), Some("html"));
        assert_eq!(name(b"<?xml version=\"1.0\"?><svg xmlns="), Some("svg"));
        assert_eq!(name(b"<?xml version=\"1.0\"?><root/>"), Some("xml"));
        assert_eq!(
            sniff(b"-----BEGIN PGP MESSAGE-----\n").unwrap().category,
            Category::Encrypted
        );
        assert_eq!(
            name(b"0\x80\x06\x09\x2A\x86\x48\x86\xF7\x0D\x01\x07\x03"),
            Some("pkcs7")
        );
    }

    fn ooxml(folder: &str, extra: &str) -> Vec<u8> {
        let mut z = b"PK\x03\x04\x14\x00\x06\x00\x08\x00".to_vec();
        z.extend_from_slice(b"....[Content_Types].xml....PK\x03\x04....");
        z.extend_from_slice(format!("{folder}/document.xml....PK\x03\x04....{extra}").as_bytes());
        z
    }

    #[test]
    fn macro_enabled_office_documents() {
        assert_eq!(name(&ooxml("xl", "xl/worksheets/sheet1.xml")), Some("xlsx"));
        assert_eq!(name(&ooxml("xl", "xl/vbaProject.bin")), Some("xlsm"));
        assert_eq!(name(&ooxml("word", "word/vbaProject.bin")), Some("docm"));
        assert_eq!(name(&ooxml("ppt", "ppt/vbaProject.bin")), Some("pptm"));
        // A stored [Content_Types].xml naming a macro-enabled main part.
        assert_eq!(
            name(&ooxml(
                "word",
                "application/vnd.ms-word.document.macroEnabled.main+xml"
            )),
            Some("docm")
        );
        let d = sniff(&ooxml("xl", "xl/vbaProject.bin")).unwrap();
        assert_eq!(d.category, Category::Office);
        // A plain zip holding a file of that name is still a zip.
        let mut z = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
        z.extend_from_slice(b"vbaProject.bin");
        assert_eq!(name(&z), Some("zip"));

        // Past the sniffing sample: the scanner sees the whole part (the central directory at
        // the end names every entry), across chunk edges.
        let mut big = ooxml("xl", "xl/worksheets/sheet1.xml");
        big.extend(std::iter::repeat_n(b'x', SNIFF_LEN * 3));
        big.extend_from_slice(b"PK\x01\x02....xl/vbaProject.bin....");
        let first = sniff(&big[..SNIFF_LEN]).unwrap();
        assert_eq!(first.name, "xlsx");
        for chunk in [1, 7, 4096] {
            let mut m = MacroScanner::default();
            for c in big.chunks(chunk) {
                m.feed(c);
            }
            assert!(m.found(), "chunk {chunk}");
            assert_eq!(with_macros(first, m.found()).name, "xlsm");
        }
        let mut m = MacroScanner::default();
        m.feed(&ooxml("xl", "xl/worksheets/sheet1.xml"));
        assert!(!m.found());
        assert_eq!(with_macros(first, false).name, "xlsx");
        let pdf = sniff(b"%PDF-1.7").unwrap();
        assert_eq!(with_macros(pdf, true), pdf);
    }

    #[test]
    fn tnef_is_typed_by_content() {
        let d = sniff(b"\x78\x9F\x3E\x22\x01\x00\x01\x06\x90\x08\x00").unwrap();
        assert_eq!(d.name, "tnef");
        assert_eq!(name(b"\x78\x9F\x3E"), None);
        // A PDF member near the start does not make the container a PDF.
        let mut t = b"\x78\x9F\x3E\x22\x01\x00\x01\x06\x90\x08\x00".to_vec();
        t.extend_from_slice(b"%PDF-1.7\n1 0 obj");
        assert_eq!(name(&t), Some("tnef"));
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        tar.extend_from_slice(b"%PDF-1.7\n");
        assert_eq!(name(&tar), Some("tar"));
    }

    #[test]
    fn plain_text_is_not_detected() {
        assert_eq!(name(b"Hello, this is text.\r\n"), None);
        assert_eq!(name("お世話になっております。".as_bytes()), None);
        assert_eq!(name(b""), None);
        assert_eq!(name(b"M"), None);
        assert_eq!(name(b"BM is a brand"), None);
        assert_eq!(name(b"<not really markup"), None);
    }

    #[test]
    fn attachments_that_read_as_text() {
        let t = |data: &[u8]| sniff_attachment(data).map(|d| (d.name, d.category));
        let text = Some(("text", Category::Text));
        assert_eq!(t(b"Hello, this is text.\r\n"), text);
        assert_eq!(t("お世話になっております。\n".as_bytes()), text);
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("氏名,住所\n山田,東京\n");
        assert_eq!(t(&sjis), text);
        assert_eq!(t(b"\x1b$B$3$s$K$A$O\x1b(B\r\n"), text);
        // A sample cut in the middle of a character is still text, with or without a line
        // feed before the cut.
        let mut cut = "一行目\n二行目".as_bytes().to_vec();
        cut.pop();
        assert_eq!(t(&cut), text);
        let mut cut = "一行目、二行目".repeat(3000).into_bytes();
        cut.truncate(SNIFF_LEN + 1);
        assert_eq!(cut[..SNIFF_LEN].iter().filter(|&&b| b == b'\n').count(), 0);
        assert_eq!(t(&cut), text);
        let long = "一行目、二行目".repeat(5000);
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(&long);
        assert_eq!(t(&sjis[..SNIFF_LEN + 1]), text);
        assert_eq!(
            t(b"<?xml version=\"1.0\"?><a/>"),
            Some(("xml", Category::Text))
        );
        // Signatures first; binary, empty and non-Japanese 8-bit text are not text.
        assert_eq!(t(b"%PDF-1.7\n"), Some(("pdf", Category::Pdf)));
        assert_eq!(t(b"text\0with NUL"), None);
        assert_eq!(t(b""), None);
        assert_eq!(t(&[b'a', 1, 2, 3, 4, 5, 6]), None);
        assert_eq!(
            t(b"Caf\xe9 cr\xe8me br\xfbl\xe9e \xe0 la carte, na\xefve\n"),
            None
        );
        // Plain sniffing still leaves text undetected (the binary check of text parts).
        assert_eq!(sniff(b"Hello\r\n"), None);
    }

    #[test]
    fn binary_looking_samples() {
        assert!(!looks_binary(b"plain text\r\n\tindented\r\n", false));
        assert!(!looks_binary(b"\x1b$B$3$s$K$A$O\x1b(B\r\n", false));
        assert!(!looks_binary(b"text\0with a nul and a \x07 bell", false));
        assert!(looks_binary(
            b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00",
            false
        ));
        assert!(!looks_binary(b"\xFF\xFEh\0i\0", false));
        assert!(!looks_binary(b"h\0i\0", true));
        assert!(looks_binary(&[1u8, 2, 3, 4, 5, 6, 7, 8, b'a', b'b'], false));
        let mut text = "日本語の文章です。".repeat(50).into_bytes();
        text.extend_from_slice(b"\x00\x07\x08\x7f");
        assert!(!looks_binary(&text, false));
    }

    #[test]
    fn scanner_finds_signatures_across_chunk_edges() {
        let mut data = b"Dear customer,\nplease see below.\n".to_vec();
        data.extend_from_slice(b"PK\x03\x04\x14\x00rest of zip");
        for split in 0..data.len() {
            let mut s = MagicScanner::new();
            s.feed(&data[..split]);
            s.feed(&data[split..]);
            assert_eq!(s.found(), Some("zip"), "split at {split}");
        }
        let mut s = MagicScanner::new();
        for b in &data {
            s.feed(std::slice::from_ref(b));
        }
        assert_eq!(s.found(), Some("zip"));
        let mut s = MagicScanner::new();
        s.feed("普通の日本語のテキストです。PKは略語。\n".as_bytes());
        assert_eq!(s.found(), None);
    }
}
