//! A spillable UTF-8 text buffer: the clean body text lives here between sanitising and rebuild.
//!
//! A message may carry a 60 MB text body, and the relay sanitises many messages at once, so the
//! text cannot simply be a `String`. [`TextBuffer`] keeps text in memory up to a limit
//! (`sanitize.memory_buffer`) and past it moves everything to an anonymous temporary file
//! (unlinked at creation, so nothing is left behind even after a crash). Rebuild reads it back as
//! often as it needs ([`TextBuffer::reader`] always starts at the beginning: a pre-scan to
//! choose the transfer encoding, then the write), and the verifier compares a short head of it
//! ([`TextBuffer::prefix`]) without touching the file.
//!
//! The content is always valid UTF-8: it is only ever extended with `&str`, and when a spilled
//! buffer is appended to another its bytes are re-checked at chunk edges.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

/// Bytes of the beginning of the text kept in memory even after a spill, for
/// [`TextBuffer::prefix`].
pub const HEAD_KEEP: usize = 16 * 1024;

/// Pending writes to the spill file are batched up to this size.
const WRITE_BATCH: usize = 64 * 1024;

/// UTF-8 text in memory up to a limit, then in an anonymous temporary file.
#[derive(Debug)]
pub struct TextBuffer {
    mem_limit: usize,
    temp_dir: Option<PathBuf>,
    /// The whole text while not spilled; empty after a spill.
    mem: String,
    /// The first [`HEAD_KEEP`] bytes (at a char boundary), kept after a spill.
    head: String,
    spill: Option<Spill>,
    len: u64,
    last: Option<char>,
}

#[derive(Debug)]
struct Spill {
    file: File,
    /// Text not yet written to `file`.
    pending: Vec<u8>,
}

impl Default for TextBuffer {
    fn default() -> Self {
        TextBuffer::new(4 << 20, None)
    }
}

impl TextBuffer {
    /// An empty buffer that keeps up to `mem_limit` bytes in memory and spills to an anonymous
    /// file in `temp_dir` (or the system temporary directory) past it.
    pub fn new(mem_limit: usize, temp_dir: Option<PathBuf>) -> TextBuffer {
        TextBuffer {
            mem_limit,
            temp_dir,
            mem: String::new(),
            head: String::new(),
            spill: None,
            len: 0,
            last: None,
        }
    }

    /// A new empty buffer with the same limit and spill directory.
    pub fn sibling(&self) -> TextBuffer {
        TextBuffer::new(self.mem_limit, self.temp_dir.clone())
    }

    /// Length of the text in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the text went to the spill file.
    pub fn is_spilled(&self) -> bool {
        self.spill.is_some()
    }

    /// The last character of the text, if any.
    pub fn last_char(&self) -> Option<char> {
        self.last
    }

    /// Appends text; spills to the temporary file when the memory limit would be passed.
    pub fn push_str(&mut self, s: &str) -> io::Result<()> {
        if s.is_empty() {
            return Ok(());
        }
        self.len += s.len() as u64;
        self.last = s.chars().next_back();
        if self.spill.is_none() {
            if self.mem.len().saturating_add(s.len()) <= self.mem_limit {
                self.mem.push_str(s);
                return Ok(());
            }
            self.start_spill()?;
        }
        self.push_head(s);
        if let Some(sp) = self.spill.as_mut() {
            sp.pending.extend_from_slice(s.as_bytes());
            if sp.pending.len() >= WRITE_BATCH {
                sp.flush()?;
            }
        }
        Ok(())
    }

    /// Appends a single character.
    pub fn push(&mut self, c: char) -> io::Result<()> {
        let mut b = [0u8; 4];
        self.push_str(c.encode_utf8(&mut b))
    }

    /// Appends all of `other`. When `self` is empty this takes `other` over without copying.
    pub fn append(&mut self, mut other: TextBuffer) -> io::Result<()> {
        if other.is_empty() {
            return Ok(());
        }
        if self.is_empty() {
            // Keep our own limits, take the content (and the spill file, if any).
            let (limit, dir) = (self.mem_limit, self.temp_dir.take());
            *self = other;
            self.mem_limit = limit;
            self.temp_dir = dir;
            return Ok(());
        }
        if other.spill.is_none() {
            let mem = std::mem::take(&mut other.mem);
            return self.push_str(&mem);
        }
        let mut reader = other.reader()?;
        let mut buf = vec![0u8; WRITE_BATCH];
        let mut carry: Vec<u8> = Vec::new();
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            carry.extend_from_slice(&buf[..n]);
            let valid = match std::str::from_utf8(&carry) {
                Ok(_) => carry.len(),
                Err(e) => e.valid_up_to(),
            };
            if let Ok(s) = std::str::from_utf8(&carry[..valid]) {
                self.push_str(s)?;
            }
            carry.drain(..valid);
            if carry.len() > 4 {
                // Never happens for our own files; refuse rather than carry garbage along.
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "spill file is not UTF-8",
                ));
            }
        }
        if !carry.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "spill file ends inside a UTF-8 character",
            ));
        }
        Ok(())
    }

    /// A reader over the whole text from its beginning. May be called any number of times;
    /// the buffer can be extended again afterwards.
    pub fn reader(&mut self) -> io::Result<BufferReader<'_>> {
        match self.spill.as_mut() {
            None => Ok(BufferReader::Mem(self.mem.as_bytes())),
            Some(sp) => {
                sp.flush()?;
                sp.file.seek(SeekFrom::Start(0))?;
                Ok(BufferReader::File((&mut sp.file).take(self.len)))
            }
        }
    }

    /// The first `n` characters of the text, as far as they are kept in memory (all of them
    /// while not spilled, else at least the first [`HEAD_KEEP`] bytes' worth).
    pub fn prefix(&self, n: usize) -> &str {
        let s = if self.spill.is_none() {
            self.mem.as_str()
        } else {
            self.head.as_str()
        };
        match s.char_indices().nth(n) {
            Some((i, _)) => &s[..i],
            None => s,
        }
    }

    /// The whole text as a `String`, for tests and small buffers. Reads the spill file.
    pub fn to_string_lossy(&mut self) -> io::Result<String> {
        let mut v = Vec::new();
        self.reader()?.read_to_end(&mut v)?;
        Ok(String::from_utf8_lossy(&v).into_owned())
    }

    fn start_spill(&mut self) -> io::Result<()> {
        let file = match &self.temp_dir {
            Some(d) => tempfile::tempfile_in(d)?,
            None => tempfile::tempfile()?,
        };
        let mem = std::mem::take(&mut self.mem);
        let mut sp = Spill {
            file,
            pending: Vec::with_capacity(WRITE_BATCH),
        };
        sp.file.write_all(mem.as_bytes())?;
        self.head.clear();
        self.push_head(&mem);
        self.spill = Some(sp);
        Ok(())
    }

    fn push_head(&mut self, s: &str) {
        let room = HEAD_KEEP.saturating_sub(self.head.len());
        if room == 0 {
            return;
        }
        let mut end = room.min(s.len());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.head.push_str(&s[..end]);
    }
}

impl Spill {
    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.file.seek(SeekFrom::End(0))?;
            self.file.write_all(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }
}

/// Reads a [`TextBuffer`] from the beginning.
#[derive(Debug)]
pub enum BufferReader<'a> {
    Mem(&'a [u8]),
    File(io::Take<&'a mut File>),
}

impl Read for BufferReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BufferReader::Mem(m) => m.read(buf),
            BufferReader::File(f) => f.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(b: &mut TextBuffer) -> String {
        let mut s = String::new();
        b.reader().unwrap().read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn stays_in_memory_under_the_limit() {
        let mut b = TextBuffer::new(100, None);
        assert!(b.is_empty());
        b.push_str("こんにちは\n").unwrap();
        b.push('x').unwrap();
        assert!(!b.is_spilled());
        assert_eq!(b.len(), "こんにちは\nx".len() as u64);
        assert_eq!(read_all(&mut b), "こんにちは\nx");
        assert_eq!(b.prefix(2), "こん");
        assert_eq!(b.prefix(100), "こんにちは\nx");
        assert_eq!(b.last_char(), Some('x'));
    }

    #[test]
    fn spills_past_the_limit_and_reads_back_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = TextBuffer::new(64, Some(dir.path().to_path_buf()));
        let mut expect = String::new();
        for i in 0..10_000 {
            let line = format!("{i} 行目のテキスト\n");
            b.push_str(&line).unwrap();
            expect.push_str(&line);
        }
        assert!(b.is_spilled());
        assert_eq!(b.len(), expect.len() as u64);
        assert_eq!(read_all(&mut b), expect);
        // A second reader starts from the beginning again.
        assert_eq!(read_all(&mut b), expect);
        // The buffer can grow after being read.
        b.push_str("end\n").unwrap();
        expect.push_str("end\n");
        assert_eq!(read_all(&mut b), expect);
        assert_eq!(b.prefix(5), "0 行目の");
        let head = b.prefix(usize::MAX);
        assert!(head.len() <= HEAD_KEEP && head.len() > HEAD_KEEP - 4);
        assert!(expect.starts_with(head));
        // The anonymous file leaves nothing in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn memory_is_bounded_while_spilled() {
        let mut b = TextBuffer::new(1024, None);
        let chunk = "あ".repeat(1000);
        for _ in 0..1000 {
            b.push_str(&chunk).unwrap();
        }
        assert!(b.is_spilled());
        assert!(b.mem.capacity() == 0 || b.mem.is_empty());
        assert!(b.spill.as_ref().unwrap().pending.len() < WRITE_BATCH + chunk.len());
        assert!(b.head.len() <= HEAD_KEEP);
        assert_eq!(b.len(), 3_000_000);
    }

    #[test]
    fn append_takes_over_moves_and_copies() {
        // Into an empty buffer: taken over.
        let mut a = TextBuffer::new(16, None);
        let mut big = TextBuffer::new(16, None);
        big.push_str(&"漢字".repeat(100)).unwrap();
        assert!(big.is_spilled());
        a.append(big).unwrap();
        assert_eq!(read_all(&mut a), "漢字".repeat(100));

        // A spilled buffer into a non-empty one: copied at chunk edges that split characters.
        let mut c = TextBuffer::new(1 << 20, None);
        c.push_str("head\n").unwrap();
        let mut d = TextBuffer::new(10, None);
        let text = "ｱ漢😀".repeat(40_000);
        d.push_str(&text).unwrap();
        c.append(d).unwrap();
        assert_eq!(read_all(&mut c), format!("head\n{text}"));

        // An in-memory buffer: plain push.
        let mut e = TextBuffer::new(100, None);
        e.push_str("a").unwrap();
        let mut f = TextBuffer::new(100, None);
        f.push_str("b").unwrap();
        e.append(f).unwrap();
        e.append(TextBuffer::new(1, None)).unwrap();
        assert_eq!(read_all(&mut e), "ab");
        assert_eq!(e.last_char(), Some('b'));
    }
}
