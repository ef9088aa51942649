//! Images through `cdr::disarm` with the default policy: what must be gone is asserted on the
//! output bytes (EXIF with a GPS position, PNG text chunks, a zip after IEND, a GIF/JavaScript
//! polyglot), the output must decode with the same pixels (orientation applied), and hostile
//! headers (100000x100000 and friends, truncations) must be refused quickly with a reason.
//!
//! `corpus_images_reencoded` runs every image attachment found in the mail corpora
//! (`MUGAIKA_CORPORA`, else `../shared/corpora`) through the same path; it SKIPs loudly when
//! they are absent and fails instead with `MUGAIKA_REQUIRE_CORPORA=1`.
//!
//! `bench_image_throughput` (ignored) prints MB/s:
//! `cargo test --release --test cdr_image -- --ignored --nocapture`.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::codecs::gif::{GifEncoder, Repeat};
use image::{
    Delay, DynamicImage, Frame, GenericImageView, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage,
};
use mugaika::cdr::{self, Disarmed, Limits, Policy, Verdict};
use mugaika::config::{AttachmentPolicy, LinkPolicy, SanitizeConfig};

fn policy_with(limits: Limits, f: impl FnOnce(&Policy) -> Verdict) -> Verdict {
    let attachments = AttachmentPolicy::default();
    let policy = Policy {
        attachments: &attachments,
        links: LinkPolicy::Show,
        limits,
        depth: 0,
    };
    f(&policy)
}

fn default_limits() -> Limits {
    Limits::from_config(&SanitizeConfig::default())
}

fn run(data: &[u8]) -> Verdict {
    policy_with(default_limits(), |p| cdr::disarm(data, "image", None, p))
}

fn kept(data: &[u8]) -> Disarmed {
    match run(data) {
        Verdict::Keep(d) => d,
        other => panic!("expected Keep, got {other:?}"),
    }
}

fn removed(data: &[u8]) -> String {
    match run(data) {
        Verdict::Remove { reason } => reason,
        Verdict::Keep(d) => panic!("expected Remove, got Keep: {:?}", d.changes),
        other => panic!("expected Remove, got {other:?}"),
    }
}

fn has(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode test image");
    out.into_inner()
}

/// A test picture: a gradient with a red 8x8 square in the top-left corner.
fn picture(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        if x < 8 && y < 8 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, (x * 255 / w.max(1)) as u8, 200])
        }
    })
}

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

fn png_chunk(ty: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(ty);
    v.extend_from_slice(body);
    let mut c = ty.to_vec();
    c.extend_from_slice(body);
    v.extend_from_slice(&crc32(&c).to_be_bytes());
    v
}

/// Inserts chunks right after IHDR (signature 8 + IHDR 25 octets).
fn png_insert(png: &[u8], chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut v = png[..33].to_vec();
    for c in chunks {
        v.extend_from_slice(c);
    }
    v.extend_from_slice(&png[33..]);
    v
}

/// PNG chunk types, in order.
fn png_chunks(png: &[u8]) -> Vec<String> {
    let mut pos = 8;
    let mut out = Vec::new();
    while pos + 8 <= png.len() {
        let len = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
        out.push(String::from_utf8_lossy(&png[pos + 4..pos + 8]).into_owned());
        pos += 12 + len;
    }
    assert_eq!(pos, png.len(), "chunks do not end at the end of the file");
    out
}

/// JPEG markers before the first scan.
fn jpeg_markers(jpg: &[u8]) -> Vec<u8> {
    let mut pos = 2;
    let mut out = Vec::new();
    while pos + 4 <= jpg.len() && jpg[pos] == 0xFF {
        let m = jpg[pos + 1];
        out.push(m);
        if m == 0xDA {
            break;
        }
        pos += 2 + u16::from_be_bytes([jpg[pos + 2], jpg[pos + 3]]) as usize;
    }
    out
}

/// The output holds nothing but what our encoders write: for PNG only IHDR, IDAT and IEND
/// (IEND last), for JPEG only JFIF, tables, frame and scan headers (EOI last).
fn assert_bare(d: &Disarmed) {
    if d.data.starts_with(b"\x89PNG\r\n\x1A\n") {
        assert_eq!(d.content_type, "image/png");
        let chunks = png_chunks(&d.data);
        assert_eq!(chunks.last().map(String::as_str), Some("IEND"));
        for c in &chunks {
            assert!(
                matches!(c.as_str(), "IHDR" | "PLTE" | "tRNS" | "IDAT" | "IEND"),
                "chunk {c} in output"
            );
        }
    } else if d.data.starts_with(b"\xFF\xD8") {
        assert_eq!(d.content_type, "image/jpeg");
        assert!(d.data.ends_with(b"\xFF\xD9"));
        let markers = jpeg_markers(&d.data);
        assert_eq!(markers.last(), Some(&0xDA), "{markers:x?}");
        for m in markers {
            assert!(
                matches!(m, 0xE0 | 0xDB | 0xC0 | 0xC4 | 0xDA | 0xDD),
                "marker {m:x} in output"
            );
        }
        // The only application segment is our JFIF header.
        assert_eq!(&d.data[6..11], b"JFIF\0");
    } else {
        panic!("output is neither PNG nor JPEG");
    }
    image::load_from_memory(&d.data).expect("output decodes");
}

/// A TIFF structure (big-endian) as found in an EXIF block: camera make, orientation 6 and a
/// GPS directory with latitude 35° 41' 22.01" N, the kind of data a phone photo leaks.
fn exif_tiff(orientation: u16) -> Vec<u8> {
    let mut t = b"MM\0*\0\0\0\x08".to_vec();
    // IFD0 at 8: 3 entries (12 octets each) and the next-IFD offset: ends at 50.
    t.extend_from_slice(&[0, 3]);
    t.extend_from_slice(&[0x01, 0x0F, 0, 2, 0, 0, 0, 8, 0, 0, 0, 50]); // Make, ASCII[8] @50
    t.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1]); // Orientation, SHORT
    t.extend_from_slice(&orientation.to_be_bytes());
    t.extend_from_slice(&[0, 0]);
    t.extend_from_slice(&[0x88, 0x25, 0, 4, 0, 0, 0, 1, 0, 0, 0, 58]); // GPS IFD @58
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(b"EvilCam\0"); // 50..58
                                       // GPS IFD at 58: 2 entries, ends at 88.
    t.extend_from_slice(&[0, 2]);
    t.extend_from_slice(&[0, 1, 0, 2, 0, 0, 0, 2, b'N', 0, 0, 0]); // GPSLatitudeRef
    t.extend_from_slice(&[0, 2, 0, 5, 0, 0, 0, 3, 0, 0, 0, 88]); // GPSLatitude, RATIONAL[3]
    t.extend_from_slice(&[0, 0, 0, 0]);
    for (n, d) in [(35u32, 1u32), (41, 1), (2201, 100)] {
        t.extend_from_slice(&n.to_be_bytes());
        t.extend_from_slice(&d.to_be_bytes());
    }
    t
}

fn jpeg_segment(marker: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0xFF, marker];
    v.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A JPEG with EXIF (GPS, orientation), XMP and a comment after SOI.
fn phone_photo(w: u32, h: u32, orientation: u16) -> Vec<u8> {
    let jpg = encode(&DynamicImage::ImageRgb8(picture(w, h)), ImageFormat::Jpeg);
    let mut out = jpg[..2].to_vec();
    let mut exif = b"Exif\0\0".to_vec();
    exif.extend_from_slice(&exif_tiff(orientation));
    out.extend_from_slice(&jpeg_segment(0xE1, &exif));
    out.extend_from_slice(&jpeg_segment(
        0xE1,
        b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta><exif:GPSLatitude>35,41.36N</exif:GPSLatitude></x:xmpmeta>",
    ));
    out.extend_from_slice(&jpeg_segment(0xFE, "撮影者 田中 090-1234-5678".as_bytes()));
    out.extend_from_slice(&jpg[2..]);
    out
}

#[test]
fn exif_gps_removed_and_orientation_applied() {
    let data = phone_photo(40, 20, 6);
    assert!(has(&data, b"EvilCam"));
    let d = kept(&data);
    assert_bare(&d);
    assert_eq!(d.extension, None, "JPEG stays JPEG");
    for gone in [
        &b"Exif"[..],
        b"EvilCam",
        b"GPSLatitude",
        b"xmpmeta",
        "田中".as_bytes(),
        b"090-1234",
        &2201u32.to_be_bytes(),
    ] {
        assert!(
            !has(&d.data, gone),
            "{:?} survived",
            String::from_utf8_lossy(gone)
        );
    }
    let img = image::load_from_memory(&d.data).unwrap().to_rgb8();
    // Orientation 6: the stored picture is turned 90° clockwise for display, so 40x20 becomes
    // 20x40 and the red top-left corner moves to the top-right.
    assert_eq!(img.dimensions(), (20, 40));
    let red = img.get_pixel(16, 3);
    let other = img.get_pixel(3, 3);
    assert!(red[0] > 180 && red[2] < 90, "top-right is {red:?}");
    assert!(other[0] < 90 && other[2] > 150, "top-left is {other:?}");
    let changes = d.changes.join("; ");
    assert!(changes.contains("GPS position"), "{changes}");
    assert!(changes.contains("XMP"), "{changes}");
    assert!(changes.contains("comment"), "{changes}");
    assert!(changes.contains("rotated 90° clockwise"), "{changes}");
}

#[test]
fn every_orientation_gives_the_displayed_picture() {
    // (orientation, output size, where the red corner must be)
    let cases = [
        (1, (40, 20), (3, 3)),
        (2, (40, 20), (36, 3)),
        (3, (40, 20), (36, 16)),
        (4, (40, 20), (3, 16)),
        (5, (20, 40), (3, 3)),
        (6, (20, 40), (16, 3)),
        (7, (20, 40), (16, 36)),
        (8, (20, 40), (3, 36)),
    ];
    for (o, size, (x, y)) in cases {
        let d = kept(&phone_photo(40, 20, o));
        let img = image::load_from_memory(&d.data).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), size, "orientation {o}");
        let p = img.get_pixel(x, y);
        assert!(
            p[0] > 180 && p[2] < 90,
            "orientation {o}: ({x},{y}) is {p:?}"
        );
    }
}

#[test]
fn png_text_chunks_and_exif_removed() {
    let src = picture(33, 17);
    let png = encode(&DynamicImage::ImageRgb8(src.clone()), ImageFormat::Png);
    let mut xmp = b"XML:com.adobe.xmp\0\0\0\0\0".to_vec();
    xmp.extend_from_slice(b"<x:xmpmeta>secret-xmp</x:xmpmeta>");
    let data = png_insert(
        &png,
        &[
            png_chunk(b"tEXt", b"Comment\0<script>alert('tEXt')</script>"),
            png_chunk(b"zTXt", b"Author\0\0x\x9c\x03\0\0\0\0\x01"),
            png_chunk(b"iTXt", &xmp),
            png_chunk(b"eXIf", &exif_tiff(1)),
            png_chunk(b"tIME", &[7, 232, 1, 1, 0, 0, 0]),
            png_chunk(b"vpAg", b"private"),
        ],
    );
    let d = kept(&data);
    assert_bare(&d);
    assert_eq!(d.extension, None, "PNG stays PNG");
    for gone in [
        &b"tEXt"[..],
        b"zTXt",
        b"iTXt",
        b"eXIf",
        b"script",
        b"secret-xmp",
        b"EvilCam",
    ] {
        assert!(
            !has(&d.data, gone),
            "{:?} survived",
            String::from_utf8_lossy(gone)
        );
    }
    // Pixels identical (PNG is lossless).
    let out = image::load_from_memory(&d.data).unwrap().to_rgb8();
    assert_eq!(out, src);
    let changes = d.changes.join("; ");
    for phrase in [
        "text chunks",
        "XMP",
        "EXIF metadata removed (including the GPS position)",
        "modification time",
        "private chunks",
    ] {
        assert!(changes.contains(phrase), "{phrase}: {changes}");
    }
    // PNG eXIf orientation is not applied (see the module doc): same size as stored.
    let turned = png_insert(&png, &[png_chunk(b"eXIf", &exif_tiff(6))]);
    let out = image::load_from_memory(&kept(&turned).data).unwrap();
    assert_eq!(out.dimensions(), (33, 17));
}

fn small_zip() -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file("payload.js", zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(b"WScript.Echo('pwned')").unwrap();
    w.finish().unwrap().into_inner()
}

#[test]
fn trailing_zip_after_iend_removed() {
    let png = encode(&DynamicImage::ImageRgb8(picture(16, 16)), ImageFormat::Png);
    let zip = small_zip();
    let mut data = png.clone();
    data.extend_from_slice(&zip);
    // The input really is both: a zip reader finds the member.
    let mut archive = zip::ZipArchive::new(Cursor::new(data.clone())).unwrap();
    assert_eq!(archive.by_index(0).unwrap().name().unwrap(), "payload.js");

    let d = kept(&data);
    assert_bare(&d);
    assert!(!has(&d.data, b"PK\x03\x04") && !has(&d.data, b"PK\x05\x06"));
    assert!(!has(&d.data, b"WScript"));
    assert!(zip::ZipArchive::new(Cursor::new(d.data.clone())).is_err());
    let expect = format!(
        "{} octets of data after the end of the image removed",
        zip.len()
    );
    assert!(d.changes.contains(&expect), "{:?}", d.changes);

    // The same after a JPEG's EOI and a GIF's trailer.
    for format in [ImageFormat::Jpeg, ImageFormat::Gif] {
        let mut data = encode(&DynamicImage::ImageRgb8(picture(16, 16)), format);
        data.extend_from_slice(&zip);
        let d = kept(&data);
        assert_bare(&d);
        assert!(!has(&d.data, b"PK\x03\x04"), "{format:?}");
        assert!(d.changes.contains(&expect), "{format:?}: {:?}", d.changes);
    }
}

/// `GIF89a/*` starts a JavaScript comment that the bytes after the trailer close: the file is
/// a valid GIF and a valid script (`GIF89a = alert(...)`).
fn gif_js_polyglot() -> Vec<u8> {
    let mut g = b"GIF89a".to_vec();
    g.extend_from_slice(b"/*"); // logical screen width 0x2A2F = 10799
    g.extend_from_slice(&[10, 0]); // height 10
    g.extend_from_slice(&[0x80, 0, 0]); // global colour table of 2
    g.extend_from_slice(&[0, 0, 0, 255, 255, 255]);
    g.extend_from_slice(b"\x21\xFE\x10alert('comment')\0");
    g.extend_from_slice(b"\x2C\0\0\0\0\x01\0\x01\0\0\x02\x02\x44\x01\0"); // one 1x1 frame
    g.push(0x3B);
    g.extend_from_slice(b"*/=alert(document.domain);//");
    g
}

#[test]
fn gif_javascript_polyglot_defused() {
    let data = gif_js_polyglot();
    let d = kept(&data);
    assert_bare(&d);
    assert_eq!(d.extension.as_deref(), Some("png"));
    assert!(!has(&d.data, b"alert"));
    let img = image::load_from_memory(&d.data).unwrap();
    assert_eq!(img.dimensions(), (10799, 10));
    let changes = d.changes.join("; ");
    assert!(changes.contains("converted from GIF to PNG"), "{changes}");
    assert!(changes.contains("comment removed"), "{changes}");
    assert!(
        changes.contains("28 octets of data after the end"),
        "{changes}"
    );
}

#[test]
fn animated_gif_keeps_first_frame() {
    let mut data = Vec::new();
    {
        let mut enc = GifEncoder::new(&mut data);
        enc.set_repeat(Repeat::Infinite).unwrap();
        let frames = [[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 255]].map(|c| {
            Frame::from_parts(
                RgbaImage::from_pixel(12, 9, Rgba(c)),
                0,
                0,
                Delay::from_numer_denom_ms(100, 1),
            )
        });
        enc.encode_frames(frames).unwrap();
    }
    let d = kept(&data);
    assert_bare(&d);
    let img = image::load_from_memory(&d.data).unwrap().to_rgba8();
    assert_eq!(img.dimensions(), (12, 9));
    assert!(img.pixels().all(|p| *p == Rgba([255, 0, 0, 255])));
    assert!(
        d.changes
            .contains(&"animation of 3 frames reduced to its first frame".to_string()),
        "{:?}",
        d.changes
    );
}

/// APNG: acTL + fcTL before IDAT (the default image is frame 1), a second frame in fdAT.
#[test]
fn animated_png_keeps_first_frame() {
    let f1 = encode(
        &DynamicImage::ImageRgb8(RgbImage::from_pixel(6, 4, Rgb([9, 99, 199]))),
        ImageFormat::Png,
    );
    let f2 = encode(
        &DynamicImage::ImageRgb8(RgbImage::from_pixel(6, 4, Rgb([250, 250, 0]))),
        ImageFormat::Png,
    );
    let idat = |png: &[u8]| -> Vec<u8> {
        let mut pos = 8;
        let mut out = Vec::new();
        while pos + 8 <= png.len() {
            let len = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
            if &png[pos + 4..pos + 8] == b"IDAT" {
                out.extend_from_slice(&png[pos + 8..pos + 8 + len]);
            }
            pos += 12 + len;
        }
        out
    };
    let fctl = |seq: u32| {
        let mut b = seq.to_be_bytes().to_vec();
        for v in [6u32, 4, 0, 0] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&[0, 10, 0, 100, 0, 0]);
        png_chunk(b"fcTL", &b)
    };
    let mut data = f1[..33].to_vec();
    data.extend_from_slice(&png_chunk(b"acTL", &[0, 0, 0, 2, 0, 0, 0, 0]));
    data.extend_from_slice(&fctl(0));
    data.extend_from_slice(&png_chunk(b"IDAT", &idat(&f1)));
    data.extend_from_slice(&fctl(1));
    let mut fdat = 2u32.to_be_bytes().to_vec();
    fdat.extend_from_slice(&idat(&f2));
    data.extend_from_slice(&png_chunk(b"fdAT", &fdat));
    data.extend_from_slice(&png_chunk(b"IEND", b""));

    let d = kept(&data);
    assert_bare(&d);
    let img = image::load_from_memory(&d.data).unwrap().to_rgb8();
    assert!(img.pixels().all(|p| *p == Rgb([9, 99, 199])));
    assert!(
        d.changes
            .contains(&"animation of 2 frames reduced to its first frame".to_string()),
        "{:?}",
        d.changes
    );
}

#[test]
fn every_format_decodes_after_reencoding() {
    let rgb = DynamicImage::ImageRgb8(picture(37, 23));
    let rgba = DynamicImage::ImageRgba8(RgbaImage::from_fn(37, 23, |x, y| {
        Rgba([x as u8 * 6, y as u8 * 11, 128, (x * 7) as u8])
    }));
    let gray16 = DynamicImage::ImageLuma16(image::ImageBuffer::from_fn(37, 23, |x, y| {
        image::Luma([(x * 1000 + y * 7) as u16])
    }));
    // (input, format, lossless, output extension)
    let cases = [
        (&rgb, ImageFormat::Png, true, None),
        (&rgba, ImageFormat::Png, true, None),
        (&gray16, ImageFormat::Png, true, None),
        (&rgb, ImageFormat::Jpeg, false, None),
        (&rgb, ImageFormat::Bmp, true, Some("png")),
        (&rgba, ImageFormat::Bmp, true, Some("png")),
        (&rgb, ImageFormat::Tiff, true, Some("png")),
        (&gray16, ImageFormat::Tiff, true, Some("png")),
        (&rgba, ImageFormat::WebP, true, Some("png")),
        (&rgb, ImageFormat::Gif, false, Some("png")),
    ];
    for (img, format, lossless, ext) in cases {
        let data = encode(img, format);
        let d = kept(&data);
        assert_bare(&d);
        assert_eq!(d.extension.as_deref(), ext, "{format:?}");
        let out = image::load_from_memory(&d.data).unwrap();
        assert_eq!(out.dimensions(), (37, 23), "{format:?}");
        if lossless {
            assert_eq!(out.color(), img.color(), "{format:?}");
            assert_eq!(out.as_bytes(), img.as_bytes(), "{format:?} pixels changed");
        }
        assert!(!d.changes.is_empty());
    }
}

#[test]
fn unsupported_image_types_removed() {
    // ICO (a PNG inside an icon directory) and HEIF are sniffed as images but not decoded.
    let png = encode(&DynamicImage::ImageRgb8(picture(16, 16)), ImageFormat::Png);
    let mut ico = vec![0, 0, 1, 0, 1, 0, 16, 16, 0, 0, 1, 0, 32, 0];
    ico.extend_from_slice(&(png.len() as u32).to_le_bytes());
    ico.extend_from_slice(&22u32.to_le_bytes());
    ico.extend_from_slice(&png);
    let reason = removed(&ico);
    assert!(
        reason.starts_with("ico:") && reason.contains("not supported"),
        "{reason}"
    );
    let heif = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic\0\0\0\0";
    let reason = removed(heif);
    assert!(
        reason.starts_with("heif:") && reason.contains("not supported"),
        "{reason}"
    );
}

fn timed_removal(what: &str, data: &[u8]) -> String {
    let t = Instant::now();
    let reason = removed(data);
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "{what}: took {took:?}");
    reason
}

/// Overwrites the width and height of the first SOF0 segment.
fn patch_jpeg_size(jpg: &mut [u8], w: u16, h: u16) {
    let sof = jpg.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
    jpg[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    jpg[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
}

/// Overwrites ImageWidth (256) and ImageLength (257) in a little-endian TIFF's first IFD.
fn patch_tiff_size(tif: &mut [u8], v: u32) {
    assert_eq!(&tif[..4], b"II*\0");
    let ifd = u32::from_le_bytes(tif[4..8].try_into().unwrap()) as usize;
    let n = u16::from_le_bytes([tif[ifd], tif[ifd + 1]]) as usize;
    for i in 0..n {
        let e = ifd + 2 + 12 * i;
        let tag = u16::from_le_bytes([tif[e], tif[e + 1]]);
        let ty = u16::from_le_bytes([tif[e + 2], tif[e + 3]]);
        if tag == 256 || tag == 257 {
            match ty {
                3 => tif[e + 8..e + 10].copy_from_slice(&(v.min(65535) as u16).to_le_bytes()),
                4 => tif[e + 8..e + 12].copy_from_slice(&v.to_le_bytes()),
                _ => panic!("unexpected type {ty}"),
            }
        }
    }
}

#[test]
fn giant_dimensions_refused_fast() {
    // PNG declaring 100000x100000 (10^10 pixels, 30 GB of RGB) over a few octets of data.
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1A\n".to_vec();
    png.extend_from_slice(&png_chunk(b"IHDR", &ihdr));
    png.extend_from_slice(&png_chunk(b"IDAT", b"\x78\x9c\x03\0\0\0\0\x01"));
    png.extend_from_slice(&png_chunk(b"IEND", b""));
    let reason = timed_removal("png", &png);
    assert!(
        reason.contains(&format!(
            "100000x100000 pixels is more than the limit of {}",
            mugaika::config::SanitizeConfig::default().max_image_pixels
        )),
        "{reason}"
    );

    let small = DynamicImage::ImageRgb8(picture(16, 16));

    let mut jpg = encode(&small, ImageFormat::Jpeg);
    patch_jpeg_size(&mut jpg, 65500, 65500);
    let reason = timed_removal("jpeg", &jpg);
    assert!(reason.contains("65500x65500 pixels"), "{reason}");

    // GIF: a 65535x65535 logical screen around a 1x1 frame.
    let mut gif = b"GIF89a\xFF\xFF\xFF\xFF\x80\0\0\0\0\0\xFF\xFF\xFF".to_vec();
    gif.extend_from_slice(b"\x2C\0\0\0\0\x01\0\x01\0\0\x02\x02\x44\x01\0\x3B");
    let reason = timed_removal("gif", &gif);
    assert!(reason.contains("65535x65535 pixels"), "{reason}");

    let mut bmp = encode(&small, ImageFormat::Bmp);
    bmp[18..22].copy_from_slice(&100_000i32.to_le_bytes());
    bmp[22..26].copy_from_slice(&100_000i32.to_le_bytes());
    let reason = timed_removal("bmp", &bmp);
    assert!(reason.starts_with("bmp:"), "{reason}");
    assert!(
        reason.contains("pixels") || reason.contains("too large"),
        "{reason}"
    );

    let mut tif = encode(&small, ImageFormat::Tiff);
    patch_tiff_size(&mut tif, 100_000);
    let reason = timed_removal("tiff", &tif);
    assert!(reason.starts_with("tiff:"), "{reason}");

    // WebP lossless: width and height are 14-bit fields after the VP8L signature.
    let mut webp = encode(
        &DynamicImage::ImageRgba8(small.to_rgba8()),
        ImageFormat::WebP,
    );
    assert_eq!(&webp[12..16], b"VP8L");
    let bits = u32::from_le_bytes(webp[21..25].try_into().unwrap());
    // (16382: image-webp 0.2.4 reads a stored 16383 as 0, which is refused as empty.)
    let bits = (bits & 0xF000_0000) | 16382 | (16382 << 14);
    webp[21..25].copy_from_slice(&bits.to_le_bytes());
    let reason = timed_removal("webp", &webp);
    assert!(reason.contains("16383x16383 pixels"), "{reason}");
}

#[test]
fn pixel_limit_follows_config() {
    let data = encode(
        &DynamicImage::ImageRgb8(picture(100, 100)),
        ImageFormat::Png,
    );
    let mut limits = default_limits();
    limits.max_pixels = 9_999;
    let v = policy_with(limits, |p| cdr::disarm(&data, "a.png", None, p));
    assert_eq!(
        v,
        Verdict::Remove {
            reason: "png: 100x100 pixels is more than the limit of 9999 pixels".into()
        }
    );
    limits.max_pixels = 10_000;
    let v = policy_with(limits, |p| cdr::disarm(&data, "a.png", None, p));
    assert!(matches!(v, Verdict::Keep(_)));
    // A deadline already passed: nothing is decoded.
    let mut late = default_limits();
    late.deadline = Some(Instant::now());
    let v = policy_with(late, |p| cdr::image::disarm(&data, "png", p));
    assert!(matches!(v, Verdict::Remove { ref reason } if reason.contains("deadline")));
}

#[test]
fn truncated_images_never_kept_broken() {
    let img = DynamicImage::ImageRgba8(RgbaImage::from_fn(64, 48, |x, y| {
        Rgba([x as u8 * 4, y as u8 * 5, (x ^ y) as u8, 255])
    }));
    let mut total = 0;
    let mut refused = 0;
    for format in [
        ImageFormat::Png,
        ImageFormat::Jpeg,
        ImageFormat::Gif,
        ImageFormat::WebP,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
    ] {
        let img = if format == ImageFormat::Jpeg {
            DynamicImage::ImageRgb8(img.to_rgb8())
        } else {
            img.clone()
        };
        let data = encode(&img, format);
        let mut cuts: Vec<usize> = (1..20).map(|i| data.len() * i / 20).collect();
        cuts.extend([1, 2, 7, 13, 20, 40, data.len() - 1]);
        for cut in cuts {
            total += 1;
            match run(&data[..cut]) {
                Verdict::Keep(d) if d.content_type.starts_with("text/plain") => {
                    // A cut so early that no signature is left ("GI", "B") reads as text: a
                    // text attachment, never an image kept broken.
                    assert!(
                        mugaika::sanitise::sniff::sniff(&data[..cut]).is_none(),
                        "{format:?} cut at {cut}: an image kept as text"
                    );
                    assert!(cut < 16, "{format:?} cut at {cut} kept as text");
                    refused += 1;
                }
                Verdict::Keep(d) => {
                    // Lenient decoders (JPEG, BMP) fill the missing part: the output is a whole,
                    // clean image of the declared size, and the notice says the file was cut.
                    assert_bare(&d);
                    let out = image::load_from_memory(&d.data).unwrap();
                    assert_eq!(out.dimensions(), (64, 48), "{format:?} cut at {cut}");
                }
                Verdict::Remove { reason } => {
                    refused += 1;
                    assert!(
                        !reason.contains("converter failed"),
                        "{format:?} cut at {cut}: the converter panicked"
                    );
                }
                Verdict::Quarantine { .. } => panic!("quarantine for an image"),
            }
        }
    }
    assert!(
        refused * 2 > total,
        "only {refused} of {total} truncations refused"
    );
    // A PNG cut in its IDAT is refused as damaged.
    let png = encode(&img, ImageFormat::Png);
    let reason = removed(&png[..png.len() / 2]);
    assert!(reason.contains("damaged or truncated"), "{reason}");
}

#[test]
fn hostile_bytes_never_panic() {
    // Headers of every format followed by noise, and noise sprinkled over valid images.
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let small = DynamicImage::ImageRgba8(RgbaImage::from_fn(20, 20, |x, y| {
        Rgba([x as u8 * 12, y as u8 * 12, 77, 200])
    }));
    let mut samples = Vec::new();
    for format in [
        ImageFormat::Png,
        ImageFormat::Gif,
        ImageFormat::WebP,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
    ] {
        samples.push(encode(&small, format));
    }
    samples.push(encode(
        &DynamicImage::ImageRgb8(small.to_rgb8()),
        ImageFormat::Jpeg,
    ));
    samples.push(phone_photo(30, 30, 6));
    samples.push(gif_js_polyglot());
    let t = Instant::now();
    for sample in &samples {
        for _ in 0..150 {
            let mut data = sample.clone();
            let flips = 1 + rnd() % 8;
            for _ in 0..flips {
                let i = (rnd() as usize) % data.len();
                data[i] = rnd() as u8;
            }
            match run(&data) {
                Verdict::Keep(d) => assert_bare(&d),
                Verdict::Remove { reason } => {
                    assert!(!reason.contains("converter failed"), "panic on {data:x?}")
                }
                Verdict::Quarantine { reason } => panic!("quarantine: {reason}"),
            }
        }
    }
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "fuzzing took {:?}",
        t.elapsed()
    );
}

/// A raw DEFLATE writer for hand-made bombs (fixed Huffman codes, RFC 1951 3.2.6).
struct Deflate {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Deflate {
    fn new() -> Deflate {
        let mut d = Deflate {
            out: vec![0x78, 0x01],
            acc: 0,
            n: 0,
        };
        d.bits(1, 1); // BFINAL
        d.bits(1, 2); // BTYPE 01: fixed Huffman codes
        d
    }

    fn bits(&mut self, v: u64, n: u32) {
        self.acc |= v << self.n;
        self.n += n;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// Huffman codes are sent most significant bit first.
    fn code(&mut self, code: u64, n: u32) {
        let rev = (0..n).fold(0, |r, i| r | (((code >> i) & 1) << (n - 1 - i)));
        self.bits(rev, n);
    }

    fn literal_zero(&mut self) {
        self.code(0b0011_0000, 8);
    }

    /// Length 258, distance 1: 258 more zeros for 13 bits.
    fn repeat_258(&mut self) {
        self.code(0b1100_0101, 8);
        self.code(0, 5);
    }

    fn finish(mut self) -> Vec<u8> {
        self.code(0, 7); // end of block
        self.bits(0, 7);
        self.out.extend_from_slice(&[0, 0, 0, 1]); // Adler-32 (wrong on purpose)
        self.out
    }
}

#[test]
fn png_deflate_bomb_finishes_fast() {
    // A 1x1 grey PNG whose IDAT inflates to 1.27 GB: the decoder must stop at the image's end.
    let mut z = Deflate::new();
    z.literal_zero();
    z.literal_zero();
    for _ in 0..(8_000_000 * 8 / 13) {
        z.repeat_258();
    }
    let idat = z.finish();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&1u32.to_be_bytes());
    ihdr.extend_from_slice(&1u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1A\n".to_vec();
    png.extend_from_slice(&png_chunk(b"IHDR", &ihdr));
    png.extend_from_slice(&png_chunk(b"IDAT", &idat));
    png.extend_from_slice(&png_chunk(b"IEND", b""));
    let t = Instant::now();
    let verdict = run(&png);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    match verdict {
        Verdict::Keep(d) => {
            assert_bare(&d);
            assert!(d.data.len() < 200);
        }
        Verdict::Remove { reason } => assert!(!reason.contains("converter failed"), "{reason}"),
        Verdict::Quarantine { reason } => panic!("{reason}"),
    }
}

/// Finds a program in the usual places; SKIPs loudly when it is missing (fails instead with
/// `MUGAIKA_REQUIRE_TOOLS=1`).
fn tool(name: &str, package: &str) -> Option<PathBuf> {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    let msg = format!("{name} is not installed (Debian package {package})");
    assert!(
        std::env::var("MUGAIKA_REQUIRE_TOOLS").as_deref() != Ok("1"),
        "{msg} (MUGAIKA_REQUIRE_TOOLS=1)"
    );
    eprintln!("\n******** SKIP: {msg} ********\n");
    None
}

#[test]
fn outputs_open_in_independent_readers() {
    // libjpeg-turbo and libpng's checker, not the Rust crates that wrote the files.
    let (Some(djpeg), Some(pngcheck)) = (
        tool("djpeg", "libjpeg-turbo-progs"),
        tool("pngcheck", "pngcheck"),
    ) else {
        return;
    };
    let rgba = DynamicImage::ImageRgba8(RgbaImage::from_fn(50, 30, |x, y| {
        Rgba([x as u8 * 5, y as u8 * 8, 99, 128 + x as u8])
    }));
    let inputs = [
        phone_photo(64, 48, 6),
        png_insert(
            &encode(&rgba, ImageFormat::Png),
            &[png_chunk(b"tEXt", b"Comment\0x")],
        ),
        gif_js_polyglot(),
        encode(&rgba, ImageFormat::Bmp),
        encode(&rgba, ImageFormat::Tiff),
        encode(&rgba, ImageFormat::WebP),
        encode(&DynamicImage::ImageRgb8(picture(40, 40)), ImageFormat::Gif),
        encode(
            &DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(9, 9, image::Luma([999]))),
            ImageFormat::Png,
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, data) in inputs.iter().enumerate() {
        let d = kept(data);
        let jpeg = d.content_type == "image/jpeg";
        let path = dir
            .path()
            .join(format!("{i}.{}", if jpeg { "jpg" } else { "png" }));
        std::fs::write(&path, &d.data).unwrap();
        let out = if jpeg {
            std::process::Command::new(&djpeg)
                .arg("-outfile")
                .arg("/dev/null")
                .arg(&path)
                .output()
        } else {
            std::process::Command::new(&pngcheck).arg(&path).output()
        }
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "input {i}: {text}");
        if jpeg {
            assert!(text.trim().is_empty(), "input {i}: djpeg warned: {text}");
        } else {
            assert!(text.starts_with("OK:"), "input {i}: {text}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Corpora

fn require_corpora() -> bool {
    std::env::var("MUGAIKA_REQUIRE_CORPORA").is_ok_and(|v| v == "1")
}

fn corpora_dir() -> PathBuf {
    std::env::var_os("MUGAIKA_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpora")))
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Binary leaves of a parsed message, nested messages included.
fn binary_parts(msg: &mail_parser::Message, out: &mut Vec<Vec<u8>>, depth: usize) {
    use mail_parser::PartType;
    for part in &msg.parts {
        match &part.body {
            PartType::Binary(b) | PartType::InlineBinary(b) => out.push(b.to_vec()),
            PartType::Message(m) if depth < 8 => binary_parts(m, out, depth + 1),
            _ => {}
        }
    }
}

#[test]
fn corpus_images_reencoded() {
    let root = corpora_dir();
    let mail_corpora = [
        "apache-james-mime4j",
        "go-enmime",
        "joruri-mail-jp",
        "mimekit-testdata",
        "node-mailparser",
        "noxxi-mime-is-broken",
        "php-mime-mail-parser",
        "postal-mime",
        "ruby-mail-gem",
        "sisimai-set-of-emails",
        "stalwart-mail-parser",
    ];
    let mut files = Vec::new();
    for c in mail_corpora {
        files_under(&root.join(c), &mut files);
    }
    if files.is_empty() {
        let msg = format!("corpora missing under {}", root.display());
        assert!(!require_corpora(), "{msg} (MUGAIKA_REQUIRE_CORPORA=1)");
        eprintln!("\n******** SKIP corpus_images_reencoded: {msg} ********\n");
        return;
    }
    let parser = mail_parser::MessageParser::default();
    let mut images: Vec<(String, Vec<u8>)> = Vec::new();
    for path in &files {
        let Ok(raw) = std::fs::read(path) else {
            continue;
        };
        let name = path
            .strip_prefix(&root)
            .unwrap_or(path)
            .display()
            .to_string();
        // Image files stored as such (ruby-mail-gem fixtures, go-enmime's fake.png).
        if mugaika::sanitise::sniff::sniff(&raw)
            .is_some_and(|d| d.category == mugaika::sanitise::sniff::Category::Image)
        {
            images.push((name.clone(), raw.clone()));
            continue;
        }
        if raw.len() > 20 << 20 || name.ends_with(".json") || name.ends_with(".xml") {
            continue;
        }
        let Some(msg) = parser.parse(&raw) else {
            continue;
        };
        let mut parts = Vec::new();
        binary_parts(&msg, &mut parts, 0);
        for (i, p) in parts.into_iter().enumerate() {
            if mugaika::sanitise::sniff::sniff(&p)
                .is_some_and(|d| d.category == mugaika::sanitise::sniff::Category::Image)
            {
                images.push((format!("{name} part {i}"), p));
            }
        }
    }
    let (mut kept_n, mut removed_n) = (0, 0);
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for (name, data) in &images {
        let kind = mugaika::sanitise::sniff::sniff(data).map_or("?", |d| d.name);
        *kinds.entry(kind.to_string()).or_default() += 1;
        match run(data) {
            Verdict::Keep(d) => {
                kept_n += 1;
                assert_bare(&d);
                let out = image::load_from_memory(&d.data).unwrap();
                let src = image::load_from_memory(data);
                if let Ok(src) = src {
                    let (w, h) = src.dimensions();
                    let (ow, oh) = out.dimensions();
                    assert!(
                        (ow, oh) == (w, h) || (ow, oh) == (h, w),
                        "{name}: size changed"
                    );
                }
            }
            Verdict::Remove { reason } => {
                removed_n += 1;
                assert!(!reason.contains("converter failed"), "{name}: panic");
                eprintln!("removed {name}: {reason}");
            }
            Verdict::Quarantine { reason } => panic!("{name}: quarantine {reason}"),
        }
    }
    eprintln!(
        "corpus images: {} found in {} files, {kept_n} re-encoded, {removed_n} removed, by type {kinds:?}",
        images.len(),
        files.len()
    );
    assert!(images.len() >= 20, "only {} images found", images.len());
    assert!(kept_n * 10 >= images.len() * 8, "too many images removed");
}

// ---------------------------------------------------------------------------------------------
// Benchmark

/// A photo-like picture: smooth gradients with noise (JPEG-typical content).
fn photo(w: u32, h: u32) -> RgbImage {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    RgbImage::from_fn(w, h, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let n = (seed % 24) as u32;
        Rgb([
            ((x * 200 / w) + n) as u8,
            ((y * 200 / h) + n) as u8,
            (((x + y) * 100 / (w + h)) + n) as u8,
        ])
    })
}

/// A screenshot-like picture: flat areas and text-like strokes (PNG-typical content).
fn screenshot(w: u32, h: u32) -> RgbaImage {
    RgbaImage::from_fn(w, h, |x, y| {
        if (y / 18) % 2 == 0 && (x / 3 + y) % 7 < 2 && x % 400 < 300 {
            Rgba([20, 20, 20, 255])
        } else if y < 60 {
            Rgba([40, 90, 160, 255])
        } else {
            Rgba([250, 250, 250, 255])
        }
    })
}

/// A size line of /proc/self/status (`VmRSS:`, `VmHWM:`), in MB.
fn rss_mb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

#[test]
#[ignore = "benchmark: cargo test --release --test cdr_image -- --ignored --nocapture"]
fn bench_image_throughput() {
    let cases: Vec<(&str, Vec<u8>, u64)> = vec![
        (
            "JPEG photo 4000x3000 (with EXIF)",
            {
                let jpg = encode(
                    &DynamicImage::ImageRgb8(photo(4000, 3000)),
                    ImageFormat::Jpeg,
                );
                let mut exif = b"Exif\0\0".to_vec();
                exif.extend_from_slice(&exif_tiff(6));
                let mut out = jpg[..2].to_vec();
                out.extend_from_slice(&jpeg_segment(0xE1, &exif));
                out.extend_from_slice(&jpg[2..]);
                out
            },
            12_000_000,
        ),
        (
            "JPEG photo 1600x1200",
            encode(
                &DynamicImage::ImageRgb8(photo(1600, 1200)),
                ImageFormat::Jpeg,
            ),
            1_920_000,
        ),
        (
            "PNG screenshot 1920x1080 RGBA",
            encode(
                &DynamicImage::ImageRgba8(screenshot(1920, 1080)),
                ImageFormat::Png,
            ),
            2_073_600,
        ),
        (
            "PNG photo 1600x1200 RGB",
            encode(
                &DynamicImage::ImageRgb8(photo(1600, 1200)),
                ImageFormat::Png,
            ),
            1_920_000,
        ),
        (
            "GIF 800x600",
            encode(
                &DynamicImage::ImageRgba8(screenshot(800, 600)),
                ImageFormat::Gif,
            ),
            480_000,
        ),
        (
            "PNG 6300x6300 RGBA (at the pixel limit)",
            encode(
                &DynamicImage::ImageRgba8(screenshot(6300, 6300)),
                ImageFormat::Png,
            ),
            39_690_000,
        ),
        (
            "BMP 1600x1200 -> PNG",
            encode(
                &DynamicImage::ImageRgb8(photo(1600, 1200)),
                ImageFormat::Bmp,
            ),
            1_920_000,
        ),
    ];
    let input_rss = rss_mb("VmRSS:");
    for (label, data, pixels) in &cases {
        let rounds = (40_000_000 / pixels).clamp(2, 20);
        // Resets the peak (VmHWM) to the current RSS (Linux 4.0+), so that the peak printed is
        // the converter's, not the input generation's.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let before = rss_mb("VmRSS:");
        let t = Instant::now();
        let mut out_len = 0;
        for _ in 0..rounds {
            let d = kept(data);
            out_len = d.data.len();
        }
        let secs = t.elapsed().as_secs_f64() / rounds as f64;
        println!(
            "{label:40} in {:>9} B out {:>9} B {:8.1} ms {:7.1} MB/s in {:6.1} Mpixel/s \
             peak +{} MB",
            data.len(),
            out_len,
            secs * 1e3,
            data.len() as f64 / secs / 1e6,
            *pixels as f64 / secs / 1e6,
            rss_mb("VmHWM:").saturating_sub(before)
        );
    }
    println!("(inputs held: {input_rss} MB resident before the runs)");
}
