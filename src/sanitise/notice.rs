//! The notice at the top of every clean message: what mugaika did to it, one line per action.
//!
//! Staff read this notice in their mail client, so it is short, in Japanese by default
//! (`sanitize.notice_language = "ja"`) or English, and it has to survive the output charset:
//! every fixed word here is plain ASCII or JIS X 0208 (no NEC/IBM extension characters, no
//! half-width katakana, no `~` or `\`, which differ between ASCII and JIS-Roman), so the notice
//! encodes in strict ISO-2022-JP. File names and subjects come from the sender: they are shown
//! with control and bidi characters removed and their length capped ([`safe_name`]); if they
//! hold characters ISO-2022-JP cannot carry, rebuild falls back to UTF-8 and says so.
//!
//! The per-action reason is an English phrase written by this module's siblings; for the
//! Japanese notice the phrases they produce are translated here (unknown phrases are shown as
//! they are rather than dropped).

use crate::config::Language;

use super::{Action, ActionKind};

/// At most this many action lines; the rest are summarised in one line.
pub const MAX_LINES: usize = 200;

/// Longest name shown, in characters.
pub const MAX_NAME_CHARS: usize = 80;

/// Renders the notice for `actions`. Lines end in `\n`; the text ends with an empty line.
pub fn render(actions: &[Action], lang: Language, quarantine_id: Option<&str>) -> String {
    let mut out = String::new();
    let ja = lang == Language::Ja;
    if ja {
        out.push_str("【mugaika 無害化処理のお知らせ】\n");
    } else {
        out.push_str("[mugaika sanitisation notice]\n");
    }
    if actions.is_empty() {
        out.push_str(if ja {
            "このメールは外部から受信したため無害化処理を行いました。変更はありません。\n"
        } else {
            "This message came from outside and was checked by the sanitiser; nothing was changed.\n"
        });
    } else {
        out.push_str(if ja {
            "このメールは外部から受信したため、次の無害化処理を行いました。\n"
        } else {
            "This message came from outside and was sanitised as follows:\n"
        });
        for a in actions.iter().take(MAX_LINES) {
            out.push_str(if ja { "・" } else { "- " });
            out.push_str(&line(a, ja));
            out.push('\n');
        }
        if actions.len() > MAX_LINES {
            let rest = actions.len() - MAX_LINES;
            if ja {
                out.push_str(&format!("・ほか {rest} 件の処理を行いました。\n"));
            } else {
                out.push_str(&format!("- {rest} more actions.\n"));
            }
        }
    }
    if let Some(id) = quarantine_id {
        let id = safe_name(id);
        if ja {
            out.push_str(&format!(
                "元のメールは隔離保管されています (隔離 ID: {id})。必要な場合は管理者にお問い合わせください。\n"
            ));
        } else {
            out.push_str(&format!(
                "The original message is held in quarantine (id: {id}); ask your administrator if you need it.\n"
            ));
        }
    }
    out.push('\n');
    out
}

/// One line (without the bullet) for an action.
fn line(a: &Action, ja: bool) -> String {
    let name = a.name.as_deref().map(safe_name);
    let typ = type_label(a);
    let size = a.bytes_before;
    let reason = safe_name_len(&a.reason, 300);
    let reason_ja = translate_reason(&reason);
    match a.kind {
        ActionKind::HtmlConverted => {
            if ja {
                "HTML 形式の本文をテキスト形式に変換しました (スクリプト、装飾、画像は除去)。"
                    .into()
            } else {
                "HTML body converted to plain text (scripts, styling and images removed).".into()
            }
        }
        ActionKind::LinksRewritten => {
            let n = leading_number(&reason).unwrap_or(0);
            let policy = reason
                .split("links = ")
                .nth(1)
                .map(|p| p.trim_end_matches(')').to_string())
                .unwrap_or_default();
            if ja {
                let how = match policy.as_str() {
                    "keep" => "URL を <URL> の形で表示",
                    "show" => "URL を [URL] の形で表示",
                    "defang" => "URL を無効化した形 (hxxp, [.]) で表示",
                    "remove" => "URL を削除",
                    _ => "書き換え",
                };
                format!("本文中のリンク {n} 件について、{how}しました。")
            } else {
                format!("{n} link(s) in the text rewritten ({reason}).")
            }
        }
        ActionKind::AlternativeReduced => {
            if ja {
                if reason.contains("kept text/plain") {
                    "テキスト形式と HTML 形式の本文のうち、テキスト形式を残しました。".into()
                } else if reason.contains("kept text/html") {
                    "テキスト形式の本文が空のため、HTML 形式の本文を変換して残しました。".into()
                } else {
                    "複数の形式で書かれた本文のうち、1 つを残しました。".into()
                }
            } else {
                format!("Alternative body versions reduced to one ({reason}).")
            }
        }
        ActionKind::SignatureRemoved => {
            if ja {
                "電子署名を削除しました (署名は検証していません)。".into()
            } else {
                "Digital signature removed (it was not verified).".into()
            }
        }
        ActionKind::EncryptedRemoved => {
            let what = name.map(|n| quoted(&n, ja)).unwrap_or_default();
            if ja {
                format!("暗号化された部分{what}を削除しました (内容を検査できないため)。")
            } else {
                format!("Encrypted part{what} removed (its content cannot be inspected).")
            }
        }
        ActionKind::AttachmentRemoved
        | ActionKind::AttachmentKept
        | ActionKind::AttachmentDisarmed => {
            let what = name.map(|n| quoted(&n, ja)).unwrap_or_default();
            if ja {
                let verb = match a.kind {
                    ActionKind::AttachmentRemoved => "削除しました",
                    ActionKind::AttachmentKept => "そのまま残しました",
                    _ => "無害化しました",
                };
                format!("添付ファイル{what} ({typ}, {size} バイト) を{verb}。理由: {reason_ja}")
            } else {
                let verb = match a.kind {
                    ActionKind::AttachmentRemoved => "removed",
                    ActionKind::AttachmentKept => "kept as it is",
                    _ => "disarmed",
                };
                format!("Attachment{what} ({typ}, {size} bytes) {verb}: {reason}.")
            }
        }
        ActionKind::EncodedBlockRemoved => {
            let what = name.map(|n| quoted(&n, ja)).unwrap_or_default();
            if ja {
                format!(
                    "本文中に埋め込まれた符号化データ{what} ({typ}, {size} バイト) を削除しました。"
                )
            } else {
                format!("Encoded data{what} inside the text ({typ}, {size} bytes) removed.")
            }
        }
        ActionKind::ControlCharactersRemoved => {
            let n = leading_number(&reason).unwrap_or(0);
            if ja {
                format!("本文から制御文字などの不可視文字 {n} 個を削除しました。")
            } else {
                format!("{n} control or invisible character(s) removed from the text.")
            }
        }
        ActionKind::CharsetDetected => {
            let cs = a
                .detected_type
                .as_deref()
                .map(safe_name)
                .unwrap_or_else(|| "?".into());
            if ja {
                format!(
                    "本文の文字コードの指定がないか誤っていたため、{cs} と判定して読み取りました。"
                )
            } else {
                format!("The text's charset was missing or wrong; it was read as {cs}.")
            }
        }
        ActionKind::DecodeErrors => {
            let cs = a
                .detected_type
                .as_deref()
                .map(safe_name)
                .unwrap_or_else(|| "?".into());
            let n = leading_number(&reason);
            if ja {
                let count = n.map(|n| format!(" ({n} 文字)")).unwrap_or_default();
                format!(
                    "本文に {cs} として読み取れない部分があり{count}、代替文字 (U+FFFD) に置き換えました。"
                )
            } else {
                let count = n.map(|n| format!("{n} ")).unwrap_or_default();
                format!(
                    "{count}character(s) of the text could not be decoded as {cs}; they are shown as U+FFFD."
                )
            }
        }
        ActionKind::ForwardedMessage => {
            let what = name.map(|n| quoted(&n, ja)).unwrap_or_default();
            if ja {
                format!("転送されたメッセージ{what}を無害化し、その本文を残しました。")
            } else {
                format!("Forwarded message{what} sanitised; its text is kept below.")
            }
        }
        ActionKind::StructureRepaired => {
            if let Some((what, fields)) = reason
                .split_once(" in header fields neutralised (")
                .map(|(w, f)| (w, f.trim_end_matches(')')))
            {
                // Encoded words that decode to line breaks: a header injection attempt.
                return if ja {
                    let what = match what {
                        "line breaks" => "改行",
                        "control characters" => "制御文字",
                        _ => "改行と制御文字",
                    };
                    format!(
                        "ヘッダ ({fields}) に埋め込まれた{what}を空白に置き換えました (ヘッダ注入の試みの可能性があります)。"
                    )
                } else {
                    format!(
                        "{} hidden in header fields ({fields}) replaced by spaces (a possible header injection attempt).",
                        capitalise(what)
                    )
                };
            }
            if ja {
                format!("MIME 構造の異常を検出し、安全側で処理しました ({reason})。")
            } else {
                format!("Damaged MIME structure handled conservatively ({reason}).")
            }
        }
        ActionKind::CharsetFallback => {
            if ja {
                "本文に ISO-2022-JP で表せない文字があるため、UTF-8 で送信しました。".into()
            } else {
                "The text holds characters ISO-2022-JP cannot carry, so it is sent in UTF-8.".into()
            }
        }
        ActionKind::PartRemoved => {
            let what = name.map(|n| quoted(&n, ja)).unwrap_or_default();
            if ja {
                format!("メールの一部{what} ({typ}) を削除しました。理由: {reason_ja}")
            } else {
                format!("Part{what} ({typ}) removed: {reason}.")
            }
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn quoted(name: &str, ja: bool) -> String {
    if ja {
        format!("「{name}」")
    } else {
        format!(" \"{name}\"")
    }
}

/// `PDF` / `application/pdf`: the detected type when known, else the declared one.
fn type_label(a: &Action) -> String {
    let t = a
        .detected_type
        .as_deref()
        .filter(|t| !t.is_empty())
        .unwrap_or(&a.declared_type);
    if t.is_empty() {
        "?".into()
    } else {
        safe_name_len(t, 60)
    }
}

fn leading_number(s: &str) -> Option<u64> {
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Translates the reason phrases written by `policy`, `text` and the sanitiser into Japanese,
/// piece by piece (pieces are separated by `"; "`). Unknown pieces stay in English.
pub fn translate_reason(reason: &str) -> String {
    let pieces: Vec<String> = reason.split("; ").map(translate_piece).collect();
    pieces.join("、")
}

fn translate_piece(p: &str) -> String {
    if let Some(key) = p.strip_suffix(" = remove") {
        return format!("ポリシー ({key} = remove) により削除");
    }
    if let Some((key, rest)) = p.split_once(": ") {
        if let Some(action) = rest.strip_suffix(" is not available yet, removed") {
            return format!("{key} の {action} 処理は未対応のため削除");
        }
    }
    if let Some(name) = p.strip_prefix("delivered as ") {
        return format!("{name} として送付");
    }
    if let Some(name) = p.strip_prefix("extracted from ") {
        return format!("{name} から取り出した");
    }
    if let Some(rest) = p.strip_prefix("larger than max_attachment_size ") {
        return format!("添付ファイルのサイズ上限を超える {rest}");
    }
    if p.starts_with("the attachments kept from this message would exceed") {
        return "このメールから残す添付ファイルの合計サイズの上限を超える".into();
    }
    if let Some(rest) = p.strip_prefix("declared ") {
        if let Some((declared, found)) = rest.split_once(" but content is ") {
            return format!("宣言された形式 ({declared}) と実際の内容 ({found}) が異なる");
        }
    }
    let fixed: &[(&str, &str)] = &[
        (
            "executable or script: always removed",
            "実行形式またはスクリプトのため常に削除",
        ),
        ("inline image", "本文中の画像"),
        ("unknown transfer encoding", "不明な転送エンコーディング"),
        (
            "text is binary",
            "テキストとして宣言されているがバイナリデータ",
        ),
        (
            "S/MIME signed-data cannot be inspected",
            "S/MIME 署名データは内容を検査できない",
        ),
        ("alternative version not used", "使われなかった代替形式"),
        ("part limit reached", "部分の数の上限を超えた"),
        ("nesting too deep", "入れ子が深すぎる"),
        ("empty", "空"),
        ("no active content found", "有害な要素は見つからなかった"),
        (
            super::sink::CONTENT_OUTSIDE,
            "MIME の区切りの外 (前置き、後置き、または区切りが一度も現れないマルチパート) にある内容は安全に読み取れないため削除",
        ),
        (
            "the original is held in the quarantine (ask the administrator)",
            "元のファイルは隔離保管されている (必要な場合は管理者に問い合わせ)",
        ),
        ("sanitising deadline reached", "処理時間の上限に達した"),
        (
            "binary content inside a text part, not kept whole for disarm, removed",
            "テキスト部分の中のバイナリデータのため削除",
        ),
    ];
    for (en, ja) in fixed {
        if p == *en {
            return (*ja).to_string();
        }
    }
    p.to_string()
}

/// A sender-controlled name made safe to show: control, format (bidi, zero-width) and
/// line-separator characters removed, whitespace runs collapsed, at most
/// [`MAX_NAME_CHARS`] characters.
pub fn safe_name(s: &str) -> String {
    safe_name_len(s, MAX_NAME_CHARS)
}

/// [`safe_name`] with a different length cap.
pub fn safe_name_len(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut n = 0usize;
    let mut space = false;
    for c in s.chars() {
        if is_invisible(c) {
            continue;
        }
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            if n + 1 >= max {
                out.push_str("...");
                return out;
            }
            out.push(' ');
            n += 1;
        }
        space = false;
        if n >= max {
            out.push_str("...");
            return out;
        }
        out.push(c);
        n += 1;
    }
    out
}

/// Characters never shown in a name: C0/C1 controls, bidi embeddings, overrides and isolates,
/// zero-width and other format characters, line/paragraph separators.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{061C}'
            | '\u{00AD}'
            | '\u{180E}')
}

/// Test helper shared by the modules that write fixed text into the clean message.
#[cfg(test)]
pub(crate) mod iso2022jp {
    /// True when `s` encodes in ISO-2022-JP using only ASCII (without `~` and `\`) and
    /// JIS X 0208 proper (rows 1-8 and 16-84: no NEC row 13, no IBM rows 89-92, no
    /// half-width katakana, no JIS-Roman).
    pub(crate) fn strict_iso2022jp(s: &str) -> Result<(), String> {
        if s.chars().any(|c| ('\u{FF61}'..='\u{FF9F}').contains(&c)) {
            return Err("half-width katakana".into());
        }
        let (bytes, _, unmappable) = encoding_rs::ISO_2022_JP.encode(s);
        if unmappable {
            return Err(format!("unmappable character in {s:?}"));
        }
        let b = &bytes[..];
        let mut i = 0;
        let mut two_byte = false;
        while i < b.len() {
            if b[i] == 0x1B {
                let seq = b.get(i..i + 3).ok_or("truncated escape")?;
                match seq {
                    b"\x1b(B" => two_byte = false,
                    b"\x1b$B" => two_byte = true,
                    other => return Err(format!("escape {other:?} in {s:?}")),
                }
                i += 3;
                continue;
            }
            if two_byte {
                let row = b[i].wrapping_sub(0x20);
                if !((1..=8).contains(&row) || (16..=84).contains(&row)) {
                    return Err(format!("JIS row {row} in {s:?}"));
                }
                i += 2;
            } else {
                if b[i] == b'~' || b[i] == b'\\' || b[i] >= 0x80 {
                    return Err(format!("byte {:#x} in {s:?}", b[i]));
                }
                i += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::iso2022jp::strict_iso2022jp;
    use super::*;

    fn act(kind: ActionKind, name: Option<&str>, reason: &str) -> Action {
        Action {
            part: 2,
            kind,
            name: name.map(String::from),
            declared_type: "application/octet-stream".into(),
            detected_type: Some("zip".into()),
            reason: reason.into(),
            bytes_before: 1234,
            bytes_after: 0,
        }
    }

    fn every_kind() -> Vec<Action> {
        use ActionKind::*;
        let mut v = vec![
            act(HtmlConverted, None, "text/html converted"),
            act(
                LinksRewritten,
                None,
                "12 link(s) rewritten (links = defang)",
            ),
            act(
                AlternativeReduced,
                None,
                "kept text/plain, dropped text/html",
            ),
            act(
                AlternativeReduced,
                None,
                "kept text/html, text/plain was empty",
            ),
            act(SignatureRemoved, Some("smime.p7s"), "signature removed"),
            act(EncryptedRemoved, Some("smime.p7m"), "encrypted"),
            act(
                AttachmentRemoved,
                Some("見積書.pdf"),
                "pdf: disarm is not available yet, removed",
            ),
            act(
                AttachmentRemoved,
                Some("a.zip"),
                "other = remove; declared text/plain but content is zip",
            ),
            act(
                AttachmentRemoved,
                Some("x.exe"),
                "executable or script: always removed",
            ),
            act(AttachmentKept, Some("a.png"), "image = keep"),
            act(AttachmentDisarmed, Some("a.docx"), "macros removed"),
            act(EncodedBlockRemoved, Some("eicar.zip"), "uuencode block"),
            act(
                ControlCharactersRemoved,
                None,
                "7 control character(s) removed",
            ),
            act(ForwardedMessage, Some("Re: 会議の件"), "forwarded message"),
            act(
                StructureRepaired,
                None,
                "missing-final-boundary, bad-base64",
            ),
            act(CharsetFallback, None, "fallback"),
            act(PartRemoved, Some("x.dat"), "unknown transfer encoding"),
        ];
        let mut cs = act(CharsetDetected, None, "detected");
        cs.detected_type = Some("Shift_JIS".into());
        v.push(cs);
        let mut de = act(
            DecodeErrors,
            None,
            "3 character(s) could not be decoded as ISO-2022-JP",
        );
        de.detected_type = Some("ISO-2022-JP".into());
        v.push(de);
        v.push(act(
            StructureRepaired,
            None,
            "line breaks in header fields neutralised (From, Subject)",
        ));
        v
    }

    /// The phrases of attachment disarm and of content outside the parts.
    fn disarm_kinds() -> Vec<Action> {
        use ActionKind::*;
        let mut v = Vec::new();
        for (kind, reason) in [
            (AttachmentKept, "no active content found".to_string()),
            (
                AttachmentDisarmed,
                "delivered as budget.xlsx; VBA macro project removed; extracted from winmail.dat"
                    .to_string(),
            ),
            (
                AttachmentRemoved,
                "zip-encrypted: password-protected; the original is held in the quarantine (ask the administrator)".to_string(),
            ),
            (
                AttachmentRemoved,
                "larger than max_attachment_size (30 > 20 octets)".to_string(),
            ),
            (
                AttachmentRemoved,
                "the attachments kept from this message would exceed 40 octets (twice max_attachment_size)".to_string(),
            ),
            (AttachmentRemoved, "sanitising deadline reached".to_string()),
            (
                AttachmentRemoved,
                "binary content inside a text part, not kept whole for disarm, removed".to_string(),
            ),
            (PartRemoved, super::super::sink::CONTENT_OUTSIDE.to_string()),
        ] {
            v.push(act(kind, Some("budget.xlsm"), &reason));
        }
        v
    }

    #[test]
    fn disarm_reasons_are_translated() {
        let t = |r: &str| translate_reason(r);
        assert_eq!(t("no active content found"), "有害な要素は見つからなかった");
        assert_eq!(
            t("delivered as a.xlsx; x removed"),
            "a.xlsx として送付、x removed"
        );
        assert!(t(super::super::sink::CONTENT_OUTSIDE).starts_with("MIME の区切りの外"));
        assert!(
            t("x; the original is held in the quarantine (ask the administrator)")
                .ends_with("元のファイルは隔離保管されている (必要な場合は管理者に問い合わせ)")
        );
    }

    #[test]
    fn every_notice_line_is_strict_iso_2022_jp() {
        for lang in [Language::Ja, Language::En] {
            let mut all = every_kind();
            all.extend(disarm_kinds());
            let text = render(&all, lang, Some("20240501-abcdef"));
            for l in text.lines() {
                strict_iso2022jp(l).unwrap();
            }
            let empty = render(&[], lang, None);
            for l in empty.lines() {
                strict_iso2022jp(l).unwrap();
            }
        }
        // The checker itself catches what it should.
        assert!(strict_iso2022jp("①").is_err());
        assert!(strict_iso2022jp("㈱").is_err());
        assert!(strict_iso2022jp("髙").is_err());
        assert!(strict_iso2022jp("ｱ").is_err());
        assert!(strict_iso2022jp("a~b").is_err());
        assert!(strict_iso2022jp("😀").is_err());
        assert!(strict_iso2022jp("漢字とかな").is_ok());
    }

    #[test]
    fn one_line_per_action_with_names_and_reasons() {
        let acts = every_kind();
        let ja = render(&acts, Language::Ja, Some("Q-1"));
        assert!(ja.starts_with("【mugaika 無害化処理のお知らせ】\n"));
        let bullets = ja.lines().filter(|l| l.starts_with('・')).count();
        assert_eq!(bullets, acts.len());
        assert!(ja.contains("添付ファイル「見積書.pdf」 (zip, 1234 バイト) を削除しました。"));
        assert!(ja.contains("pdf の disarm 処理は未対応のため削除"));
        assert!(ja.contains("宣言された形式 (text/plain) と実際の内容 (zip) が異なる"));
        assert!(ja.contains("リンク 12 件"));
        assert!(ja.contains("制御文字などの不可視文字 7 個"));
        assert!(ja.contains("Shift_JIS と判定"));
        assert!(ja.contains("隔離 ID: Q-1"));
        assert!(ja.contains("ISO-2022-JP として読み取れない部分があり (3 文字)"));
        assert!(ja.contains(
            "ヘッダ (From, Subject) に埋め込まれた改行を空白に置き換えました (ヘッダ注入の試みの可能性があります)。"
        ));
        assert!(ja.ends_with("\n\n"));

        let en = render(&acts, Language::En, None);
        assert!(en.contains("Attachment \"a.zip\" (zip, 1234 bytes) removed: other = remove; declared text/plain but content is zip."));
        assert!(!en.contains("quarantine"));
        assert!(en.contains("- 3 character(s) of the text could not be decoded as ISO-2022-JP; they are shown as U+FFFD.\n"));
        assert!(en.contains("- Line breaks hidden in header fields (From, Subject) replaced by spaces (a possible header injection attempt).\n"));
        assert_eq!(
            en.lines().filter(|l| l.starts_with("- ")).count(),
            acts.len()
        );
    }

    #[test]
    fn names_are_made_safe() {
        let evil = "invoice\u{202E}fdp.exe\r\nBcc: x@evil\u{0}\u{2066}";
        let s = safe_name(evil);
        assert_eq!(s, "invoicefdp.exeBcc: x@evil");
        let long = "あ".repeat(500);
        let s = safe_name(&long);
        assert_eq!(s.chars().count(), MAX_NAME_CHARS + 3);
        assert!(s.ends_with("..."));
        let a = act(ActionKind::AttachmentRemoved, Some(evil), "other = remove");
        let text = render(&[a], Language::En, None);
        assert!(!text.contains('\u{202E}') && !text.contains('\r'));
        assert_eq!(text.lines().count(), 4);
    }

    #[test]
    fn long_action_lists_are_capped() {
        let acts: Vec<Action> = (0..MAX_LINES + 5)
            .map(|_| act(ActionKind::AttachmentRemoved, Some("a.png"), "inline image"))
            .collect();
        let ja = render(&acts, Language::Ja, None);
        assert!(ja.contains("ほか 5 件"));
        assert_eq!(
            ja.lines().filter(|l| l.starts_with('・')).count(),
            MAX_LINES + 1
        );
    }
}
