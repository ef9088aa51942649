//! Images: decoded to pixels under limits and re-encoded, so that nothing but pixels survives.
//!
//! An image file is a container. Besides its pixels it carries metadata (EXIF with the GPS
//! position of the phone that took it, XMP, IPTC, ICC profiles, PNG text chunks, JPEG comments,
//! thumbnails), data after its end marker (a zip appended after a PNG's `IEND` is still a valid
//! zip) and bytes that mean something else to another program (a GIF whose header is also the
//! start of a JavaScript program). Filtering these out by name would be a blacklist that misses
//! the next trick; re-encoding from the decoded pixels is a whitelist: the output holds one frame
//! of pixels written by our own encoder and nothing else. JPEG stays JPEG at `jpeg_quality` (a
//! photo should stay a photo of a sensible size); every other format becomes PNG, which is
//! lossless for every pixel format decoded here. Animated GIF, WebP and APNG keep their first
//! frame, multi-page TIFF its first page.
//!
//! EXIF orientation (JPEG, TIFF, WebP) is applied to the pixels before the metadata is dropped,
//! or a phone photo would arrive on its side. PNG's `eXIf` orientation is not applied: PNG rows
//! are stored in display order and most viewers ignore that tag, so applying it would rotate
//! what the sender saw.
//!
//! Bounds: the decoder reads only the header first; an image of more than `max_pixels` pixels,
//! or whose decoded buffer would need more memory than `max_pixels` RGBA pixels (4 octets each),
//! is refused before any pixel is decoded, and the decoders get the same bounds through
//! `image::Limits` (strict width and height, allocation budget). A cheap structural walk of the
//! container (PNG chunks, JPEG segments, GIF blocks, RIFF chunks, TIFF directory) finds what is
//! being removed so that the notice can say so; the walk never decides what is kept.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::metadata::Orientation;
use image::{
    DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder, ImageError, ImageFormat,
    ImageReader,
};
use memchr::memchr;

use super::{Disarmed, Limits, Policy, Verdict};

/// Re-encodes an image (`name` is the detected type: png, jpeg, gif, webp, bmp, tiff, ...) or
/// removes it with the reason.
pub fn disarm(data: &[u8], name: &str, policy: &Policy) -> Verdict {
    match reencode(data, &policy.limits) {
        Ok(d) => Verdict::Keep(d),
        Err(e) => Verdict::Remove {
            reason: format!("{name}: {e}"),
        },
    }
}

/// The image formats decoded here (the `image` features compiled in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Png,
    Jpeg,
    Gif,
    WebP,
    Bmp,
    Tiff,
}

impl Kind {
    /// The format by its magic bytes (never by name or declared type).
    pub fn detect(data: &[u8]) -> Option<Kind> {
        let at = |off: usize, sig: &[u8]| data.get(off..off + sig.len()) == Some(sig);
        if at(0, b"\x89PNG\r\n\x1A\n") {
            Some(Kind::Png)
        } else if at(0, b"\xFF\xD8\xFF") {
            Some(Kind::Jpeg)
        } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
            Some(Kind::Gif)
        } else if at(0, b"RIFF") && at(8, b"WEBP") {
            Some(Kind::WebP)
        } else if at(0, b"II*\0") || at(0, b"MM\0*") || at(0, b"II+\0") || at(0, b"MM\0+") {
            Some(Kind::Tiff)
        } else if at(0, b"BM") {
            Some(Kind::Bmp)
        } else {
            None
        }
    }

    /// Upper-case name for messages.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Png => "PNG",
            Kind::Jpeg => "JPEG",
            Kind::Gif => "GIF",
            Kind::WebP => "WebP",
            Kind::Bmp => "BMP",
            Kind::Tiff => "TIFF",
        }
    }

    fn format(self) -> ImageFormat {
        match self {
            Kind::Png => ImageFormat::Png,
            Kind::Jpeg => ImageFormat::Jpeg,
            Kind::Gif => ImageFormat::Gif,
            Kind::WebP => ImageFormat::WebP,
            Kind::Bmp => ImageFormat::Bmp,
            Kind::Tiff => ImageFormat::Tiff,
        }
    }

    /// Whether the format's EXIF/TIFF orientation is honoured by viewers (see the module doc).
    fn applies_orientation(self) -> bool {
        matches!(self, Kind::Jpeg | Kind::Tiff | Kind::WebP)
    }
}

/// Why an image was not kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("image type not supported for re-encoding (only PNG, JPEG, GIF, WebP, BMP, TIFF)")]
    Unsupported,
    #[error("{width}x{height} pixels is more than the limit of {max} pixels")]
    TooManyPixels { width: u32, height: u32, max: u64 },
    #[error("decoding would need {need} octets, more than the {max} allowed")]
    TooMuchMemory { need: u64, max: u64 },
    #[error("the decoder refused it as too large")]
    DecoderLimit,
    #[error("image has no pixels (0 width or height)")]
    Empty,
    #[error("damaged or truncated image ({0})")]
    Damaged(String),
    #[error("image feature not supported ({0})")]
    Feature(String),
    #[error("sanitising deadline reached")]
    Deadline,
    #[error("could not re-encode ({0})")]
    Encode(String),
}

/// Octets of decoded pixels allowed: `max_pixels` pixels of 8-bit RGBA.
fn pixel_budget(limits: &Limits) -> u64 {
    limits.max_pixels.saturating_mul(4)
}

/// Decodes the first frame of `data` under `limits`, with its EXIF orientation applied.
fn decode(data: &[u8], limits: &Limits) -> Result<(Kind, DynamicImage, Orientation), Refusal> {
    let kind = Kind::detect(data).ok_or(Refusal::Unsupported)?;
    if limits.expired() {
        return Err(Refusal::Deadline);
    }
    let budget = pixel_budget(limits);
    let side = u32::try_from(limits.max_pixels).unwrap_or(u32::MAX);
    let mut lim = image::Limits::default();
    lim.max_image_width = Some(side);
    lim.max_image_height = Some(side);
    lim.max_alloc = Some(budget);

    let mut reader = ImageReader::with_format(Cursor::new(data), kind.format());
    reader.limits(lim.clone());
    // Reads the header (and, for PNG, the chunks before the first IDAT) but no pixel data.
    let mut decoder = reader.into_decoder().map_err(refusal)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(Refusal::Empty);
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(Refusal::TooManyPixels {
            width,
            height,
            max: limits.max_pixels,
        });
    }
    let need = decoder.total_bytes();
    if need > budget {
        return Err(Refusal::TooMuchMemory { need, max: budget });
    }
    let orientation = if kind.applies_orientation() {
        // A damaged EXIF block is no reason to refuse the pixels.
        decoder.orientation().unwrap_or(Orientation::NoTransforms)
    } else {
        Orientation::NoTransforms
    };
    // As `ImageReader::decode` does: the output buffer counts against the allocation budget.
    lim.reserve(need).map_err(refusal)?;
    decoder.set_limits(lim).map_err(refusal)?;
    if limits.expired() {
        return Err(Refusal::Deadline);
    }
    let mut img = DynamicImage::from_decoder(decoder).map_err(refusal)?;
    if limits.expired() {
        return Err(Refusal::Deadline);
    }
    img.apply_orientation(orientation);
    Ok((kind, img, orientation))
}

/// Decodes `data` under `limits` and re-encodes its first frame (JPEG as JPEG, anything else as
/// PNG). `Disarmed::changes` says what was converted and removed.
pub fn reencode(data: &[u8], limits: &Limits) -> Result<Disarmed, Refusal> {
    let (kind, img, orientation) = decode(data, limits)?;
    let findings = walk(kind, data);
    let (out, content_type, extension) = if kind == Kind::Jpeg {
        (encode_jpeg(&img, limits.jpeg_quality)?, "image/jpeg", None)
    } else {
        let ext = (kind != Kind::Png).then(|| "png".to_string());
        (encode_png(img)?, "image/png", ext)
    };

    let mut changes = vec![match kind {
        Kind::Jpeg => format!(
            "re-encoded from pixels as JPEG (quality {})",
            limits.jpeg_quality.clamp(1, 100)
        ),
        Kind::Png => "re-encoded from pixels as PNG".to_string(),
        k => format!(
            "converted from {} to PNG (re-encoded from pixels)",
            k.label()
        ),
    }];
    if let Some(turn) = orientation_phrase(orientation) {
        changes.push(format!("EXIF orientation applied to the pixels ({turn})"));
    }
    changes.extend(findings.removed.iter().map(|s| s.to_string()));
    if findings.trailing > 0 {
        changes.push(format!(
            "{} octets of data after the end of the image removed",
            findings.trailing
        ));
    }
    if findings.frames > 1 {
        changes.push(format!(
            "animation of {} frames reduced to its first frame",
            findings.frames
        ));
    }
    if findings.pages {
        changes.push("only the first page kept".to_string());
    }
    if findings.truncated {
        changes.push("the file is incomplete: re-encoded from what could be decoded".to_string());
    }
    Ok(Disarmed {
        data: out,
        content_type: content_type.to_string(),
        extension,
        changes,
        extra: Vec::new(),
    })
}

/// For images inside documents (OOXML `media/` parts): decodes `data` under `limits` and
/// re-encodes its first frame in the SAME format (a GIF stays a GIF, a TIFF a TIFF), so that
/// the part's name, its content type and the relationships pointing at it stay valid. Returns
/// the new bytes and their format. EXIF orientation is applied as for attachments.
pub fn reencode_same_format(data: &[u8], limits: &Limits) -> Result<(Vec<u8>, Kind), Refusal> {
    let (kind, img, _) = decode(data, limits)?;
    Ok((encode_as(kind, img, limits.jpeg_quality)?, kind))
}

/// A 1×1 white image in `kind`'s format: what stands in a document for an image that cannot
/// be decoded (the picture's reference stays valid and the document opens).
pub fn placeholder(kind: Kind) -> Result<Vec<u8>, Refusal> {
    let px = image::RgbImage::from_pixel(1, 1, image::Rgb([255, 255, 255]));
    encode_as(kind, DynamicImage::ImageRgb8(px), 85)
}

/// Encodes a decoded image in `kind`'s format with our own encoder.
fn encode_as(kind: Kind, img: DynamicImage, quality: u8) -> Result<Vec<u8>, Refusal> {
    match kind {
        Kind::Jpeg => encode_jpeg(&img, quality),
        Kind::Png => encode_png(img),
        Kind::Gif | Kind::Bmp | Kind::Tiff | Kind::WebP => {
            // These encoders take 8-bit RGB or RGBA; the GIF encoder quantises to a palette.
            let img = if img.color().has_alpha() {
                DynamicImage::ImageRgba8(img.into_rgba8())
            } else {
                DynamicImage::ImageRgb8(img.into_rgb8())
            };
            let mut out = Cursor::new(Vec::new());
            img.write_to(&mut out, kind.format()).map_err(encode_err)?;
            Ok(out.into_inner())
        }
    }
}

fn orientation_phrase(o: Orientation) -> Option<&'static str> {
    Some(match o {
        Orientation::NoTransforms => return None,
        Orientation::Rotate90 => "rotated 90° clockwise",
        Orientation::Rotate180 => "rotated 180°",
        Orientation::Rotate270 => "rotated 90° anticlockwise",
        Orientation::FlipHorizontal => "mirrored",
        Orientation::FlipVertical => "flipped vertically",
        Orientation::Rotate90FlipH => "rotated 90° clockwise and mirrored",
        Orientation::Rotate270FlipH => "rotated 90° anticlockwise and mirrored",
    })
}

/// Maps a decoder error to a refusal whose text is safe to show (bounded, printable).
fn refusal(e: ImageError) -> Refusal {
    match e {
        ImageError::Limits(_) => Refusal::DecoderLimit,
        ImageError::Unsupported(u) => Refusal::Feature(tidy(&u.to_string())),
        other => Refusal::Damaged(tidy(&other.to_string())),
    }
}

/// A library message cut to 120 characters of printable text (it may quote input bytes).
fn tidy(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(120)
        .collect();
    if s.chars().count() > 120 {
        out.push('…');
    }
    out
}

fn encode_err(e: ImageError) -> Refusal {
    Refusal::Encode(tidy(&e.to_string()))
}

fn encode_jpeg(img: &DynamicImage, quality: u8) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::new();
    let enc = JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100));
    let (w, h) = (img.width(), img.height());
    // The JPEG encoder takes grey or RGB; anything else (never produced by the JPEG decoder
    // today) is converted.
    match img {
        DynamicImage::ImageLuma8(buf) => enc.write_image(buf.as_raw(), w, h, ExtendedColorType::L8),
        DynamicImage::ImageRgb8(buf) => {
            enc.write_image(buf.as_raw(), w, h, ExtendedColorType::Rgb8)
        }
        other => enc.write_image(other.to_rgb8().as_raw(), w, h, ExtendedColorType::Rgb8),
    }
    .map_err(encode_err)?;
    Ok(out)
}

fn encode_png(img: DynamicImage) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::new();
    // Balanced compression: about 4 times slower than `Fast` but half the size for photos and
    // a tenth for screenshots and GIF-like pictures, which matters in mail (base64, and size
    // limits on the LGWAN side).
    let enc =
        PngEncoder::new_with_quality(&mut out, CompressionType::Default, FilterType::Adaptive);
    match img {
        // Every GIF decodes to RGBA, and most are opaque: RGB is a quarter less to compress.
        // Packed in place, so that an image at the pixel limit needs no second buffer.
        DynamicImage::ImageRgba8(buf) if buf.pixels().all(|p| p[3] == 255) => {
            let (w, h) = buf.dimensions();
            let mut raw = buf.into_raw();
            let n = raw.len() / 4;
            for i in 0..n {
                raw.copy_within(4 * i..4 * i + 3, 3 * i);
            }
            raw.truncate(3 * n);
            enc.write_image(&raw, w, h, ExtendedColorType::Rgb8)
        }
        // PNG has no floating-point samples: 16 bits per channel keeps the precision that
        // matters for display.
        DynamicImage::ImageRgb32F(_) => {
            DynamicImage::ImageRgb16(img.to_rgb16()).write_with_encoder(enc)
        }
        DynamicImage::ImageRgba32F(_) => {
            DynamicImage::ImageRgba16(img.to_rgba16()).write_with_encoder(enc)
        }
        _ => img.write_with_encoder(enc),
    }
    .map_err(encode_err)?;
    Ok(out)
}

/// What the structural walk found that re-encoding removes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Findings {
    /// One phrase per kind of metadata, in the order first seen.
    removed: Vec<&'static str>,
    /// Octets after the format's end marker.
    trailing: usize,
    /// Animation frames declared or seen (0 or 1 for a still image).
    frames: u64,
    /// More pages (TIFF directories) after the first.
    pages: bool,
    /// The container ends before its end marker.
    truncated: bool,
}

impl Findings {
    fn add(&mut self, what: &'static str) {
        if !self.removed.contains(&what) {
            self.removed.push(what);
        }
    }

    fn exif(&mut self, tiff: &[u8]) {
        match tiff_ifd0(tiff) {
            Some(ifd) if ifd.tags.contains(&TAG_GPS) => {
                self.add("EXIF metadata removed (including the GPS position)")
            }
            _ => self.add("EXIF metadata removed"),
        }
        if tiff_ifd0(tiff).is_some_and(|ifd| ifd.next) {
            self.add("EXIF thumbnail removed");
        }
    }
}

fn walk(kind: Kind, data: &[u8]) -> Findings {
    let mut f = Findings::default();
    match kind {
        Kind::Png => walk_png(data, &mut f),
        Kind::Jpeg => walk_jpeg(data, &mut f),
        Kind::Gif => walk_gif(data, &mut f),
        Kind::WebP => walk_webp(data, &mut f),
        Kind::Tiff => walk_tiff(data, &mut f),
        Kind::Bmp => {}
    }
    f
}

/// `data[off..off + len]`, or `None` when it is not all there (no overflow on hostile values).
fn slice(data: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    data.get(off..off.checked_add(len)?)
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = slice(b, off, 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn le32(b: &[u8], off: usize) -> Option<u32> {
    let s = slice(b, off, 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn walk_png(d: &[u8], f: &mut Findings) {
    let mut pos = 8usize;
    loop {
        let (Some(len), Some(ty)) = (be32(d, pos), slice(d, pos + 4, 4)) else {
            f.truncated = true;
            return;
        };
        let len = len as usize;
        let Some(body) = slice(d, pos + 8, len) else {
            f.truncated = true;
            return;
        };
        let end = pos + 8 + len + 4;
        if end > d.len() {
            f.truncated = true;
            return;
        }
        let keyword = body.split(|&b| b == 0).next().unwrap_or(&[]);
        match ty {
            b"IEND" => {
                f.trailing = d.len() - end;
                return;
            }
            b"tEXt" | b"zTXt" | b"iTXt" => match keyword {
                b"XML:com.adobe.xmp" => f.add("XMP metadata removed"),
                b"Raw profile type exif" | b"Raw profile type APP1" => {
                    f.add("EXIF metadata removed")
                }
                b"Raw profile type iptc" | b"Raw profile type 8bim" => {
                    f.add("IPTC metadata removed")
                }
                _ => f.add("text chunks (tEXt, zTXt, iTXt) removed"),
            },
            b"eXIf" => f.exif(body),
            b"iCCP" => f.add("ICC colour profile removed"),
            b"tIME" => f.add("modification time removed"),
            b"acTL" => f.frames = u64::from(be32(body, 0).unwrap_or(0)),
            b"IHDR" | b"PLTE" | b"IDAT" | b"fcTL" | b"fdAT" | b"tRNS" | b"gAMA" | b"cHRM"
            | b"sRGB" | b"sBIT" | b"bKGD" | b"hIST" | b"pHYs" | b"sPLT" | b"cICP" | b"mDCV"
            | b"cLLI" => {}
            _ => f.add("unknown or private chunks removed"),
        }
        pos = end;
    }
}

fn walk_jpeg(d: &[u8], f: &mut Findings) {
    let mut pos = 2usize;
    loop {
        // Garbage between segments is skipped the way decoders do: up to the next 0xFF.
        match d.get(pos..).and_then(|rest| memchr(0xFF, rest)) {
            Some(i) => pos += i,
            None => {
                f.truncated = true;
                return;
            }
        }
        while d.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&marker) = d.get(pos) else {
            f.truncated = true;
            return;
        };
        pos += 1;
        match marker {
            0xD9 => {
                f.trailing = d.len() - pos;
                return;
            }
            0x00 | 0x01 | 0xD0..=0xD8 => continue,
            _ => {}
        }
        let Some(len) = slice(d, pos, 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            f.truncated = true;
            return;
        };
        let Some(body) = len.checked_sub(2).and_then(|n| slice(d, pos + 2, n)) else {
            f.truncated = true;
            return;
        };
        match marker {
            0xE0 if body.starts_with(b"JFXX\0") => f.add("thumbnail removed"),
            0xE0 => {}
            0xE1 if body.starts_with(b"Exif\0") => f.exif(body.get(6..).unwrap_or(&[])),
            0xE1 if body.starts_with(b"http://ns.adobe.com/") => f.add("XMP metadata removed"),
            0xE2 if body.starts_with(b"ICC_PROFILE\0") => f.add("ICC colour profile removed"),
            0xE2 if body.starts_with(b"MPF\0") => f.add("additional embedded images removed"),
            0xED => f.add("IPTC metadata removed"),
            // Adobe's colour transform flag: decoding information, not metadata.
            0xEE if body.starts_with(b"Adobe") => {}
            0xE1..=0xEF => f.add("application segments removed"),
            0xFE => f.add("comment removed"),
            _ => {}
        }
        pos += len;
        if marker == 0xDA {
            // Entropy-coded data follows the scan header: it ends at the first marker that is
            // not a stuffed 0xFF00 or a restart marker.
            loop {
                match d.get(pos..).and_then(|rest| memchr(0xFF, rest)) {
                    Some(i) => pos += i,
                    None => {
                        f.truncated = true;
                        return;
                    }
                }
                match d.get(pos + 1) {
                    None => {
                        f.truncated = true;
                        return;
                    }
                    Some(0x00 | 0xD0..=0xD7) => pos += 2,
                    Some(0xFF) => pos += 1,
                    Some(_) => break,
                }
            }
        }
    }
}

fn walk_gif(d: &[u8], f: &mut Findings) {
    let Some(&packed) = d.get(10) else {
        f.truncated = true;
        return;
    };
    let mut pos = 13usize;
    if packed & 0x80 != 0 {
        pos += 3 << ((packed & 7) + 1);
    }
    let mut frames = 0u64;
    loop {
        let Some(&block) = d.get(pos) else {
            f.truncated = true;
            break;
        };
        pos += 1;
        match block {
            0x3B => {
                f.trailing = d.len() - pos;
                break;
            }
            0x21 => {
                let Some(&label) = d.get(pos) else {
                    f.truncated = true;
                    break;
                };
                pos += 1;
                match label {
                    0xF9 => {}
                    0xFE => f.add("comment removed"),
                    0x01 => f.add("plain text extension removed"),
                    0xFF => match slice(d, pos + 1, 11) {
                        Some(b"NETSCAPE2.0" | b"ANIMEXTS1.0") => {}
                        Some(b"XMP DataXMP") => f.add("XMP metadata removed"),
                        Some(b"ICCRGBG1012") => f.add("ICC colour profile removed"),
                        _ => f.add("application extensions removed"),
                    },
                    _ => f.add("unknown extensions removed"),
                }
                if skip_sub_blocks(d, &mut pos).is_none() {
                    f.truncated = true;
                    break;
                }
            }
            0x2C => {
                let Some(&local) = d.get(pos + 8) else {
                    f.truncated = true;
                    break;
                };
                pos += 9;
                if local & 0x80 != 0 {
                    pos += 3 << ((local & 7) + 1);
                }
                pos += 1; // LZW minimum code size
                frames += 1;
                if skip_sub_blocks(d, &mut pos).is_none() {
                    f.truncated = true;
                    break;
                }
            }
            // Not a GIF block: decoders stop here, so whatever follows is not image data.
            _ => {
                f.trailing = d.len() - (pos - 1);
                break;
            }
        }
    }
    f.frames = frames;
}

/// Skips GIF data sub-blocks up to and including the empty terminator.
fn skip_sub_blocks(d: &[u8], pos: &mut usize) -> Option<()> {
    loop {
        let n = usize::from(*d.get(*pos)?);
        *pos += 1;
        if n == 0 {
            return Some(());
        }
        *pos += n;
        if *pos > d.len() {
            return None;
        }
    }
}

fn walk_webp(d: &[u8], f: &mut Findings) {
    let Some(riff) = le32(d, 4) else {
        f.truncated = true;
        return;
    };
    let end = 8 + riff as usize;
    if end > d.len() {
        f.truncated = true;
    } else {
        f.trailing = d.len() - end;
    }
    let end = end.min(d.len());
    let mut pos = 12usize;
    let mut frames = 0u64;
    while pos + 8 <= end {
        let (Some(fourcc), Some(size)) = (slice(d, pos, 4), le32(d, pos + 4)) else {
            break;
        };
        let size = size as usize;
        let body = slice(d, pos + 8, size).unwrap_or(&[]);
        match fourcc {
            b"EXIF" => f.exif(body.strip_prefix(b"Exif\0\0").unwrap_or(body)),
            b"XMP " => f.add("XMP metadata removed"),
            b"ICCP" => f.add("ICC colour profile removed"),
            b"ANMF" => frames += 1,
            b"VP8 " | b"VP8L" | b"VP8X" | b"ALPH" | b"ANIM" => {}
            _ => f.add("unknown chunks removed"),
        }
        pos = pos
            .saturating_add(8)
            .saturating_add(size)
            .saturating_add(size & 1);
    }
    f.frames = frames;
}

// TIFF tags that are metadata rather than pixels (TIFF 6.0, EXIF 2.3, Adobe).
const TAG_GPS: u16 = 34853;
const TIFF_METADATA: &[(u16, &str)] = &[
    (270, "image description removed"),
    (271, "camera make and model removed"),
    (272, "camera make and model removed"),
    (305, "software name removed"),
    (306, "date and time removed"),
    (315, "author name removed"),
    (316, "computer name removed"),
    (700, "XMP metadata removed"),
    (33723, "IPTC metadata removed"),
    (34377, "Photoshop metadata removed"),
    (34665, "EXIF metadata removed"),
    (TAG_GPS, "GPS position removed"),
    (34675, "ICC colour profile removed"),
];

fn walk_tiff(d: &[u8], f: &mut Findings) {
    let Some(ifd) = tiff_ifd0(d) else {
        return;
    };
    for (tag, phrase) in TIFF_METADATA {
        if ifd.tags.contains(tag) {
            f.add(phrase);
        }
    }
    f.pages = ifd.next;
}

/// The first image file directory of a TIFF structure (a TIFF file, or the payload of an EXIF
/// block): its tag numbers and whether another directory follows.
struct Ifd {
    tags: Vec<u16>,
    next: bool,
}

/// At most this many directory entries are read (real files have a few dozen).
const MAX_IFD_ENTRIES: usize = 4096;

fn tiff_ifd0(t: &[u8]) -> Option<Ifd> {
    let le = match t.get(0..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let n = |off: usize, len: usize| -> Option<u64> {
        let s = slice(t, off, len)?;
        let mut v = 0u64;
        for i in 0..len {
            let b = if le { s[len - 1 - i] } else { s[i] };
            v = (v << 8) | u64::from(b);
        }
        Some(v)
    };
    // Classic TIFF: 4-octet offsets, 2-octet count, 12-octet entries; BigTIFF: 8, 8, 20.
    let (off_len, count_len, entry_len, first) = match n(2, 2)? {
        42 => (4, 2, 12, n(4, 4)?),
        43 => (8, 8, 20, n(8, 8)?),
        _ => return None,
    };
    let first = usize::try_from(first).ok()?;
    let count = usize::try_from(n(first, count_len)?).ok()?;
    let entries = first.checked_add(count_len)?;
    let mut tags = Vec::new();
    for i in 0..count.min(MAX_IFD_ENTRIES) {
        let Some(tag) = entries.checked_add(i * entry_len).and_then(|off| n(off, 2)) else {
            break;
        };
        tags.push(tag as u16);
    }
    let next = count
        .checked_mul(entry_len)
        .and_then(|l| entries.checked_add(l))
        .and_then(|off| n(off, off_len))
        .is_some_and(|v| v != 0);
    Some(Ifd { tags, next })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    fn chunk(ty: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(ty);
        v.extend_from_slice(body);
        let mut c = ty.to_vec();
        c.extend_from_slice(body);
        v.extend_from_slice(&crc32(&c).to_be_bytes());
        v
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| Rgb([x as u8, y as u8, 7]));
        let mut out = Vec::new();
        PngEncoder::new(&mut out)
            .write_image(img.as_raw(), w, h, ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    /// Inserts chunks after IHDR (8 + 25 octets).
    fn with_chunks(png: &[u8], chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut v = png[..33].to_vec();
        for c in chunks {
            v.extend_from_slice(c);
        }
        v.extend_from_slice(&png[33..]);
        v
    }

    fn limits() -> Limits {
        Limits::from_config(&crate::config::SanitizeConfig::default())
    }

    #[test]
    fn kinds_by_magic() {
        assert_eq!(Kind::detect(&png(1, 1)), Some(Kind::Png));
        assert_eq!(Kind::detect(b"\xFF\xD8\xFF\xE0"), Some(Kind::Jpeg));
        assert_eq!(Kind::detect(b"GIF89a"), Some(Kind::Gif));
        assert_eq!(Kind::detect(b"RIFF\0\0\0\0WEBPVP8 "), Some(Kind::WebP));
        assert_eq!(Kind::detect(b"MM\0*\0\0\0\x08"), Some(Kind::Tiff));
        assert_eq!(Kind::detect(b"BM"), Some(Kind::Bmp));
        assert_eq!(Kind::detect(b"\0\0\x01\0\x01\0"), None); // ICO
        assert_eq!(Kind::detect(b"\0\0\0\x18ftypheic"), None);
        assert_eq!(Kind::detect(b""), None);
    }

    #[test]
    fn png_walk_finds_text_exif_icc_and_trailer() {
        let mut exif = b"MM\0*\0\0\0\x08\0\x01".to_vec();
        exif.extend_from_slice(&[0x88, 0x25, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0x1A, 0, 0, 0, 0]);
        let mut data = with_chunks(
            &png(4, 4),
            &[
                chunk(b"tEXt", b"Comment\0secret"),
                chunk(b"eXIf", &exif),
                chunk(b"iCCP", b"x\0\0"),
                chunk(b"prVt", b"?"),
            ],
        );
        data.extend_from_slice(b"PK\x03\x04 appended zip");
        let f = walk(Kind::Png, &data);
        assert_eq!(
            f.removed,
            vec![
                "text chunks (tEXt, zTXt, iTXt) removed",
                "EXIF metadata removed (including the GPS position)",
                "ICC colour profile removed",
                "unknown or private chunks removed",
            ]
        );
        assert_eq!(f.trailing, 17);
        assert!(!f.truncated);
        let cut = &data[..40];
        assert!(walk(Kind::Png, cut).truncated);
    }

    #[test]
    fn reencode_png_drops_chunks_and_trailer() {
        let mut data = with_chunks(&png(8, 5), &[chunk(b"tEXt", b"Author\0Mallory")]);
        data.extend_from_slice(b"<script>alert(1)</script>");
        let d = reencode(&data, &limits()).unwrap();
        assert_eq!(d.content_type, "image/png");
        assert_eq!(d.extension, None);
        assert!(memchr::memmem::find(&d.data, b"Mallory").is_none());
        assert!(memchr::memmem::find(&d.data, b"script").is_none());
        assert!(d.data.ends_with(&chunk(b"IEND", b"")));
        let img = image::load_from_memory(&d.data).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (8, 5));
        assert_eq!(img.get_pixel(3, 2), &Rgb([3, 2, 7]));
        assert!(
            d.changes
                .iter()
                .any(|c| c.contains("25 octets of data after")),
            "{:?}",
            d.changes
        );
    }

    #[test]
    fn refusals_are_typed() {
        let l = limits();
        assert_eq!(reencode(b"\0\0\x01\0\x01\0", &l), Err(Refusal::Unsupported));
        let data = png(10, 10);
        let mut small = l;
        small.max_pixels = 99;
        assert_eq!(
            reencode(&data, &small),
            Err(Refusal::TooManyPixels {
                width: 10,
                height: 10,
                max: 99
            })
        );
        let mut late = l;
        late.deadline = Some(std::time::Instant::now());
        assert_eq!(reencode(&data, &late), Err(Refusal::Deadline));
        assert!(matches!(
            reencode(&data[..60], &l),
            Err(Refusal::Damaged(_))
        ));
    }

    #[test]
    fn ifd_parsing_is_bounded() {
        // Count says 65535 entries, offsets point past the end: no panic, tags read so far.
        let t = b"II*\0\x08\0\0\0\xFF\xFF\x12\x01\x03\0";
        let ifd = tiff_ifd0(t).unwrap();
        assert_eq!(ifd.tags, vec![0x0112]);
        assert!(!ifd.next);
        // BigTIFF with an absurd first offset.
        assert!(tiff_ifd0(b"II+\0\x08\0\0\0\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF").is_none());
        assert!(tiff_ifd0(b"XX*\0").is_none());
    }

    #[test]
    fn jpeg_walk_segments_and_trailer() {
        let img = RgbImage::from_pixel(16, 16, Rgb([200, 10, 10]));
        let mut jpg = Vec::new();
        JpegEncoder::new_with_quality(&mut jpg, 80)
            .write_image(img.as_raw(), 16, 16, ExtendedColorType::Rgb8)
            .unwrap();
        let mut data = jpg[..2].to_vec();
        let com = b"\xFF\xFE\0\x07hello";
        data.extend_from_slice(com);
        data.extend_from_slice(b"\xFF\xED\0\x06IPTC");
        data.extend_from_slice(&jpg[2..]);
        data.extend_from_slice(b"trailing");
        let f = walk(Kind::Jpeg, &data);
        assert_eq!(f.removed, vec!["comment removed", "IPTC metadata removed"]);
        assert_eq!(f.trailing, 8);
        assert!(!f.truncated);
        assert!(walk(Kind::Jpeg, &data[..data.len() - 20]).truncated);
    }

    #[test]
    fn gif_walk_counts_frames_and_comments() {
        let mut g = b"GIF89a\x01\0\x01\0\x80\0\0".to_vec();
        g.extend_from_slice(&[0, 0, 0, 255, 255, 255]);
        g.extend_from_slice(b"\x21\xFE\x03abc\0");
        g.extend_from_slice(b"\x21\xFF\x0BNETSCAPE2.0\x03\x01\0\0\0");
        for _ in 0..3 {
            g.extend_from_slice(b"\x2C\0\0\0\0\x01\0\x01\0\0\x02\x02\x44\x01\0");
        }
        g.push(0x3B);
        g.extend_from_slice(b"alert(1)");
        let f = walk(Kind::Gif, &g);
        assert_eq!(f.removed, vec!["comment removed"]);
        assert_eq!(f.frames, 3);
        assert_eq!(f.trailing, 8);
        let d = reencode(&g, &limits()).unwrap();
        assert_eq!(d.extension.as_deref(), Some("png"));
        assert!(
            d.changes.iter().any(|c| c.contains("3 frames")),
            "{:?}",
            d.changes
        );
        assert!(memchr::memmem::find(&d.data, b"alert").is_none());
    }
    #[test]
    fn same_format_reencoding_and_placeholders() {
        let lim = limits();
        let src = DynamicImage::ImageRgb8(RgbImage::from_fn(8, 6, |x, y| {
            Rgb([x as u8 * 30, y as u8 * 40, 9])
        }));
        for kind in [
            Kind::Png,
            Kind::Jpeg,
            Kind::Gif,
            Kind::Bmp,
            Kind::Tiff,
            Kind::WebP,
        ] {
            let mut input = Cursor::new(Vec::new());
            src.write_to(&mut input, kind.format()).unwrap();
            let mut input = input.into_inner();
            input.extend_from_slice(b"PK\x03\x04 trailing payload");
            let (out, k) = reencode_same_format(&input, &lim).unwrap();
            assert_eq!(k, kind);
            assert_eq!(Kind::detect(&out), Some(kind), "{kind:?}");
            assert!(
                memchr::memmem::find(&out, b"PK\x03\x04").is_none(),
                "{kind:?}"
            );
            let back = image::load_from_memory_with_format(&out, kind.format()).unwrap();
            assert_eq!((back.width(), back.height()), (8, 6), "{kind:?}");
            let p = placeholder(kind).unwrap();
            assert_eq!(Kind::detect(&p), Some(kind));
            let back = image::load_from_memory_with_format(&p, kind.format()).unwrap();
            assert_eq!((back.width(), back.height()), (1, 1), "{kind:?}");
        }
        assert!(matches!(
            reencode_same_format(b"\x89PNG\r\n\x1a\nbroken", &lim),
            Err(Refusal::Damaged(_))
        ));
    }
}
