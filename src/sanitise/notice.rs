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
//! they are rather than dropped). The attachment disarm phrases (`crate::cdr`: change lines and
//! removal reasons, often nested as in "zip: no member could be delivered (a.doc: removed
//! (...))") are matched as patterns with placeholders; a test scans the cdr sources for the
//! phrases they write and fails on one without a translation, so a new phrase is noticed.

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
        ActionKind::FirstContact => {
            if ja {
                "初めてメールを受け取る送信者からのため、初回送信者向けの厳格な無害化ポリシーを適用しました。"
                    .into()
            } else {
                "The sender is writing to us for the first time: the stricter first-contact policy was applied."
                    .into()
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
    translate_at(reason, 0)
}

/// How deep reasons nested in reasons are translated (deeper ones stay in English).
const MAX_NESTING: usize = 4;

fn translate_at(reason: &str, depth: usize) -> String {
    let pieces: Vec<String> = split_pieces(reason)
        .map(|p| translate_piece_at(p, depth))
        .collect();
    pieces.join("、")
}

/// Splits a reason at `"; "` outside parentheses (a nested reason in parentheses stays whole).
fn split_pieces(reason: &str) -> impl Iterator<Item = &str> {
    let mut depth = 0usize;
    let mut start = 0usize;
    let mut cuts = Vec::new();
    let b = reason.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b';' if depth == 0 && b.get(i + 1) == Some(&b' ') => {
                cuts.push(&reason[start..i]);
                start = i + 2;
            }
            _ => {}
        }
    }
    cuts.push(&reason[start..]);
    cuts.into_iter()
}

#[cfg(test)]
fn translate_piece(p: &str) -> String {
    translate_piece_at(p, 0)
}

fn translate_piece_at(p: &str, depth: usize) -> String {
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
    translate_cdr(p, depth).unwrap_or_else(|| p.to_string())
}

/// Phrases of attachment disarm (`crate::cdr`): English pattern and Japanese template. `{}` in
/// a pattern matches any text (the leftmost occurrence of the literal after it); in the
/// template `{0}`, `{1}`, ... insert the matched text as it is, `{t0}`, `{t1}`, ... translated
/// (a nested reason). Patterns with more literal text are tried first ([`pattern_order`]).
/// `tests::every_cdr_phrase_is_translated` fails when a cdr module writes a phrase missing here.
const CDR_PHRASES: &[(&str, &str)] = &[
    // cdr/mod.rs
    ("larger than the disarm limit ({} > {} octets)", "無害化処理のサイズ上限を超える ({0} > {1} バイト)"),
    ("the converter failed on this file (removed to be safe)", "変換処理がこのファイルで失敗した (安全のため削除)"),
    ("{}: executable content is never delivered", "{0}: 実行形式のファイルは送付しない"),
    ("{}: scripts are never delivered", "{0}: スクリプトは送付しない"),
    ("{}: HTML attachments are never delivered", "{0}: HTML 形式の添付ファイルは送付しない"),
    ("{}: encrypted content cannot be inspected", "{0}: 暗号化された内容は検査できない"),
    ("{}: password-protected, cannot be inspected (encrypted_archive = quarantine)", "{t0}: パスワードで保護されていて内容を検査できないため隔離保管 (encrypted_archive = quarantine)"),
    ("{}: password-protected, cannot be inspected (encrypted_archive = remove)", "{t0}: パスワードで保護されていて内容を検査できないため削除 (encrypted_archive = remove)"),
    // cdr/legacy.rs
    ("{}: {}, macros and embedded objects cannot be removed from it (legacy_office = remove)", "{0}: {t1}、マクロや埋め込みオブジェクトを取り除けないため削除 (legacy_office = remove)"),
    ("{}: {}, its text cannot be extracted ({})", "{0}: {t1}、テキストを取り出せないため削除 ({t2})"),
    ("legacy binary Office document (doc/xls/ppt)", "旧形式の Office 文書 (doc/xls/ppt)"),
    ("RTF document (may embed OLE objects)", "RTF 文書 (OLE オブジェクトを埋め込める形式)"),
    ("OneNote document (may embed files)", "OneNote 文書 (ファイルを埋め込める形式)"),
    ("OpenDocument file (may carry macros)", "OpenDocument ファイル (マクロを含められる形式)"),
    ("legacy office document", "旧形式の Office 文書"),
    ("encrypted Office document", "暗号化された Office 文書"),
    ("zip (member {})", "zip (中のファイル {0})"),
    ("{} (part {})", "{0} (部分 {1})"),
    ("only the text of the .{} document was kept", ".{0} 文書のテキストだけを残した"),
    ("only the text of the {} document was kept", "{0} 文書のテキストだけを残した"),
    ("text cut at the size limit", "テキストをサイズ上限で切り詰めた"),
    ("no Word, Excel or PowerPoint stream", "Word、Excel、PowerPoint のいずれの文書でもない"),
    ("no text reader for this format", "この形式のテキストは読み取れない"),
    ("not a readable compound file: {}", "読み取れない複合ファイル: {0}"),
    ("damaged {} stream: {}", "{0} ストリームが壊れている: {1}"),
    ("password-protected", "パスワードで保護されている"),
    // cdr/office.rs
    ("VBA macro project removed", "VBA マクロを削除"),
    ("VBA project signature removed", "VBA プロジェクトの署名を削除"),
    ("embedded OLE object removed", "埋め込み OLE オブジェクトを削除"),
    ("ActiveX control removed", "ActiveX コントロールを削除"),
    ("ribbon customisation (customUI) removed", "リボンのカスタマイズ (customUI) を削除"),
    ("attached template removed", "添付テンプレートへの参照を削除"),
    ("external workbook link removed", "外部ブックへのリンクを削除"),
    ("Excel 4 macro sheet removed", "Excel 4 マクロシートを削除"),
    ("macro key and toolbar customisation removed", "マクロのキー割り当てとツールバーのカスタマイズを削除"),
    ("external data connection removed", "外部データ接続を削除"),
    ("web add-in removed", "Web アドインを削除"),
    ("mail merge data source and query removed", "差し込み印刷のデータソースとクエリを削除"),
    ("active element removed", "動作する要素を削除"),
    ("program or macro action removed", "プログラムやマクロを実行する動作を削除"),
    ("formula into a removed external workbook removed", "削除した外部ブックを参照する数式を削除"),
    ("name referring to removed content removed", "削除した内容を参照する名前を削除"),
    ("no worksheet is left once macro sheets are removed", "マクロシートを削除するとワークシートが残らない"),
    ("field with a computed name removed", "名前が計算で作られるフィールドを削除"),
    ("hyperlink field to an outside address removed (its text is kept)", "外部アドレスへのハイパーリンクのフィールドを削除 (表示テキストは残した)"),
    ("macro name {} removed", "マクロ名 {0} を削除"),
    ("{} field removed", "{0} フィールドを削除"),
    ("SVG image removed (may carry script)", "SVG 画像を削除 (スクリプトを含められるため)"),
    ("Office add-ins are macro containers", "Office アドインはマクロの入れ物"),
    ("binary workbook (xlsb) cannot be disarmed", "バイナリ形式のブック (xlsb) は無害化できない"),
    ("calculation chain dropped (rebuilt by the application)", "計算チェーンを削除 (アプリケーションが作り直す)"),
    ("converted to a macro-free .{} document", "マクロなしの .{0} 文書に変換"),
    ("embedded {} content removed", "埋め込まれた {0} の内容を削除"),
    ("link to an outside resource removed ({})", "外部リソースへのリンクを削除 ({0})"),
    ("the main document part has no content type", "文書の本体部分にコンテンツタイプがない"),
    ("unknown main document type {}", "不明な文書の種類 {0}"),
    ("no main document part", "文書の本体部分がない"),
    ("no [Content_Types].xml: not an OOXML package", "[Content_Types].xml がなく OOXML パッケージではない"),
    ("{} hyperlinks to outside addresses removed (their text is kept)", "外部アドレスへのハイパーリンク {0} 件を削除 (表示テキストは残した)"),
    ("{} unreferenced part(s) removed", "参照されていない部分 {0} 個を削除"),
    ("{} embedded images re-encoded from pixels (metadata removed)", "埋め込み画像 {0} 個を画素から再エンコード (メタデータを削除)"),
    ("{} embedded images that could not be decoded replaced by a blank image", "読み取れない埋め込み画像 {0} 個を空白の画像に置換"),
    ("part {}: {}", "部分 {0}: {1}"),
    // cdr/archive.rs
    ("not a readable archive ({})", "読み取れないアーカイブ ({0})"),
    ("too many entries ({}, limit {})", "含まれるファイルが多すぎる ({0} 個、上限 {1} 個)"),
    ("too many entries in nested archives together", "入れ子のアーカイブ全体で含まれるファイルが多すぎる"),
    ("member {} is password-protected", "{0} はパスワードで保護されている"),
    ("member name {} is absolute, climbs out of the archive or is malformed", "ファイル名 {0} が絶対パス、アーカイブの外を指す名前、または不正な名前"),
    ("member names {} and {} collide", "ファイル名 {0} と {1} が重複"),
    ("member {} expands beyond the compression ratio limit {}:1 (decompression bomb)", "{0} の圧縮率が上限 ({1}:1) を超える (解凍爆弾)"),
    ("uncompressed contents exceed the archive size limit ({} octets)", "展開後の合計サイズがアーカイブのサイズ上限 ({0} バイト) を超える"),
    ("member {} uses a compression method that cannot be inspected ({})", "{0} は検査できない圧縮方式 ({1}) を使っている"),
    ("{}: archive nested deeper than max_archive_depth ({})", "{0}: アーカイブの入れ子が上限 (max_archive_depth = {1}) より深い"),
    ("{}: nested deeper than max_archive_depth ({})", "{0}: 入れ子が上限 (max_archive_depth = {1}) より深い"),
    ("{}: this archive format cannot be inspected", "{0}: 検査できない形式のアーカイブ"),
    ("{}: removed ({})", "{0}: 削除 ({t1})"),
    ("{}: symbolic link removed", "{0}: シンボリックリンクを削除"),
    ("{}: link removed", "{0}: リンクを削除"),
    ("{}: special file removed", "{0}: 特殊ファイルを削除"),
    ("{}: empty archive", "{0}: 空のアーカイブ"),
    ("{}: no member could be delivered ({})", "{0}: 送付できるファイルが残らなかった ({t1})"),
    ("{}: the archive could not be rebuilt ({})", "{0}: アーカイブを作り直せなかった ({1})"),
    ("{}: could not be rebuilt ({})", "{0}: 作り直せなかった ({1})"),
    ("could not be rebuilt ({})", "作り直せなかった ({0})"),
    ("{}: nothing to deliver", "{0}: 送付できる内容がない"),
    ("gzip unpacked: {} delivered", "gzip を展開し {0} を送付"),
    ("tar archive rebuilt as a zip archive", "tar アーカイブを zip アーカイブとして作り直した"),
    ("{}: the EICAR anti-virus test file is never delivered", "{0}: ウイルス対策ソフトの試験用ファイル (EICAR) は送付しない"),
    ("data after the compressed stream removed", "圧縮データの後ろに付いていたデータを削除"),
    ("{} extracted file(s) could not be kept in a gzip stream", "取り出したファイルのうち {0} 個は gzip に入れられないため削除"),
    ("and {} more", "ほか {0} 件"),
    ("{}: kept", "{0}: そのまま残した"),
    // cdr/tnef.rs
    ("TNEF container (winmail.dat) unpacked", "TNEF 形式 (winmail.dat) を展開"),
    ("rich text body converted to plain text", "リッチテキストの本文をテキスト形式に変換"),
    ("rich text body dropped ({})", "リッチテキストの本文を削除 ({0})"),
    ("unknown compressed RTF type", "不明な圧縮 RTF の形式"),
    ("{}: attachment {}: {}", "{0}: 添付ファイル {1}: {t2}"),
    ("{}: nothing deliverable inside ({})", "{0}: 送付できる内容が含まれていない ({t1})"),
    ("{}: extracted", "{0}: 取り出した"),
    // cdr/image.rs
    ("image type not supported for re-encoding (only PNG, JPEG, GIF, WebP, BMP, TIFF)", "再エンコードに対応していない画像形式 (対応形式: PNG, JPEG, GIF, WebP, BMP, TIFF)"),
    ("{}x{} pixels is more than the limit of {} pixels", "{0}x{1} ピクセルで、上限の {2} ピクセルを超える"),
    ("decoding would need {} octets, more than the {} allowed", "展開に {0} バイト必要で、上限の {1} バイトを超える"),
    ("the decoder refused it as too large", "大きすぎるためデコーダが処理を拒否した"),
    ("image has no pixels (0 width or height)", "画素のない画像 (幅または高さが 0)"),
    ("damaged or truncated image ({})", "壊れているか途中で切れている画像 ({0})"),
    ("image feature not supported ({})", "対応していない画像の機能 ({0})"),
    ("could not re-encode ({})", "再エンコードできなかった ({0})"),
    ("re-encoded from pixels as JPEG (quality {})", "画素から JPEG として再エンコード (品質 {0})"),
    ("re-encoded from pixels as PNG", "画素から PNG として再エンコード"),
    ("converted from {} to PNG (re-encoded from pixels)", "{0} から PNG に変換 (画素から再エンコード)"),
    ("EXIF orientation applied to the pixels ({})", "EXIF の向きの情報を画素に反映 ({t0})"),
    ("rotated 90° clockwise and mirrored", "時計回りに 90° 回転して左右反転"),
    ("rotated 90° anticlockwise and mirrored", "反時計回りに 90° 回転して左右反転"),
    ("rotated 90° clockwise", "時計回りに 90° 回転"),
    ("rotated 90° anticlockwise", "反時計回りに 90° 回転"),
    ("rotated 180°", "180° 回転"),
    ("mirrored", "左右反転"),
    ("flipped vertically", "上下反転"),
    ("{} octets of data after the end of the image removed", "画像の終わりの後ろにある {0} バイトのデータを削除"),
    ("animation of {} frames reduced to its first frame", "{0} コマのアニメーションを最初のコマだけに変更"),
    ("only the first page kept", "最初のページだけを残した"),
    ("the file is incomplete: re-encoded from what could be decoded", "ファイルが不完全なため、読み取れた部分から再エンコード"),
    ("EXIF metadata removed (including the GPS position)", "EXIF メタデータを削除 (GPS の位置情報を含む)"),
    ("EXIF metadata removed", "EXIF メタデータを削除"),
    ("XMP metadata removed", "XMP メタデータを削除"),
    ("IPTC metadata removed", "IPTC メタデータを削除"),
    ("ICC colour profile removed", "ICC カラープロファイルを削除"),
    ("comment removed", "コメントを削除"),
    ("thumbnail removed", "サムネイル画像を削除"),
    ("modification time removed", "更新日時を削除"),
    ("additional embedded images removed", "追加で埋め込まれた画像を削除"),
    ("application extensions removed", "アプリケーション拡張を削除"),
    ("application segments removed", "アプリケーションセグメントを削除"),
    ("plain text extension removed", "テキスト拡張を削除"),
    ("text chunks (tEXt, zTXt, iTXt) removed", "テキストチャンク (tEXt, zTXt, iTXt) を削除"),
    ("unknown or private chunks removed", "不明または独自のチャンクを削除"),
    ("unknown chunks removed", "不明なチャンクを削除"),
    ("unknown extensions removed", "不明な拡張を削除"),
    // cdr/pdf.rs and cdr/raster.rs
    ("encrypted PDF (it needs a password to open, so it cannot be inspected)", "暗号化された PDF (開くのにパスワードが必要で内容を検査できない)"),
    ("PDF too complex to disarm safely: {}", "安全に無害化するには複雑すぎる PDF: {0}"),
    ("unreadable PDF: {}", "読み取れない PDF: {0}"),
    ("active content still present after disarm: {}", "無害化の後も有害な要素が残っている: {t0}"),
    ("encryption removed (it opened without a password)", "暗号化を解除 (パスワードなしで開けたため)"),
    ("text of {} page(s) could not be extracted", "{0} ページのテキストを取り出せなかった"),
    ("converted to plain text ({} page{})", "テキスト形式に変換 ({0} ページ)"),
    ("layout, images and active content dropped", "レイアウト、画像、有害な要素は削除"),
    ("rasterised: {} page{} redrawn as images", "画像化: {0} ページを画像として描き直した"),
    ("text, links, forms and scripts removed", "テキスト、リンク、フォーム、スクリプトを削除"),
    ("{} oversized page(s) rendered at a lower resolution", "大きすぎるページ {0} 枚を低い解像度で描画"),
    ("not rasterised ({})", "画像化できなかった ({t0})"),
    ("rasterised output refused ({})", "画像化した結果を採用しなかった ({t0})"),
    ("disarmed instead", "代わりに無害化処理を行った"),
    ("the PDF parser failed on it", "PDF の解析に失敗した"),
    ("{} in object {} {}", "オブジェクト {1} {2} の {t0}"),
    ("{} in the trailer", "トレーラの {t0}"),
    ("a file attachment or multimedia annotation", "添付ファイルまたはマルチメディアの注釈"),
    ("an embedded file", "埋め込みファイル"),
    ("an object stream", "オブジェクトストリーム"),
    ("rasterising is not available in this process (no worker binary)", "画像化処理を利用できない (作業用プログラムがない)"),
    ("{} pages, more than max_rasterize_pages ({})", "{0} ページあり、上限 (max_rasterize_pages = {1}) を超える"),
    ("the renderer did not finish within {} ms", "描画処理が {0} ミリ秒以内に終わらなかった"),
    ("the renderer could not be started: {}", "描画処理を開始できなかった: {0}"),
    ("the renderer failed: {}", "描画処理が失敗した: {t0}"),
    ("the renderer's output is malformed: {}", "描画処理の出力が不正: {t0}"),
    ("the rasterised PDF would be larger than {} octets", "画像化した PDF が {0} バイトを超える"),
    ("the rasterised PDF could not be written: {}", "画像化した PDF を書き出せなかった: {0}"),
    ("worker ended by signal {} (crash or resource limit)", "作業用プロセスがシグナル {0} で終了 (異常終了または資源の上限)"),
    ("worker exited with status {}", "作業用プロセスが終了コード {0} で終了"),
    ("worker killed (out of CPU time or memory)", "作業用プロセスを強制終了 (CPU 時間またはメモリの上限)"),
    ("page too large", "ページが大きすぎる"),
    ("truncated output", "出力が途中で切れている"),
    ("read error: {}", "読み取りエラー: {0}"),
    // cdr/text.rs
    ("NUL octets: binary content", "NUL 文字を含むバイナリデータ"),
    ("{} control characters: binary content", "制御文字 {0} 個を含むバイナリデータ"),
    ("charset {} is not UTF-8 or a Japanese charset", "文字コード {0} は UTF-8 でも日本語の文字コードでもない"),
    ("{} octets could not be decoded", "{0} バイトを文字として読み取れない"),
    ("markup that a browser could run or that reaches outside the file ({})", "ブラウザが実行できる、またはファイルの外を参照するマークアップ ({0})"),
    ("once cleaned it reads as {}", "制御文字などを除くと {0} として読める内容"),
    ("{} block holding {}", "{1} を含む {0} ブロック"),
    (
        "it carries an encoded object ({}): text that decodes back into a file",
        "符号化されたファイル ({0}) を含むテキスト (復号するとファイルに戻せる)",
    ),
    ("re-encoded from {} to UTF-8", "{0} から UTF-8 に変換"),
    ("{} undecodable characters replaced by U+FFFD", "読み取れない文字 {0} 個を U+FFFD に置換"),
    ("{} bidirectional control characters removed", "双方向制御文字 {0} 個を削除"),
    ("{} control characters removed", "制御文字 {0} 個を削除"),
    ("{} spreadsheet formulas that could run a program or reach the network made text", "プログラムの実行やネットワーク接続ができる表計算の数式 {0} 個を文字列に変更"),
    // cdr/filename.rs
    ("Windows reserved device name prefixed with _", "Windows の予約デバイス名のため先頭に _ を追加"),
    ("bidirectional control characters removed (they disguise the real extension)", "双方向制御文字を削除 (本当の拡張子を偽装するため)"),
    ("characters not allowed in Windows file names replaced by _", "Windows のファイル名に使えない文字を _ に置換"),
    ("control characters removed", "制御文字を削除"),
    ("invisible characters removed", "見えない文字を削除"),
    ("directory path removed", "フォルダのパスを削除"),
    ("empty name replaced", "空のファイル名を置換"),
    ("double extension .{}.{}: the file type is .{}", "二重拡張子 .{0}.{1}: 実際のファイル形式は .{2}"),
    ("extension .{} does not match the content ({}): changed", "拡張子 .{0} が内容 ({1}) と一致しないため変更"),
    ("extension .{} added from the content", "内容から拡張子 .{0} を追加"),
    ("shortened to {} octets", "{0} バイトに短縮"),
    // Details of damaged files, shown inside the phrases above.
    ("bad tar checksum field", "tar のチェックサム欄が不正"),
    ("bad tar size field", "tar のサイズ欄が不正"),
    ("tar header checksum mismatch", "tar ヘッダのチェックサムが一致しない"),
    ("tar member runs past the end", "tar の中のファイルが末尾を越えている"),
    ("member {}: {}", "{0}: {t1}"),
    ("no entry {}", "項目 {0} がない"),
    ("empty piece table", "ピーステーブルが空"),
    ("no piece table in the file information block", "ファイル情報ブロックにピーステーブルがない"),
    ("no piece table", "ピーステーブルがない"),
    ("no BOF record", "BOF レコードがない"),
    ("not a Word document", "Word 文書ではない"),
    ("no content.xml", "content.xml がない"),
    ("UTF-16 XML cannot be disarmed", "UTF-16 の XML は無害化できない"),
    ("declared as XML but is not XML", "XML と宣言されているが XML ではない"),
    ("document type declarations are not allowed", "文書型宣言 (DTD) は使えない"),
    ("elements nested deeper than {}", "要素の入れ子が {0} 段より深い"),
    ("end tag </{}> without a start", "開始タグのない終了タグ </{0}>"),
    ("mismatched end tag </{}> for <{}>", "<{1}> に対応しない終了タグ </{0}>"),
    ("part {} changed type while read ({})", "部分 {0} の種類が読み取り中に変わった ({1})"),
    ("unclosed elements", "閉じていない要素がある"),
    ("unterminated start tag", "終わっていない開始タグ"),
    ("an encryption dictionary", "暗号化辞書"),
    ("could not be written again: {}", "書き出し直せなかった: {0}"),
    ("its objects need more than {} MiB", "オブジェクトに {0} MiB を超えるメモリが必要"),
    ("more than {} objects", "オブジェクトが {0} 個を超える"),
    ("more than {} syntax tokens", "構文要素が {0} 個を超える"),
    ("no document catalog with pages", "ページを持つ文書カタログがない"),
    ("stream {} {} inflates beyond {} MiB (decompression bomb)", "ストリーム {0} {1} が展開すると {2} MiB を超える (解凍爆弾)"),
    ("unmetered load", "計量できない読み込み"),
    ("bad header", "ヘッダが不正"),
    ("input not accepted: {}", "入力を受け付けなかった: {0}"),
    ("more pages than announced", "予告より多いページ"),
    ("no pipes to the worker", "作業用プロセスとの通信路がない"),
    ("page of size zero", "大きさ 0 のページ"),
    ("page of {} pixels, more than {}", "{0} ピクセルのページで、{1} を超える"),
    ("page of {}x{} points", "{0}x{1} ポイントのページ"),
    ("page of {}x{} pixels", "{0}x{1} ピクセルのページ"),
    ("stopped at the deadline", "処理時間の上限で停止"),
    ("unknown frame {}", "不明なフレーム {0}"),
    ("worker ended abnormally", "作業用プロセスが異常終了"),
    ("{} pages received, {} announced", "{1} ページの予告に対し {0} ページを受信"),
    ("attribute runs past the end", "属性が末尾を越えている"),
    ("body text: {}", "本文: {0}"),
    ("more than {} attachments", "添付ファイルが {0} 個を超える"),
    ("not a TNEF stream", "TNEF 形式ではない"),
    ("truncated attribute checksum", "属性のチェックサムが途中で切れている"),
    ("truncated attribute header", "属性のヘッダが途中で切れている"),
    ("truncated compressed RTF header", "圧縮 RTF のヘッダが途中で切れている"),
    // Wrappers around nested reasons (tried after the longer patterns above).
    ("{} = quarantine", "ポリシー ({0} = quarantine) により隔離保管"),
    ("{}: member {}", "{0}: 中のファイル {t1}"),
];

/// Things a PDF can hold that disarm removes (`N <noun> removed`): singular, plural, Japanese.
const PDF_NOUNS: &[(&str, &str, &str)] = &[
    ("JavaScript", "JavaScript scripts", "JavaScript"),
    (
        "document open action",
        "document open actions",
        "文書を開いたときの動作",
    ),
    (
        "automatic action trigger set (AA)",
        "automatic action trigger sets (AA)",
        "自動実行の設定 (AA)",
    ),
    (
        "Launch action",
        "Launch actions",
        "プログラムを起動する動作 (Launch)",
    ),
    (
        "form submit/import action",
        "form submit/import actions",
        "フォームの送信・取り込み動作",
    ),
    (
        "link to another document (GoToR/GoToE)",
        "links to other documents (GoToR/GoToE)",
        "他の文書へのリンク (GoToR/GoToE)",
    ),
    (
        "multimedia element",
        "multimedia elements",
        "マルチメディア要素",
    ),
    ("embedded file", "embedded files", "埋め込みファイル"),
    (
        "file attachment annotation",
        "file attachment annotations",
        "添付ファイルの注釈",
    ),
    ("XFA form", "XFA forms", "XFA フォーム"),
    (
        "link (link policy)",
        "links (link policy)",
        "リンク (リンクのポリシーによる)",
    ),
    ("non-web link", "non-web links", "Web 以外へのリンク"),
    ("other action", "other actions", "その他の動作"),
    (
        "PostScript fragment",
        "PostScript fragments",
        "PostScript の断片",
    ),
];

/// Matches `p` against a pattern of [`CDR_PHRASES`]: the captured texts, or `None`.
fn match_pattern<'a>(pattern: &str, p: &'a str) -> Option<Vec<&'a str>> {
    let mut segs = pattern.split("{}");
    let first = segs.next().unwrap_or("");
    let mut rest = p.strip_prefix(first)?;
    let segs: Vec<&str> = segs.collect();
    if segs.is_empty() {
        return rest.is_empty().then(Vec::new);
    }
    let mut caps = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        if i + 1 == segs.len() {
            // The last literal ends the text: the capture before it takes the rest.
            caps.push(rest.strip_suffix(seg)?);
        } else {
            let at = if seg.is_empty() { 0 } else { rest.find(seg)? };
            caps.push(&rest[..at]);
            rest = &rest[at + seg.len()..];
        }
    }
    // A capture never cuts a parenthesised nested reason in two.
    caps.iter().all(|c| balanced(c)).then_some(caps)
}

fn balanced(s: &str) -> bool {
    let mut depth = 0usize;
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return false,
            ')' => depth -= 1,
            _ => {}
        }
    }
    depth == 0
}

/// [`CDR_PHRASES`] indices, the patterns with more literal text first (the more specific
/// pattern wins: "{}: no member could be delivered ({})" before "{}: removed ({})").
fn pattern_order() -> &'static [usize] {
    static ORDER: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
    ORDER.get_or_init(|| {
        let mut v: Vec<usize> = (0..CDR_PHRASES.len()).collect();
        v.sort_by_key(|&i| std::cmp::Reverse(CDR_PHRASES[i].0.replace("{}", "").len()));
        v
    })
}

/// Fills a Japanese template with captured texts (`{0}` as is, `{t0}` translated).
fn fill(template: &str, caps: &[&str], depth: usize) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(a) = rest.find('{') {
        out.push_str(&rest[..a]);
        let Some(z) = rest[a..].find('}') else {
            break;
        };
        let key = &rest[a + 1..a + z];
        let (translate, num) = match key.strip_prefix('t') {
            Some(n) => (true, n),
            None => (false, key),
        };
        match num.parse::<usize>().ok().and_then(|i| caps.get(i)) {
            Some(c) if translate => out.push_str(&translate_at(c, depth + 1)),
            Some(c) => out.push_str(c),
            None => out.push_str(&rest[a..a + z + 1]),
        }
        rest = &rest[a + z + 1..];
    }
    out.push_str(rest);
    out
}

/// A disarm phrase in Japanese, or `None` when it is not one. `depth` bounds the recursion
/// into nested reasons (captured texts and prefixed phrases).
fn translate_cdr(p: &str, depth: usize) -> Option<String> {
    if depth > MAX_NESTING {
        return None;
    }
    for &i in pattern_order() {
        let (en, ja) = CDR_PHRASES[i];
        if let Some(caps) = match_pattern(en, p) {
            return Some(fill(ja, &caps, depth));
        }
    }
    // "3 JavaScript scripts removed", "1 embedded file removed".
    if let Some((n, noun)) = p.strip_suffix(" removed").and_then(|s| s.split_once(' ')) {
        if n.chars().all(|c| c.is_ascii_digit()) {
            if let Some((_, _, ja)) = PDF_NOUNS.iter().find(|(o, m, _)| *o == noun || *m == noun) {
                return Some(format!("{ja} {n} 件を削除"));
            }
        }
    }
    if let Some((_, _, ja)) = PDF_NOUNS.iter().find(|(o, m, _)| *o == p || *m == p) {
        return Some((*ja).to_string());
    }
    // "zip: <phrase>", "a.docm → a.docx: <phrase>": the prefix names the file or type.
    let mut from = 0;
    for _ in 0..3 {
        let Some(i) = p[from..].find(": ") else { break };
        let (head, rest) = (&p[..from + i], &p[from + i + 2..]);
        let t = translate_at(rest, depth + 1);
        if t != rest {
            return Some(format!("{head}: {t}"));
        }
        from += i + 2;
    }
    None
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

    /// The cdr sources whose phrases reach the notice (changes and reasons).
    const CDR_SOURCES: &[(&str, &str)] = &[
        ("archive.rs", include_str!("../cdr/archive.rs")),
        ("filename.rs", include_str!("../cdr/filename.rs")),
        ("image.rs", include_str!("../cdr/image.rs")),
        ("legacy.rs", include_str!("../cdr/legacy.rs")),
        ("mod.rs", include_str!("../cdr/mod.rs")),
        ("office.rs", include_str!("../cdr/office.rs")),
        ("pdf.rs", include_str!("../cdr/pdf.rs")),
        ("raster.rs", include_str!("../cdr/raster.rs")),
        ("text.rs", include_str!("../cdr/text.rs")),
        ("tnef.rs", include_str!("../cdr/tnef.rs")),
    ];

    /// The string literals of Rust source (before its test module), each with the code
    /// just before it. Comments, char literals and raw strings are skipped by hand (no regex).
    fn literals(src: &str) -> Vec<(String, String)> {
        let src = src.split("\n#[cfg(test)]").next().unwrap_or(src);
        let b = src.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        let mut code_start = 0;
        while i < b.len() {
            match b[i] {
                b'/' if b.get(i + 1) == Some(&b'/') => {
                    while i < b.len() && b[i] != b'\n' {
                        i += 1;
                    }
                }
                b'\'' => {
                    // A char literal ('"', '\'', 'x', '\u{..}') or a lifetime.
                    if b.get(i + 1) == Some(&b'\\') {
                        i += 2;
                        while i < b.len() && b[i] != b'\'' {
                            i += 1;
                        }
                        i += 1;
                    } else if b.get(i + 2) == Some(&b'\'') {
                        i += 3;
                    } else {
                        i += 1;
                    }
                }
                b'r' if b.get(i + 1) == Some(&b'#')
                    || (b.get(i + 1) == Some(&b'"')
                        && i > 0
                        && !b[i - 1].is_ascii_alphanumeric()
                        && b[i - 1] != b'_') =>
                {
                    // Raw string: r"..." or r#"..."#, not a phrase source here.
                    let mut j = i + 1;
                    let mut hashes = 0;
                    while b.get(j) == Some(&b'#') {
                        hashes += 1;
                        j += 1;
                    }
                    if b.get(j) != Some(&b'"') {
                        i += 1;
                        continue;
                    }
                    let close = format!("\"{}", "#".repeat(hashes));
                    i = src[j + 1..]
                        .find(&close)
                        .map(|k| j + 1 + k + close.len())
                        .unwrap_or(b.len());
                }
                b'"' => {
                    let before = &src[code_start..i];
                    let mut lit = String::new();
                    i += 1;
                    while i < b.len() && b[i] != b'"' {
                        if b[i] == b'\\' {
                            match b.get(i + 1) {
                                Some(b'\n') => {
                                    i += 2;
                                    while i < b.len() && b[i].is_ascii_whitespace() {
                                        i += 1;
                                    }
                                    continue;
                                }
                                Some(&c) => {
                                    lit.push(match c {
                                        b'n' => '\n',
                                        b't' => '\t',
                                        c => c as char,
                                    });
                                    i += 2;
                                    continue;
                                }
                                None => break,
                            }
                        }
                        let ch = src[i..].chars().next().unwrap();
                        lit.push(ch);
                        i += ch.len_utf8();
                    }
                    i += 1;
                    let ctx: String = before
                        .chars()
                        .rev()
                        .take(80)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    out.push((lit, ctx));
                    code_start = i;
                }
                _ => i += 1,
            }
        }
        out
    }

    /// Literals that are not notice phrases although they sit where phrases do.
    const NOT_PHRASES: &[&str] = &[];

    /// The phrases the cdr modules put into `changes` and `reason`, with `{...}` placeholders
    /// replaced by a sample value.
    fn cdr_phrases() -> Vec<(String, String)> {
        let mut v = Vec::new();
        for (file, src) in CDR_SOURCES {
            for (lit, ctx) in literals(src) {
                let compact: String = ctx.split_whitespace().collect::<Vec<_>>().join(" ");
                let tail = &compact[compact.len().saturating_sub(40)..];
                let phrase_context = [
                    "changes",
                    "reason",
                    "#[error(",
                    "note(",
                    "Some(",
                    "=> ",
                    "phrase",
                    "=>",
                    "changes.push(if",
                    "Err(",
                    "Package(",
                    "Unreadable(",
                    "TooComplex(",
                    "Invalid(",
                ]
                .iter()
                .any(|k| tail.contains(k));
                let bare: String = {
                    let mut out = String::new();
                    let mut depth = 0;
                    for c in lit.chars() {
                        match c {
                            '{' => depth += 1,
                            '}' => depth -= 1,
                            c if depth == 0 => out.push(c),
                            _ => {}
                        }
                    }
                    out
                };
                let words = bare
                    .split(|c: char| !c.is_ascii_alphabetic())
                    .filter(|w| w.len() >= 2 && w.chars().all(|c| c.is_ascii_lowercase()))
                    .count();
                if !phrase_context
                    || words < 2
                    || !lit.contains(' ')
                    || NOT_PHRASES.contains(&lit.as_str())
                {
                    continue;
                }
                if lit.starts_with('<') || lit.starts_with('/') || lit.contains('\n') {
                    continue;
                }
                // Placeholders: "{name}", "{}", "{0:?}" become a sample value.
                let mut sample = String::new();
                let mut rest = lit.as_str();
                while let Some(a) = rest.find('{') {
                    sample.push_str(&rest[..a]);
                    match rest[a..].find('}') {
                        Some(z) => {
                            sample.push_str("X7");
                            rest = &rest[a + z + 1..];
                        }
                        None => {
                            rest = &rest[a..];
                            break;
                        }
                    }
                }
                sample.push_str(rest);
                v.push((format!("{file}: {lit:?}"), sample));
            }
        }
        v
    }

    /// Every phrase the cdr modules write has a Japanese translation; a new phrase without
    /// one fails here (add it to `translate_piece`, or to `NOT_PHRASES` when it never reaches
    /// a notice).
    #[test]
    fn every_cdr_phrase_is_translated() {
        let phrases = cdr_phrases();
        assert!(
            phrases.len() > 50,
            "the scan found only {} phrases",
            phrases.len()
        );
        let mut missing = Vec::new();
        for (whence, sample) in &phrases {
            for piece in split_pieces(sample) {
                let ja = translate_piece(piece);
                let untranslated = ja == piece || ja.is_ascii();
                if untranslated && piece.chars().any(|c| c.is_ascii_lowercase()) {
                    missing.push(format!("{whence} -> {piece:?}"));
                }
            }
        }
        missing.sort();
        missing.dedup();
        assert!(
            missing.is_empty(),
            "{} phrases without a translation:\n{}",
            missing.len(),
            missing.join("\n")
        );
    }

    #[test]
    fn cdr_phrases_in_japanese() {
        let t = |r: &str| translate_reason(r);
        assert_eq!(
            t("ole2: legacy binary Office document (doc/xls/ppt), macros and embedded objects cannot be removed from it (legacy_office = remove)"),
            "ole2: 旧形式の Office 文書 (doc/xls/ppt)、マクロや埋め込みオブジェクトを取り除けないため削除 (legacy_office = remove)"
        );
        assert_eq!(
            t("delivered as 報告書.txt; only the text of the .doc document was kept; VBA macro project removed"),
            "報告書.txt として送付、.doc 文書のテキストだけを残した、VBA マクロを削除"
        );
        // Nested reasons inside an archive's summary, split only outside parentheses.
        assert_eq!(
            t("zip: no member could be delivered (a.exe: removed (exe: executable content is never delivered); b.doc: removed (ole2: legacy_office = remove))"),
            "zip: 送付できるファイルが残らなかった (a.exe: 削除 (exe: 実行形式のファイルは送付しない)、b.doc: 削除 (ポリシー (ole2: legacy_office = remove) により削除))"
        );
        assert_eq!(t("3 JavaScript scripts removed"), "JavaScript 3 件を削除");
        assert_eq!(t("1 embedded file removed"), "埋め込みファイル 1 件を削除");
        assert_eq!(
            t("4000x3000 pixels is more than the limit of 1000 pixels"),
            "4000x3000 ピクセルで、上限の 1000 ピクセルを超える"
        );
        assert_eq!(
            t("a.docm → a.docx: converted to a macro-free .docx document"),
            "a.docm → a.docx: マクロなしの .docx 文書に変換"
        );
        assert_eq!(
            t("ole2: legacy_office = quarantine"),
            "ポリシー (ole2: legacy_office = quarantine) により隔離保管"
        );
        assert_eq!(
            t("encrypted Office document: password-protected, cannot be inspected (encrypted_archive = quarantine)"),
            "暗号化された Office 文書: パスワードで保護されていて内容を検査できないため隔離保管 (encrypted_archive = quarantine)"
        );
        assert!(t(
            "zip-encrypted: password-protected, cannot be inspected (encrypted_archive = remove)"
        )
        .starts_with("zip-encrypted: パスワード"));
        // Unknown phrases stay as they are, never dropped.
        assert_eq!(t("a brand new phrase"), "a brand new phrase");
        assert_eq!(t("x: y: z"), "x: y: z");
        // Hostile nesting stays fast (the recursion is bounded).
        let deep = "a: ".repeat(100) + &"(b; ".repeat(50);
        let started = std::time::Instant::now();
        let _ = t(&deep);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn cdr_translations_are_strict_iso_2022_jp() {
        for (en, ja) in CDR_PHRASES {
            strict_iso2022jp(ja).unwrap_or_else(|e| panic!("{en}: {e}"));
        }
        for (_, _, ja) in PDF_NOUNS {
            strict_iso2022jp(ja).unwrap();
        }
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
