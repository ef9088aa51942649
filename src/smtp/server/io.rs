//! The connection under a session: plain or TLS over the same transport, and a fixed-size
//! input buffer.
//!
//! The input buffer never grows: command lines longer than the limit are skipped by the line
//! splitter and message data is consumed as it arrives, so each session costs a constant amount
//! of memory whatever the client sends.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;

/// The transport of a session; swapped from `Plain` to `Tls` by STARTTLS.
pub enum Conn<IO> {
    Plain(IO),
    Tls(Box<TlsStream<IO>>),
    /// Only during the STARTTLS handshake, or after a failed one.
    Gone,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection closed")
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Conn<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Conn<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Gone => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// A fixed-capacity input buffer: bytes `start..end` of `buf` are unread.
pub struct InBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl InBuf {
    pub fn new(capacity: usize) -> InBuf {
        InBuf {
            buf: vec![0; capacity.max(1024)],
            start: 0,
            end: 0,
        }
    }

    /// The unread bytes.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Drops `n` unread bytes from the front.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Drops everything unread.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Free space to read into, after moving unread bytes to the front if needed. Empty only
    /// when the buffer is full of unread bytes (the callers make sure that never happens).
    pub fn spare(&mut self) -> &mut [u8] {
        if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were read into [`InBuf::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacts_and_never_grows() {
        let mut b = InBuf::new(1024);
        let s = b.spare();
        assert_eq!(s.len(), 1024);
        s[..1024].fill(b'x');
        b.filled(1024);
        assert!(b.spare().is_empty());
        b.consume(1000);
        assert_eq!(b.data().len(), 24);
        assert_eq!(b.spare().len(), 1000);
        b.consume(24);
        assert!(b.is_empty());
        assert_eq!(b.spare().len(), 1024);
    }
}
