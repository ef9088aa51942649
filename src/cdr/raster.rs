//! PDF rasterising (`pdf = "rasterize"`): every page rendered to pixels and the PDF rebuilt from
//! those pixels alone, one JPEG image per page and nothing else (no text, fonts, links, forms,
//! actions or scripts survive, because nothing of the input is copied but its look).
//!
//! The renderer (hayro, pure Rust) is trusted less than the rest of the pipeline: it cannot be
//! interrupted, and a hostile page can make it allocate a lot or run for a long time. So it
//! runs in a child process, the mugaika binary re-executed with the hidden
//! `rasterize-worker` subcommand ([`worker_main`]): the PDF goes in on its standard input, the
//! pages come out on its standard output as raw RGB frames ([`MAGIC`], then per page a header
//! and the pixels). The child limits itself (address space and CPU time, `setrlimit`) before it
//! reads a byte; the parent kills it at a wall-clock deadline and reaps it, reads its output
//! through a parser that checks every frame against the limits it asked for (pixels per page,
//! pages), and builds the output PDF itself from the pixels, so a confused or crashed worker
//! can only produce an error, never bytes that reach the recipient. The caller (`cdr::pdf`)
//! hands the renderer the already disarmed PDF (fenced load, no scripts, empty-password
//! encryption undone) and delivers that disarmed PDF instead on any error here.
//!
//! Japanese documents often name fonts they do not embed (MS-Mincho, MS-Gothic); the renderer's
//! built-in fonts are Latin only, so such text is drawn with a system CJK font when the machine
//! has one ([`CJK_FONTS`]: install fonts-ipafont or fonts-noto-cjk), or is missing otherwise.
//!
//! The binary to run is set once per process by [`set_worker`] (main passes its own path,
//! integration tests pass `CARGO_BIN_EXE_mugaika`); without one, rasterising is not available
//! and the PDF is disarmed. The resolution and page cap come from `sanitize.rasterize_dpi` and
//! `sanitize.max_rasterize_pages` through [`Limits`], so a `[[policy]]` rule or a reload can
//! change them.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use lopdf::{dictionary, Document, Object, Stream};

use super::Limits;

/// The hidden subcommand that runs the renderer.
pub const WORKER_COMMAND: &str = "rasterize-worker";
/// First octets of the worker's output.
pub const MAGIC: &[u8; 8] = b"MGKRAST1";
/// Longest side of a rendered page, in pixels (the renderer's canvas is 16-bit).
pub const MAX_SIDE: u32 = 20_000;
/// Largest page side written in the output, in points (200 inches, the PDF limit that every
/// reader honours); larger pages are scaled down to it, keeping their shape.
const MAX_PAGE_POINTS: f32 = 14_400.0;
/// Largest PDF the worker reads from its input.
const MAX_INPUT: u64 = 512 << 20;
/// Wall-clock budget of one rasterising when the message has no deadline.
const DEFAULT_TIME: Duration = Duration::from_secs(60);
/// Address space of the worker beyond its page buffers: the binary, the PDF, fonts, caches,
/// decoded images. (Measured: a 25 M pixel page peaks at 116 MB resident, 150 MB of address
/// space suffice; the rest is room for the images and fonts of real documents.)
const BASE_MEMORY: u64 = 512 << 20;
/// Octets of worker memory per pixel of the largest page: the RGBA canvas (4), the renderer's
/// coverage and strip buffers, the RGB row buffer, with room to spare.
const MEMORY_PER_PIXEL: u64 = 12;

/// Fonts for CJK text that a PDF does not embed (common in Japanese documents that name
/// MS-Mincho or MS-Gothic without including them): the first of these present on the machine
/// (Debian's fonts-ipaexfont, fonts-ipafont, fonts-noto-cjk) is used; without one such text is
/// drawn with a Latin font, so it is missing from the page images.
pub const CJK_FONTS: &[&str] = &[
    "/usr/share/fonts/opentype/ipaexfont-mincho/ipaexm.ttf",
    "/usr/share/fonts/opentype/ipafont-mincho/ipam.ttf",
    "/usr/share/fonts/truetype/fonts-japanese-mincho.ttf",
    "/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf",
    "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf",
    "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
];
/// Largest font file read for [`CJK_FONTS`].
const MAX_FONT_FILE: u64 = 64 << 20;

static WORKER: RwLock<Option<PathBuf>> = RwLock::new(None);

/// Sets the binary re-executed as the rendering worker (normally the running mugaika itself).
pub fn set_worker(path: PathBuf) {
    if let Ok(mut w) = WORKER.write() {
        *w = Some(path);
    }
}

/// The binary set by [`set_worker`], if any.
pub fn worker() -> Option<PathBuf> {
    WORKER.read().ok().and_then(|w| w.clone())
}

/// Why a PDF was not rasterised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RasterError {
    #[error("rasterising is not available in this process (no worker binary)")]
    NoWorker,
    #[error("{pages} pages, more than max_rasterize_pages ({max})")]
    TooManyPages { pages: usize, max: usize },
    #[error("the renderer did not finish within {0} ms")]
    Timeout(u64),
    #[error("the renderer could not be started: {0}")]
    Spawn(String),
    #[error("the renderer failed: {0}")]
    Worker(String),
    #[error("the renderer's output is malformed: {0}")]
    Garbage(String),
    #[error("the rasterised PDF would be larger than {0} octets")]
    TooLarge(usize),
    #[error("the rasterised PDF could not be written: {0}")]
    Write(String),
    #[error("sanitising deadline reached")]
    Deadline,
}

/// How to rasterise one PDF.
#[derive(Debug, Clone)]
pub struct Options {
    /// The binary run with [`WORKER_COMMAND`].
    pub worker: PathBuf,
    /// Resolution of the rendered pages.
    pub dpi: u32,
    /// Longer PDFs are refused ([`RasterError::TooManyPages`]).
    pub max_pages: usize,
    /// Most pixels of one page; larger pages are rendered at a lower resolution.
    pub max_pixels: u64,
    /// Quality of the page images.
    pub jpeg_quality: u8,
    /// Largest output PDF.
    pub max_output: usize,
    /// When the worker is killed.
    pub deadline: Instant,
    /// Test only: the worker sleeps instead of rendering (checks the deadline and the kill).
    #[doc(hidden)]
    pub test_hang: bool,
}

impl Options {
    /// Options from the worker binary ([`set_worker`]) and `limits`.
    /// The worker gets three quarters of the time left to the message, so that a timeout still
    /// leaves time to disarm instead.
    pub fn from_limits(limits: &Limits) -> Result<Options, RasterError> {
        let worker = worker().ok_or(RasterError::NoWorker)?;
        let now = Instant::now();
        let budget = match limits.deadline {
            Some(d) => d
                .saturating_duration_since(now)
                .mul_f64(0.75)
                .min(DEFAULT_TIME),
            None => DEFAULT_TIME,
        };
        if budget.is_zero() {
            return Err(RasterError::Deadline);
        }
        Ok(Options {
            worker,
            dpi: limits.rasterize_dpi.clamp(1, 1200),
            max_pages: limits.max_rasterize_pages,
            max_pixels: limits.max_pixels,
            jpeg_quality: limits.jpeg_quality.clamp(1, 100),
            max_output: limits.max_size,
            deadline: now + budget,
            test_hang: false,
        })
    }
}

/// A rasterised PDF.
#[derive(Debug, Clone)]
pub struct Rasterised {
    /// The rebuilt, image-only PDF.
    pub data: Vec<u8>,
    /// Pages rendered.
    pub pages: usize,
    /// Pages rendered below the configured resolution (pixel cap or side limit).
    pub reduced: usize,
}

/// One page as the worker sent it.
struct RawPage {
    width: u32,
    height: u32,
    /// Visible page size (crop box, rotation applied) in thousandths of a point.
    width_mpt: u32,
    height_mpt: u32,
    /// Row-major RGB, 3 octets per pixel.
    rgb: Vec<u8>,
}

/// A page ready to be written: its JPEG and size.
struct PageImage {
    width: u32,
    height: u32,
    width_pt: f32,
    height_pt: f32,
    jpeg: Vec<u8>,
}

/// Renders `pdf` in a worker process and rebuilds it from the page images.
pub fn rasterize(pdf: &[u8], opts: &Options) -> Result<Rasterised, RasterError> {
    let start = Instant::now();
    if start >= opts.deadline {
        return Err(RasterError::Deadline);
    }
    let time = opts.deadline.saturating_duration_since(start);
    let mut cmd = Command::new(&opts.worker);
    cmd.arg(WORKER_COMMAND)
        .arg("--dpi")
        .arg(opts.dpi.to_string())
        .arg("--max-pages")
        .arg(opts.max_pages.to_string())
        .arg("--max-pixels")
        .arg(opts.max_pixels.to_string())
        .arg("--memory-limit")
        .arg(worker_memory(opts.max_pixels).to_string())
        .arg("--cpu-seconds")
        .arg((time.as_secs() + 1).to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if opts.test_hang {
        cmd.arg("--test-hang");
    }
    // The watchdog owns the child: it kills it at the deadline (which also unblocks the
    // writes and reads below: broken pipe, end of file) or when told to stop, and reaps it.
    // It is started first, so that no child can exist without it.
    let (child_tx, child_rx) = mpsc::channel::<Child>();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let deadline = opts.deadline;
    let watchdog = std::thread::Builder::new()
        .name("mugaika-raster-watchdog".into())
        .spawn(move || match child_rx.recv() {
            Ok(child) => Some(watch(child, deadline, stop_rx)),
            Err(_) => None,
        })
        .map_err(|e| RasterError::Spawn(format!("no watchdog thread: {e}")))?;
    let spawned = cmd.spawn().map(|mut child| {
        let pipes = (child.stdin.take(), child.stdout.take());
        // The receiver lives until it has received: this cannot fail.
        let _ = child_tx.send(child);
        pipes
    });
    drop(child_tx);
    let (stdin, stdout) = match spawned {
        Ok((Some(i), Some(o))) => (i, o),
        other => {
            let _ = stop_tx.send(());
            let _ = watchdog.join();
            return Err(RasterError::Spawn(match other {
                Err(e) => format!("{}: {e}", opts.worker.display()),
                Ok(_) => "no pipes to the worker".into(),
            }));
        }
    };
    let result = exchange(pdf, stdin, stdout, opts);
    let _ = stop_tx.send(());
    let watched = watchdog
        .join()
        .ok()
        .flatten()
        .unwrap_or(Watched::Failed("watchdog failed".into()));
    let pages = match (result, watched) {
        (_, Watched::TimedOut) => {
            return Err(RasterError::Timeout(
                (time.as_secs_f64() * 1000.0).round() as u64
            ))
        }
        (_, Watched::Failed(why)) => return Err(RasterError::Worker(why)),
        (Err(RasterError::Garbage(_) | RasterError::Worker(_)), Watched::Exited(status))
            if !status.success() =>
        {
            // The worker's own end explains a truncated stream better than the parser.
            return Err(RasterError::Worker(describe(status)));
        }
        (Err(e), _) => return Err(e),
        (Ok(p), _) => p,
    };
    let reduced = pages.iter().filter(|p| p.reduced).count();
    let images: Vec<PageImage> = pages.into_iter().map(|p| p.image).collect();
    let n = images.len();
    let data = build_pdf(&images, opts.max_output)?;
    Ok(Rasterised {
        data,
        pages: n,
        reduced,
    })
}

/// How the worker ended.
enum Watched {
    Exited(ExitStatus),
    /// Killed (or asked to stop) before it ended.
    Stopped,
    TimedOut,
    Failed(String),
}

fn watch(mut child: Child, deadline: Instant, stop: mpsc::Receiver<()>) -> Watched {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Watched::Exited(status),
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Watched::Failed(e.to_string());
            }
        }
        let now = Instant::now();
        if now >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Watched::TimedOut;
        }
        let tick = deadline
            .saturating_duration_since(now)
            .min(Duration::from_millis(20));
        match stop.recv_timeout(tick) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                // The reading is over: the worker has nothing more to say (or said something
                // wrong). A worker that finished gets a moment to exit by itself.
                let grace = Instant::now() + Duration::from_millis(200);
                loop {
                    match child.try_wait() {
                        Ok(Some(status)) => return Watched::Exited(status),
                        Ok(None) if Instant::now() < grace.min(deadline) => {
                            std::thread::sleep(Duration::from_millis(5))
                        }
                        _ => break,
                    }
                }
                let _ = child.kill();
                let _ = child.wait();
                return Watched::Stopped;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("worker exited with status {c}"),
        (None, Some(9)) => "worker killed (out of CPU time or memory)".into(),
        (None, Some(s)) => format!("worker ended by signal {s} (crash or resource limit)"),
        _ => "worker ended abnormally".into(),
    }
}

/// Address space granted to the worker.
fn worker_memory(max_pixels: u64) -> u64 {
    BASE_MEMORY
        .saturating_add(max_pixels.saturating_mul(MEMORY_PER_PIXEL))
        .min(16 << 30)
}

struct EncodedPage {
    image: PageImage,
    reduced: bool,
}

/// Sends the PDF, then reads and encodes page after page (one raw page in memory at a time).
fn exchange(
    pdf: &[u8],
    mut stdin: std::process::ChildStdin,
    stdout: std::process::ChildStdout,
    opts: &Options,
) -> Result<Vec<EncodedPage>, RasterError> {
    // The worker reads its whole input before it writes, so writing first cannot deadlock; a
    // worker that never reads is killed at the deadline and the write fails.
    let sent = stdin.write_all(pdf).and_then(|()| stdin.flush());
    drop(stdin);
    if let Err(e) = sent {
        return Err(RasterError::Worker(format!("input not accepted: {e}")));
    }
    let mut r = BufReader::with_capacity(1 << 16, stdout);
    let mut magic = [0u8; 8];
    read_exact(&mut r, &mut magic)?;
    if &magic != MAGIC {
        return Err(RasterError::Garbage("bad header".into()));
    }
    let mut out = Vec::new();
    let mut total = 0usize;
    let count = read_u32(&mut r)? as usize;
    if count > opts.max_pages {
        return Err(RasterError::TooManyPages {
            pages: count,
            max: opts.max_pages,
        });
    }
    let full = opts.dpi as f64 / 72.0;
    loop {
        let mut tag = [0u8; 1];
        read_exact(&mut r, &mut tag)?;
        match tag[0] {
            b'P' => {}
            b'Z' => break,
            b'E' => {
                let len = read_u32(&mut r)?.min(4096) as usize;
                let mut msg = vec![0u8; len];
                read_exact(&mut r, &mut msg)?;
                let msg = String::from_utf8_lossy(&msg);
                let msg: String = msg.chars().filter(|c| !c.is_control()).take(200).collect();
                return Err(RasterError::Worker(msg));
            }
            t => return Err(RasterError::Garbage(format!("unknown frame {t:#04x}"))),
        }
        if out.len() >= count {
            return Err(RasterError::Garbage("more pages than announced".into()));
        }
        if Instant::now() >= opts.deadline {
            // The watchdog kills the worker at this same instant.
            return Err(RasterError::Garbage("stopped at the deadline".into()));
        }
        let page = read_page(&mut r, opts)?;
        // Pages rendered below the configured resolution are noted for the change line.
        let wanted = (page.width_mpt as f64 / 1000.0) * full;
        let reduced = (page.width as f64) < wanted.floor() - 1.0;
        let image = encode(page, opts.jpeg_quality)?;
        total = total.saturating_add(image.jpeg.len());
        if total > opts.max_output {
            return Err(RasterError::TooLarge(opts.max_output));
        }
        out.push(EncodedPage { image, reduced });
    }
    if out.len() != count || count == 0 {
        return Err(RasterError::Garbage(format!(
            "{} pages received, {count} announced",
            out.len()
        )));
    }
    Ok(out)
}

fn read_exact(r: &mut impl Read, buf: &mut [u8]) -> Result<(), RasterError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => RasterError::Garbage("truncated output".into()),
        _ => RasterError::Garbage(format!("read error: {e}")),
    })
}

fn read_u32(r: &mut impl Read) -> Result<u32, RasterError> {
    let mut b = [0u8; 4];
    read_exact(r, &mut b)?;
    Ok(u32::from_be_bytes(b))
}

/// Reads one page frame after its tag, refusing sizes beyond what was asked for before
/// allocating anything.
fn read_page(r: &mut impl Read, opts: &Options) -> Result<RawPage, RasterError> {
    let width = read_u32(r)?;
    let height = read_u32(r)?;
    let width_mpt = read_u32(r)?;
    let height_mpt = read_u32(r)?;
    let pixels = u64::from(width) * u64::from(height);
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(RasterError::Garbage(format!(
            "page of {width}x{height} pixels"
        )));
    }
    if pixels > opts.max_pixels.max(1) {
        return Err(RasterError::Garbage(format!(
            "page of {pixels} pixels, more than {}",
            opts.max_pixels
        )));
    }
    if width_mpt == 0 || height_mpt == 0 {
        return Err(RasterError::Garbage("page of size zero".into()));
    }
    let len =
        usize::try_from(pixels * 3).map_err(|_| RasterError::Garbage("page too big".into()))?;
    let mut rgb = vec![0u8; len];
    read_exact(r, &mut rgb)?;
    Ok(RawPage {
        width,
        height,
        width_mpt,
        height_mpt,
        rgb,
    })
}

/// Encodes one page as a baseline JPEG (from pixels only: nothing of the input passes).
fn encode(page: RawPage, quality: u8) -> Result<PageImage, RasterError> {
    use image::codecs::jpeg::JpegEncoder;
    use image::{ExtendedColorType, ImageEncoder};
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, quality)
        .write_image(&page.rgb, page.width, page.height, ExtendedColorType::Rgb8)
        .map_err(|e| RasterError::Write(format!("JPEG: {e}")))?;
    let mut width_pt = page.width_mpt as f32 / 1000.0;
    let mut height_pt = page.height_mpt as f32 / 1000.0;
    let longest = width_pt.max(height_pt);
    if longest > MAX_PAGE_POINTS {
        let f = MAX_PAGE_POINTS / longest;
        width_pt = (width_pt * f).max(1.0);
        height_pt = (height_pt * f).max(1.0);
    }
    Ok(PageImage {
        width: page.width,
        height: page.height,
        width_pt,
        height_pt,
        jpeg,
    })
}

/// Writes a PDF of one page per image: a page tree, each page of the original size showing
/// its image over the whole page, and nothing else (no text, annotations, names or actions).
fn build_pdf(pages: &[PageImage], max_output: usize) -> Result<Vec<u8>, RasterError> {
    let mut doc = Document::with_version("1.4");
    let pages_id = doc.new_object_id();
    let mut kids = Vec::with_capacity(pages.len());
    for p in pages {
        let image = Stream::new(
            dictionary! {
                "Type" => "XObject",
                "Subtype" => "Image",
                "Width" => i64::from(p.width),
                "Height" => i64::from(p.height),
                "ColorSpace" => "DeviceRGB",
                "BitsPerComponent" => 8,
                "Filter" => "DCTDecode",
            },
            p.jpeg.clone(),
        )
        .with_compression(false);
        let image_id = doc.add_object(image);
        let (w, h) = (round2(p.width_pt), round2(p.height_pt));
        let content = format!("q {w} 0 0 {h} 0 0 cm /Im0 Do Q\n");
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.into_bytes()));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "MediaBox" => vec![0.into(), 0.into(), Object::Real(w), Object::Real(h)],
            "Resources" => dictionary! {
                "XObject" => dictionary! { "Im0" => image_id },
            },
            "Contents" => content_id,
        });
        kids.push(Object::Reference(page_id));
    }
    let count = i64::try_from(kids.len()).unwrap_or(i64::MAX);
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => count,
        }),
    );
    let catalog_id = doc.add_object(dictionary! {
        "Type" => "Catalog",
        "Pages" => pages_id,
    });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out)
        .map_err(|e| RasterError::Write(e.to_string()))?;
    if out.len() > max_output {
        return Err(RasterError::TooLarge(max_output));
    }
    Ok(out)
}

fn round2(v: f32) -> f32 {
    (v * 100.0).round() / 100.0
}

/// Arguments of the hidden worker subcommand (set by [`rasterize`], not by people).
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    #[arg(long)]
    pub dpi: u32,
    #[arg(long)]
    pub max_pages: usize,
    #[arg(long)]
    pub max_pixels: u64,
    /// Address-space limit of the worker, octets.
    #[arg(long)]
    pub memory_limit: u64,
    /// CPU-time limit of the worker, seconds.
    #[arg(long)]
    pub cpu_seconds: u64,
    /// Test only: sleep instead of working, to exercise the parent's deadline.
    #[arg(long, hide = true)]
    pub test_hang: bool,
}

/// The worker: limits itself, reads a PDF on standard input, writes the frames on standard
/// output. Returns the process exit status (0 also when it reported an error in a frame).
pub fn worker_main(args: &WorkerArgs) -> u8 {
    use rlimit::Resource;
    // Limits first: nothing of the input is touched without them.
    let mem = args.memory_limit.max(64 << 20);
    let cpu = args.cpu_seconds.max(1);
    if Resource::AS.set(mem, mem).is_err() || Resource::CPU.set(cpu, cpu + 1).is_err() {
        return 71;
    }
    if args.test_hang {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    let mut input = Vec::new();
    if io::stdin()
        .lock()
        .take(MAX_INPUT)
        .read_to_end(&mut input)
        .is_err()
    {
        return 66;
    }
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    match render_all(input, args, &mut out) {
        Ok(()) => {}
        Err(Frame::Io) => return 74,
        Err(Frame::Message(msg)) => {
            let msg = msg.as_bytes();
            let len = u32::try_from(msg.len().min(4096)).unwrap_or(0);
            let sent = out
                .write_all(b"E")
                .and_then(|()| out.write_all(&len.to_be_bytes()))
                .and_then(|()| out.write_all(msg.get(..len as usize).unwrap_or_default()));
            if sent.is_err() {
                return 74;
            }
        }
    }
    if out.flush().is_err() {
        return 74;
    }
    0
}

enum Frame {
    /// Standard output is gone (the parent stopped reading): nothing more to say.
    Io,
    /// Told to the parent in an error frame.
    Message(String),
}

impl From<io::Error> for Frame {
    fn from(_: io::Error) -> Frame {
        Frame::Io
    }
}

/// The pixel size of a page of `w_pt` x `h_pt` points at `dpi`, reduced to `max_pixels` and
/// [`MAX_SIDE`] keeping its shape, at least one pixel each way.
pub fn page_pixels(w_pt: f64, h_pt: f64, dpi: u32, max_pixels: u64) -> Option<(u32, u32)> {
    if !(w_pt.is_finite() && h_pt.is_finite() && w_pt > 0.0 && h_pt > 0.0) {
        return None;
    }
    let mut scale = f64::from(dpi.max(1)) / 72.0;
    let area = w_pt * h_pt * scale * scale;
    let cap = max_pixels.max(1) as f64;
    if area > cap {
        scale *= (cap / area).sqrt();
    }
    let side = f64::from(MAX_SIDE);
    let longest = w_pt.max(h_pt) * scale;
    if longest > side {
        scale *= side / longest;
    }
    // Floors keep the product under the cap after rounding.
    let w = (w_pt * scale).floor().clamp(1.0, side) as u32;
    let h = (h_pt * scale).floor().clamp(1.0, side) as u32;
    if u64::from(w) * u64::from(h) > max_pixels.max(1) {
        return None;
    }
    Some((w, h))
}

fn render_all(input: Vec<u8>, args: &WorkerArgs, out: &mut impl Write) -> Result<(), Frame> {
    use hayro::hayro_interpret::util::TransformExt;
    use hayro::hayro_syntax::Pdf;
    use hayro::kurbo::Affine;
    use hayro::vello_cpu::color::palette::css::WHITE;
    use hayro::vello_cpu::{Pixmap, RasterizerSettings, RenderContext, Resources, TargetInit};
    use hayro::{render_into, RenderCache, RenderSettings};

    out.write_all(MAGIC)?;
    let pdf = match Pdf::new(input) {
        Ok(p) => p,
        Err(e) => {
            // No pages announced; the error frame follows.
            out.write_all(&0u32.to_be_bytes())?;
            return Err(Frame::Message(format!("unreadable PDF ({e:?})")));
        }
    };
    let pages = pdf.pages();
    let count = pages.len();
    out.write_all(&u32::try_from(count).unwrap_or(u32::MAX).to_be_bytes())?;
    if count > args.max_pages {
        out.write_all(b"Z")?;
        return Ok(());
    }
    let cache = RenderCache::new();
    let settings = interpreter_settings();
    let render = RenderSettings::default();
    for page in pages.iter() {
        let (w_pt, h_pt) = page.render_dimensions();
        let (w_pt, h_pt) = (f64::from(w_pt), f64::from(h_pt));
        let Some((w, h)) = page_pixels(w_pt, h_pt, args.dpi, args.max_pixels) else {
            return Err(Frame::Message(format!("page of {w_pt}x{h_pt} points")));
        };
        let (w16, h16) = match (u16::try_from(w), u16::try_from(h)) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return Err(Frame::Message("page too large".into())),
        };
        let mut ctx = RenderContext::new(w16, h16);
        let transform = Affine::scale_non_uniform(f64::from(w) / w_pt, f64::from(h) / h_pt)
            * page.initial_transform(true).to_kurbo();
        render_into(page, &cache, &settings, &render, &mut ctx, transform);
        ctx.flush();
        let mut pixmap = Pixmap::new(w16, h16);
        ctx.render_with(
            &mut pixmap,
            &mut Resources::default(),
            RasterizerSettings {
                target_init: TargetInit::Clear(WHITE),
                ..Default::default()
            },
        );
        drop(ctx);
        let mpt = |v: f64| (v * 1000.0).round().clamp(1.0, f64::from(u32::MAX)) as u32;
        out.write_all(b"P")?;
        for v in [w, h, mpt(w_pt), mpt(h_pt)] {
            out.write_all(&v.to_be_bytes())?;
        }
        // Premultiplied RGBA over an opaque white background: alpha is 255 everywhere, so
        // the colour channels are the colours.
        let mut row = Vec::with_capacity(w as usize * 3);
        for line in pixmap.data_as_u8_slice().chunks(w as usize * 4) {
            row.clear();
            for px in line.chunks_exact(4) {
                row.extend_from_slice(px.get(..3).unwrap_or(&[255, 255, 255]));
            }
            out.write_all(&row)?;
        }
    }
    out.write_all(b"Z")?;
    Ok(())
}

/// The renderer's settings: its built-in fonts, and a system CJK font (see [`CJK_FONTS`]) for
/// CJK text whose font is not embedded.
fn interpreter_settings() -> hayro::hayro_interpret::InterpreterSettings {
    use hayro::hayro_interpret::font::{FontData, FontQuery};
    use hayro::hayro_interpret::hayro_cmap::CidFamily;
    use std::sync::{Arc, OnceLock};
    static CJK: OnceLock<Option<(FontData, u32)>> = OnceLock::new();
    let mut settings = hayro::hayro_interpret::InterpreterSettings::default();
    let builtin = settings.font_resolver.clone();
    settings.font_resolver = Arc::new(move |query| {
        let cjk = matches!(query, FontQuery::Fallback(f) if f.character_collection.as_ref()
        .is_some_and(|c| matches!(
            c.family,
            CidFamily::AdobeJapan1 | CidFamily::AdobeGB1 | CidFamily::AdobeCNS1
                | CidFamily::AdobeKorea1
        )));
        let system = cjk
            .then(|| {
                CJK.get_or_init(|| {
                    CJK_FONTS.iter().find_map(|path| {
                        let mut data = Vec::new();
                        std::fs::File::open(path)
                            .and_then(|f| f.take(MAX_FONT_FILE).read_to_end(&mut data))
                            .ok()
                            .filter(|&n| n > 0 && (n as u64) < MAX_FONT_FILE)?;
                        Some((Arc::new(data) as FontData, 0))
                    })
                })
                .clone()
            })
            .flatten();
        system.or_else(|| builtin(query))
    });
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_pixels_follow_dpi_and_caps() {
        // A4 at 100 dpi.
        assert_eq!(
            page_pixels(595.0, 842.0, 100, 25_000_000),
            Some((826, 1169))
        );
        // 200 x 200 inches at 100 dpi is 400 M pixels: reduced to the cap, square kept.
        let (w, h) = page_pixels(14_400.0, 14_400.0, 100, 25_000_000).unwrap();
        assert!(u64::from(w) * u64::from(h) <= 25_000_000);
        assert!(w >= 4_990 && w == h, "{w}x{h}");
        // A very long strip: the side limit applies.
        let (w, h) = page_pixels(10.0, 1_000_000.0, 100, u64::MAX).unwrap();
        assert!(h <= MAX_SIDE && w >= 1, "{w}x{h}");
        assert_eq!(page_pixels(0.0, 10.0, 100, 100), None);
        assert_eq!(page_pixels(f64::NAN, 10.0, 100, 100), None);
        assert_eq!(page_pixels(1e-9, 1e-9, 100, 100), Some((1, 1)));
    }

    fn frame(pages: &[(u32, u32, u32, u32)], announced: u32, end: bool) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&announced.to_be_bytes());
        for &(w, h, wm, hm) in pages {
            v.push(b'P');
            for x in [w, h, wm, hm] {
                v.extend_from_slice(&x.to_be_bytes());
            }
            v.extend(std::iter::repeat_n(200u8, (w * h * 3) as usize));
        }
        if end {
            v.push(b'Z');
        }
        v
    }

    fn opts() -> Options {
        Options {
            worker: PathBuf::from("/nonexistent"),
            dpi: 72,
            max_pages: 5,
            max_pixels: 10_000,
            jpeg_quality: 80,
            max_output: 1 << 20,
            deadline: Instant::now() + Duration::from_secs(30),
            test_hang: false,
        }
    }

    /// Parses a worker's output as `exchange` does, without a process.
    fn parse(bytes: &[u8], o: &Options) -> Result<Vec<EncodedPage>, RasterError> {
        let mut r = bytes;
        let mut magic = [0u8; 8];
        read_exact(&mut r, &mut magic)?;
        if &magic != MAGIC {
            return Err(RasterError::Garbage("bad header".into()));
        }
        let count = read_u32(&mut r)? as usize;
        if count > o.max_pages {
            return Err(RasterError::TooManyPages {
                pages: count,
                max: o.max_pages,
            });
        }
        let mut out = Vec::new();
        loop {
            let mut tag = [0u8; 1];
            read_exact(&mut r, &mut tag)?;
            match tag[0] {
                b'P' => {}
                b'Z' => break,
                _ => return Err(RasterError::Garbage("tag".into())),
            }
            let page = read_page(&mut r, o)?;
            out.push(EncodedPage {
                image: encode(page, o.jpeg_quality)?,
                reduced: false,
            });
        }
        if out.len() != count {
            return Err(RasterError::Garbage("count".into()));
        }
        Ok(out)
    }

    #[test]
    fn frames_are_checked_before_allocation() {
        let o = opts();
        let good = frame(&[(10, 20, 10_000, 20_000), (5, 5, 5_000, 5_000)], 2, true);
        let pages = parse(&good, &o).unwrap();
        assert_eq!(pages.len(), 2);
        // A page bigger than asked for is refused from its header alone.
        let huge = frame(&[(10, 20, 10_000, 20_000)], 1, false);
        let mut huge = huge;
        huge.truncate(13);
        huge.extend_from_slice(&60_000u32.to_be_bytes());
        huge.extend_from_slice(&60_000u32.to_be_bytes());
        assert!(matches!(parse(&huge, &o), Err(RasterError::Garbage(_))));
        // Truncated, wrong magic, too many pages, count mismatch.
        assert!(parse(&good[..good.len() - 30], &o).is_err());
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(parse(&bad, &o).is_err());
        assert_eq!(
            parse(&frame(&[], 9, true), &o).err(),
            Some(RasterError::TooManyPages { pages: 9, max: 5 })
        );
        assert!(parse(&frame(&[(2, 2, 1, 1)], 2, true), &o).is_err());
    }

    #[test]
    fn rebuilt_pdf_holds_only_images() {
        let o = opts();
        let pages = parse(&frame(&[(30, 40, 612_000, 792_000)], 1, true), &o).unwrap();
        let images: Vec<PageImage> = pages.into_iter().map(|p| p.image).collect();
        let pdf = build_pdf(&images, 1 << 20).unwrap();
        let doc = Document::load_mem(&pdf).unwrap();
        assert_eq!(doc.get_pages().len(), 1);
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.contains("/DCTDecode"));
        let page = doc.get_pages().into_values().next().unwrap();
        let media_box: Vec<f32> = doc
            .get_dictionary(page)
            .and_then(|d| d.get(b"MediaBox"))
            .and_then(|m| m.as_array())
            .unwrap()
            .iter()
            .map(|o| o.as_float().unwrap())
            .collect();
        assert_eq!(media_box, [0.0, 0.0, 612.0, 792.0]);
        for bad in [
            "/Font",
            "/JavaScript",
            "/JS",
            "/OpenAction",
            "/Annots",
            "/AA",
        ] {
            assert!(!text.contains(bad), "{bad}");
        }
        assert!(matches!(
            build_pdf(&images, 10),
            Err(RasterError::TooLarge(10))
        ));
    }

    #[test]
    fn no_worker_is_an_error_not_a_panic() {
        let mut o = opts();
        o.worker = PathBuf::from("/nonexistent/mugaika");
        assert!(matches!(
            rasterize(b"%PDF-1.4", &o),
            Err(RasterError::Spawn(_))
        ));
    }
}
