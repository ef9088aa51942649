//! Attachment file names made safe to show and to save.
//!
//! The name of an attachment is chosen by the sender and read by two audiences: the person who
//! sees it in the mail client, and the program (usually Windows Explorer) that decides by its
//! extension what to run when it is opened. Attacks target the gap between the two:
//! right-to-left overrides (`invoice\u{202E}fdp.exe` is shown as `invoiceexe.pdf`), double
//! extensions padded with spaces (`invoice.pdf      .exe`), trailing dots that Windows drops
//! (`invoice.exe.`), paths (`..\..\Startup\x.lnk`), device names (`CON`, `NUL.txt`) that hang or
//! confuse programs saving them, control characters and over-long names. [`sanitize`] removes
//! all of these, so that what the user sees is what Windows will act on, and makes the
//! extension agree with the content found by sniffing; [`sanitize_report`] also says what it
//! changed, for the notice. Names are judged by their last extension, as Windows does
//! ([`last_extension`], [`double_extension`]).
//!
//! Japanese names from macOS arrive decomposed (`か` + U+3099 instead of `が`), which Windows
//! shows as separated voiced marks (濁点分離); kana with (semi-)voiced marks are recomposed.

/// Longest name produced, in UTF-8 octets (Windows allows 255 UTF-16 units per component, and
/// the name must leave room for the directory it is saved into).
pub const MAX_OCTETS: usize = 200;

/// Name given to an attachment whose name is empty once cleaned.
pub const FALLBACK: &str = "attachment";

/// Longest extension recognised as one; longer tails after a dot are part of the name.
const MAX_EXT: usize = 10;

/// A cleaned name and what was changed to get it (one short English phrase each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sanitized {
    pub name: String,
    pub changes: Vec<String>,
}

/// Makes `name` safe (see the module doc). `detected_ext` is the extension matching the content
/// found by sniffing (`pdf`, `png`, `jpeg`, ...), if any: a name whose extension disagrees is
/// given that extension, and a name without one gets it.
pub fn sanitize(name: &str, detected_ext: Option<&str>) -> String {
    sanitize_report(name, detected_ext).name
}

/// [`sanitize`], also listing what was changed and which disguises were found.
pub fn sanitize_report(name: &str, detected_ext: Option<&str>) -> Sanitized {
    let mut changes = Vec::new();
    let mut note = |s: &str| {
        if !changes.iter().any(|c: &String| c == s) {
            changes.push(s.to_string());
        }
    };

    // 1. Invisible and control characters.
    let mut cleaned = String::with_capacity(name.len());
    for c in name.chars() {
        if is_bidi_control(c) {
            note("bidirectional control characters removed (they disguise the real extension)");
        } else if c == '\t' {
            cleaned.push(' ');
        } else if c.is_control() {
            note("control characters removed");
        } else if is_invisible(c) {
            note("invisible characters removed");
        } else {
            cleaned.push(c);
        }
    }
    let cleaned = compose_kana(&cleaned);

    // 2. Directory path: only the last meaningful component is a file name (RFC 2183 2.3).
    let mut parts = cleaned
        .split(['/', '\\'])
        .filter(|p| !matches!(p.trim(), "" | "." | ".."));
    let base = parts.next_back().unwrap_or("");
    if cleaned.contains(['/', '\\']) {
        note("directory path removed");
    }

    // 3. Characters Windows refuses in names, and runs of white space (padding that pushes
    //    the real extension out of sight).
    let mut flat = String::with_capacity(base.len());
    let mut prev_space = false;
    for c in base.chars() {
        if matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*') {
            note("characters not allowed in Windows file names replaced by _");
            flat.push('_');
            prev_space = false;
        } else if c.is_whitespace() {
            if !prev_space {
                flat.push(c);
            }
            prev_space = true;
        } else {
            flat.push(c);
            prev_space = false;
        }
    }

    // 4. Dots and spaces at the ends: Windows drops trailing ones (`x.exe.` runs as `x.exe`),
    //    leading ones make hidden files elsewhere.
    let mut out = trim_ends(&flat).to_string();
    if out.is_empty() {
        if !name.is_empty() {
            note("empty name replaced");
        }
        out = FALLBACK.to_string();
    }

    // 5. Double extensions are judged by the last one.
    if let Some((shown, real)) = double_extension(&out) {
        note(&format!(
            "double extension .{shown}.{real}: the file type is .{real}"
        ));
    }

    // 6. The extension must say what the content is.
    if let Some(want) = detected_ext
        .map(|e| e.trim_start_matches('.'))
        .filter(|e| plausible_extension(e))
    {
        match last_extension(&out) {
            Some(have) if same_extension(&have, want) => {}
            Some(have) => {
                note(&format!(
                    "extension .{have} does not match the content ({want}): changed"
                ));
                out = with_extension(&out, want);
            }
            None => {
                note(&format!("extension .{} added from the content", want));
                out = with_extension(&out, want);
            }
        }
    }

    // 7. Device names.
    if is_reserved(&out) {
        note("Windows reserved device name prefixed with _");
        out.insert(0, '_');
    }

    // 8. Length.
    if out.len() > MAX_OCTETS {
        note(&format!("shortened to {MAX_OCTETS} octets"));
        out = shorten(&out, MAX_OCTETS);
    }
    Sanitized { name: out, changes }
}

/// The extension Windows acts on, lower-cased: what follows the last dot once trailing dots and
/// spaces are dropped, if it looks like an extension (1 to 10 ASCII letters and digits, at least
/// one letter, after a non-empty stem). `invoice.pdf.exe` gives `exe`; `v1.2` gives `None`.
pub fn last_extension(name: &str) -> Option<String> {
    split_extension(trim_ends(name)).map(|(_, e)| e.to_ascii_lowercase())
}

/// A disguising double extension: (`shown`, `real`) for `invoice.pdf.exe` = (`pdf`, `exe`).
/// Only a common document, image or media extension followed by a different one counts, so
/// that `Ltd.Invoice.pdf` is not reported; compound extensions (`tar.gz`) are not either.
pub fn double_extension(name: &str) -> Option<(String, String)> {
    const SHOWN: &[&str] = &[
        "pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "txt", "rtf", "csv", "odt", "ods",
        "odp", "jtd", "hwp", "jpg", "jpeg", "png", "gif", "bmp", "tif", "tiff", "zip", "lzh",
        "mp3", "mp4", "wav", "avi", "mov", "htm", "html", "xml", "eml", "msg",
    ];
    let (stem, real) = split_extension(trim_ends(name))?;
    let (_, shown) = split_extension(trim_ends(stem))?;
    let (shown, real) = (shown.to_ascii_lowercase(), real.to_ascii_lowercase());
    (SHOWN.contains(&shown.as_str()) && !same_extension(&shown, &real)).then_some((shown, real))
}

/// `name` (already sanitised) with its extension replaced by `ext` (or `ext` appended when it
/// has none): `report.xlsm` → `report.xlsx`, `scan.bmp` → `scan.png`. A name whose stem already
/// ends in `ext` loses the extra one (`invoice.pdf.exe` → `invoice.pdf`). The result is kept
/// within [`MAX_OCTETS`].
pub fn with_extension(name: &str, ext: &str) -> String {
    let ext = ext.trim_start_matches('.');
    if !plausible_extension(ext) {
        return name.to_string();
    }
    let name = trim_ends(name);
    let out = match split_extension(name) {
        Some((_, have)) if same_extension(have, ext) => name.to_string(),
        Some((stem, _)) => match split_extension(stem) {
            Some((_, inner)) if same_extension(inner, ext) => stem.to_string(),
            _ => format!("{stem}.{ext}"),
        },
        None if name.is_empty() => format!("{FALLBACK}.{ext}"),
        None => format!("{name}.{ext}"),
    };
    if out.len() > MAX_OCTETS {
        shorten(&out, MAX_OCTETS)
    } else {
        out
    }
}

/// Whether Windows treats `name` as a device (CON, PRN, AUX, NUL, COM0-9, LPT0-9, also with an
/// extension: `nul.txt` and `Con .tar.gz` are devices too).
pub fn is_reserved(name: &str) -> bool {
    let base = name.split('.').next().unwrap_or("").trim_end();
    let upper = base.to_uppercase();
    match upper.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$" | "CLOCK$" => true,
        _ => {
            let mut chars = upper.chars();
            let prefix: String = chars.by_ref().take(3).collect();
            let rest: Vec<char> = chars.collect();
            (prefix == "COM" || prefix == "LPT")
                && rest.len() == 1
                && matches!(rest[0], '0'..='9' | '¹' | '²' | '³')
        }
    }
}

/// Whether two extensions name the same format (`jpg` and `jpeg`, `tif` and `tiff`, ...),
/// ignoring case.
pub fn same_extension(a: &str, b: &str) -> bool {
    const ALIASES: &[&[&str]] = &[
        &["jpg", "jpeg", "jpe", "jfif"],
        &["tif", "tiff"],
        &["htm", "html"],
        &["gz", "gzip"],
        &["mid", "midi"],
        &["txt", "text"],
    ];
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    a == b
        || ALIASES
            .iter()
            .any(|g| g.contains(&a.as_str()) && g.contains(&b.as_str()))
}

/// The usual extension for a type name found by sniffing (`jpeg` → `jpg`); `None` for types
/// whose extension the content alone does not settle (OLE2 is doc, xls, ppt or msg).
pub fn extension_for(detected: &str) -> Option<&'static str> {
    Some(match detected {
        "png" => "png",
        "jpeg" => "jpg",
        "gif" => "gif",
        "webp" => "webp",
        "bmp" => "bmp",
        "tiff" => "tif",
        "pdf" => "pdf",
        "docx" => "docx",
        "xlsx" => "xlsx",
        "pptx" => "pptx",
        "docm" => "docm",
        "xlsm" => "xlsm",
        "pptm" => "pptm",
        "rtf" => "rtf",
        "zip" => "zip",
        "gzip" => "gz",
        "7z" => "7z",
        "rar" => "rar",
        "tnef" => "dat",
        _ => return None,
    })
}

/// 1 to 10 ASCII letters and digits with at least one letter.
fn plausible_extension(e: &str) -> bool {
    (1..=MAX_EXT).contains(&e.len())
        && e.bytes().all(|b| b.is_ascii_alphanumeric())
        && e.bytes().any(|b| b.is_ascii_alphabetic())
}

/// (stem, extension) when `name` ends in a plausible extension after a non-empty stem.
fn split_extension(name: &str) -> Option<(&str, &str)> {
    let dot = name.rfind('.')?;
    let (stem, ext) = (&name[..dot], &name[dot + 1..]);
    (!trim_ends(stem).is_empty() && plausible_extension(ext)).then_some((stem, ext))
}

fn trim_ends(s: &str) -> &str {
    s.trim_matches(|c: char| c == '.' || c.is_whitespace())
}

/// Cuts `name` to at most `max` octets, keeping its extension, on a character boundary that
/// does not separate a base character from its combining mark or variation selector.
fn shorten(name: &str, max: usize) -> String {
    let (stem, ext) = match split_extension(name) {
        Some((stem, ext)) => (stem, Some(ext)),
        None => (name, None),
    };
    let room = max.saturating_sub(ext.map_or(0, |e| e.len() + 1));
    let mut cut = room.min(stem.len());
    while cut > 0 && !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    while cut > 0 && stem[cut..].chars().next().is_some_and(is_attached) {
        cut -= 1;
        while cut > 0 && !stem.is_char_boundary(cut) {
            cut -= 1;
        }
    }
    let stem = trim_ends(&stem[..cut]);
    let stem = if stem.is_empty() { FALLBACK } else { stem };
    match ext {
        Some(e) => format!("{stem}.{e}"),
        None => stem.to_string(),
    }
}

/// Characters that belong to the character before them (combining marks, variation
/// selectors, joiners, emoji modifiers): a cut must not fall just before one.
fn is_attached(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'
        | '\u{3099}'..='\u{309A}'
        | '\u{200D}'
        | '\u{FE00}'..='\u{FE0F}'
        | '\u{1F3FB}'..='\u{1F3FF}'
        | '\u{E0100}'..='\u{E01EF}')
}

/// Characters that reorder text for display (Unicode bidi embeddings, overrides, isolates and
/// marks): `invoice\u{202E}fdp.exe` is shown as `invoiceexe.pdf`.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    )
}

/// Format and filler characters that show nothing (zero-width space, word joiner, BOM, line
/// and paragraph separators, soft hyphen, Hangul fillers, tag characters, annotation marks).
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}'
        | '\u{115F}'
        | '\u{1160}'
        | '\u{180E}'
        | '\u{200B}'
        | '\u{2028}'
        | '\u{2029}'
        | '\u{2060}'..='\u{2064}'
        | '\u{3164}'
        | '\u{FEFF}'
        | '\u{FFA0}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}')
}

/// Recomposes kana followed by a combining (semi-)voiced sound mark (U+3099, U+309A), as NFC
/// does, so that decomposed names from macOS read correctly on Windows.
fn compose_kana(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match chars.peek().and_then(|&m| compose(c, m)) {
            Some(composed) => {
                out.push(composed);
                chars.next();
            }
            None => out.push(c),
        }
    }
    out
}

fn compose(base: char, mark: char) -> Option<char> {
    let b = u32::from(base);
    // Kana rows whose voiced form is the next code point (か..ち, つ..と step 2; は..ほ
    // step 3 with the semi-voiced form after it), in hiragana and in katakana (+0x60).
    let voiced_row = |h: u32| {
        (0x304B..=0x3061).contains(&h) && (h - 0x304B).is_multiple_of(2)
            || (0x3064..=0x3068).contains(&h) && (h - 0x3064).is_multiple_of(2)
            || (0x306F..=0x307B).contains(&h) && (h - 0x306F).is_multiple_of(3)
    };
    let ha_row = |h: u32| (0x306F..=0x307B).contains(&h) && (h - 0x306F).is_multiple_of(3);
    let hira = if (0x30A1..=0x30FA).contains(&b) {
        b - 0x60
    } else {
        b
    };
    let composed = match mark {
        '\u{3099}' => match b {
            0x3046 => 0x3094,         // う → ゔ
            0x309D => 0x309E,         // ゝ → ゞ
            0x30A6 => 0x30F4,         // ウ → ヴ
            0x30EF..=0x30F2 => b + 8, // ワヰヱヲ → ヷヸヹヺ
            0x30FD => 0x30FE,         // ヽ → ヾ
            _ if voiced_row(hira) => b + 1,
            _ => return None,
        },
        '\u{309A}' if ha_row(hira) => b + 2,
        _ => return None,
    };
    char::from_u32(composed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str) -> String {
        sanitize(name, None)
    }

    #[test]
    fn plain_names_unchanged() {
        for n in [
            "report.pdf",
            "見積書（2024年度）.xlsx",
            "議事録　第3回.docx",
            "photo 1.JPG",
            "archive.tar.gz",
            "v1.2",
            "ﾃｽﾄ.txt",
        ] {
            let r = sanitize_report(n, None);
            assert_eq!(r.name, n);
            assert!(r.changes.is_empty(), "{n}: {:?}", r.changes);
        }
    }

    #[test]
    fn rtl_override_trick() {
        let r = sanitize_report("invoice\u{202E}fdp.exe", None);
        assert_eq!(r.name, "invoicefdp.exe");
        assert_eq!(last_extension(&r.name).as_deref(), Some("exe"));
        assert!(r.changes[0].starts_with("bidirectional control"));
        assert_eq!(
            s("\u{2067}abc\u{2069}\u{200F}.\u{200E}txt\u{202C}"),
            "abc.txt"
        );
        assert_eq!(s("請求書\u{202E}fdp.scr"), "請求書fdp.scr");
        assert_eq!(s("x\u{061C}y.pdf"), "xy.pdf");
    }

    #[test]
    fn controls_and_invisibles() {
        assert_eq!(s("a\r\nb\0c\u{7F}d\u{85}.txt"), "abcd.txt");
        assert_eq!(s("tab\there.txt"), "tab here.txt");
        assert_eq!(s("in\u{200B}voice\u{FEFF}.p\u{00AD}df"), "invoice.pdf");
        assert_eq!(s("\u{E0041}tag.png"), "tag.png");
        assert_eq!(s("a\u{2028}b.txt"), "ab.txt");
    }

    #[test]
    fn paths_and_dot_dot() {
        let r = sanitize_report("../../etc/passwd", None);
        assert_eq!(r.name, "passwd");
        assert!(r.changes.contains(&"directory path removed".to_string()));
        assert_eq!(s("C:\\Users\\x\\Desktop\\報告.pdf"), "報告.pdf");
        assert_eq!(
            s("..\\..\\AppData\\Roaming\\Microsoft\\Windows\\Start Menu\\x.lnk"),
            "x.lnk"
        );
        assert_eq!(s("dir/.."), "dir");
        assert_eq!(s("/"), FALLBACK);
        assert_eq!(s(".."), FALLBACK);
        assert_eq!(s("..."), FALLBACK);
        assert_eq!(s("a/./b.txt/"), "b.txt");
    }

    #[test]
    fn windows_invalid_characters() {
        assert_eq!(s("a<b>c:d\"e|f?g*h.txt"), "a_b_c_d_e_f_g_h.txt");
        // An NTFS alternate data stream.
        assert_eq!(s("notes.txt:evil.exe"), "notes.txt_evil.exe");
        assert_eq!(s("C:file.pdf"), "C_file.pdf");
    }

    #[test]
    fn ends_trimmed_and_padding_collapsed() {
        assert_eq!(s("  invoice.exe. . "), "invoice.exe");
        assert_eq!(s(".hidden"), "hidden");
        assert_eq!(s("\u{3000}全角空白.txt\u{3000}"), "全角空白.txt");
        let r = sanitize_report("invoice.pdf                                    .exe", None);
        assert_eq!(r.name, "invoice.pdf .exe");
        assert!(
            r.changes.iter().any(|c| c.contains(".pdf.exe")),
            "{:?}",
            r.changes
        );
    }

    #[test]
    fn reserved_device_names() {
        for n in [
            "CON",
            "con",
            "Prn.txt",
            "aux.tar.gz",
            "NUL",
            "COM1",
            "com9.log",
            "LPT3.doc",
            "lpt¹",
        ] {
            assert!(is_reserved(n), "{n}");
            assert_eq!(s(n), format!("_{n}"));
        }
        assert_eq!(s("nul .txt"), "_nul .txt");
        for n in [
            "CONSOLE.txt",
            "COM10",
            "LPT",
            "null.txt",
            "icon.png",
            "com.txt",
            "auxiliary",
        ] {
            assert!(!is_reserved(n), "{n}");
            assert_eq!(s(n), n);
        }
    }

    #[test]
    fn empty_names() {
        assert_eq!(s(""), "attachment");
        assert_eq!(s("   "), "attachment");
        assert_eq!(s("\u{202E}"), "attachment");
        assert_eq!(sanitize("", Some("pdf")), "attachment.pdf");
        assert_eq!(sanitize(" . ", Some("png")), "attachment.png");
    }

    #[test]
    fn length_limit_keeps_extension() {
        let long = "あ".repeat(100) + ".pdf"; // 304 octets
        let out = s(&long);
        assert!(out.len() <= MAX_OCTETS, "{}", out.len());
        assert!(out.ends_with("あ.pdf"));
        assert_eq!(out, "あ".repeat(65) + ".pdf");
        let r = sanitize_report(&long, None);
        assert!(r.changes.contains(&"shortened to 200 octets".to_string()));

        let no_ext = "x".repeat(300);
        assert_eq!(s(&no_ext), "x".repeat(200));
        // A cut never separates a character from its variation selector or combining mark.
        // (The plain cut at 196 falls inside the selector of the 28th pair.)
        let ivs = "a".to_string() + &"葛\u{E0100}".repeat(40) + ".txt"; // 7 octets a pair
        let out = s(&ivs);
        assert_eq!(out, "a".to_string() + &"葛\u{E0100}".repeat(27) + ".txt");
        // Trailing dots or spaces exposed by the cut are trimmed.
        let dots = "a".repeat(190) + &".".repeat(20) + "b.txt";
        let out = s(&dots);
        assert_eq!(out, "a".repeat(190) + ".txt");
    }

    #[test]
    fn last_and_double_extensions() {
        assert_eq!(last_extension("invoice.pdf.exe").as_deref(), Some("exe"));
        assert_eq!(last_extension("Invoice.PDF").as_deref(), Some("pdf"));
        assert_eq!(last_extension("evil.exe. . ").as_deref(), Some("exe"));
        assert_eq!(last_extension("v1.2"), None);
        assert_eq!(last_extension("noext"), None);
        assert_eq!(last_extension(".bashrc"), None);
        assert_eq!(last_extension("a.verylongextension"), None);
        assert_eq!(last_extension("報告.ｐｄｆ"), None);
        assert_eq!(last_extension("a.7z").as_deref(), Some("7z"));

        assert_eq!(
            double_extension("invoice.pdf.exe"),
            Some(("pdf".into(), "exe".into()))
        );
        assert_eq!(double_extension("backup.tar.gz"), None);
        assert_eq!(double_extension("photo.jpeg.jpg"), None);
        assert_eq!(double_extension("report.2024.pdf"), None);
        assert_eq!(double_extension("Ltd.Invoice.pdf"), None);
        assert_eq!(
            double_extension("photo.JPG   .scr"),
            Some(("jpg".into(), "scr".into()))
        );
        let r = sanitize_report("請求書.pdf.exe", None);
        assert_eq!(r.name, "請求書.pdf.exe");
        assert_eq!(
            r.changes,
            vec!["double extension .pdf.exe: the file type is .exe"]
        );
    }

    #[test]
    fn extension_follows_content() {
        // Matching extensions (aliases, case) are kept as written.
        assert_eq!(sanitize("photo.JPG", Some("jpeg")), "photo.JPG");
        assert_eq!(sanitize("scan.tiff", Some("tif")), "scan.tiff");
        // Mismatch: the content decides.
        let r = sanitize_report("scan.jpg", Some("png"));
        assert_eq!(r.name, "scan.png");
        assert_eq!(
            r.changes,
            vec!["extension .jpg does not match the content (png): changed"]
        );
        assert_eq!(sanitize("invoice.pdf.exe", Some("pdf")), "invoice.pdf");
        assert_eq!(sanitize("page.html", Some("png")), "page.png");
        // No extension: added.
        assert_eq!(sanitize("報告書", Some("pdf")), "報告書.pdf");
        assert_eq!(sanitize("v1.2", Some(".docx")), "v1.2.docx");
        // Nonsense detected extensions are ignored.
        assert_eq!(sanitize("a.txt", Some("../x")), "a.txt");
        assert_eq!(sanitize("a.txt", Some("")), "a.txt");
        // The added extension can make a device name: still prefixed.
        assert_eq!(sanitize("con", Some("pdf")), "_con.pdf");
        // Long names keep the new extension within the limit.
        let out = sanitize(&"x".repeat(250), Some("pdf"));
        assert_eq!(out.len(), MAX_OCTETS);
        assert!(out.ends_with("x.pdf"));
    }

    #[test]
    fn with_extension_cases() {
        assert_eq!(with_extension("report.xlsm", "xlsx"), "report.xlsx");
        assert_eq!(with_extension("scan.bmp", "png"), "scan.png");
        assert_eq!(with_extension("scan.BMP", ".png"), "scan.png");
        assert_eq!(with_extension("photo.png", "png"), "photo.png");
        assert_eq!(with_extension("photo.jpeg", "jpg"), "photo.jpeg");
        assert_eq!(with_extension("scan", "png"), "scan.png");
        assert_eq!(with_extension("", "png"), "attachment.png");
        assert_eq!(with_extension("a.pdf.exe", "pdf"), "a.pdf");
        assert_eq!(with_extension("v1.2", "png"), "v1.2.png");
        assert_eq!(with_extension("図面.tiff", "png"), "図面.png");
        assert_eq!(with_extension("x.bmp", "bad ext"), "x.bmp");
        let long = "長".repeat(70) + ".bmp";
        let out = with_extension(&long, "png");
        assert!(out.len() <= MAX_OCTETS && out.ends_with(".png"));
    }

    #[test]
    fn macos_decomposed_kana_recomposed() {
        // ファイル名が濁点分離: "データ.pdf", "パンフレット.pdf", "ヴァイオリン", "がぎぐげご"
        assert_eq!(s("テ\u{3099}ータ.pdf"), "データ.pdf");
        assert_eq!(s("ハ\u{309A}ンフレット.pdf"), "パンフレット.pdf");
        assert_eq!(s("ウ\u{3099}ァイオリン"), "ヴァイオリン");
        assert_eq!(
            s("か\u{3099}き\u{3099}く\u{3099}け\u{3099}こ\u{3099}"),
            "がぎぐげご"
        );
        assert_eq!(
            s("ほ\u{309A}ち\u{3099}つ\u{3099}と\u{3099}ワ\u{3099}"),
            "ぽぢづどヷ"
        );
        // Marks that do not compose are left as they are.
        assert_eq!(s("な\u{3099}"), "な\u{3099}");
        assert_eq!(s("か\u{309A}"), "か\u{309A}");
        assert_eq!(s("\u{3099}"), "\u{3099}");
    }

    #[test]
    fn extension_table() {
        assert_eq!(extension_for("jpeg"), Some("jpg"));
        assert_eq!(extension_for("ole2"), None);
        assert!(same_extension("JPG", "jpeg"));
        assert!(!same_extension("jpg", "png"));
    }

    #[test]
    fn never_panics_and_always_bounded() {
        let nasty = [
            "\u{202E}\u{202E}..\\..\\".to_string(),
            "🎉\u{FE0F}\u{200D}".repeat(80),
            "é".repeat(150),
            ".".repeat(500),
            "a.".repeat(300),
            "\u{E0100}".repeat(100),
            "\u{3099}".repeat(100),
        ];
        for n in &nasty {
            let out = sanitize(n, Some("pdf"));
            assert!(
                !out.is_empty() && out.len() <= MAX_OCTETS,
                "{n:?} -> {out:?}"
            );
            assert!(out.ends_with(".pdf"), "{out}");
            assert!(!out.chars().any(|c| c.is_control() || is_bidi_control(c)));
        }
    }
}
