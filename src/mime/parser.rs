//! The parser state machine. (Interface fixed; implementation in progress.)

use super::{Limits, Sink, Summary};

/// A push-model MIME parser. Create one per message, [`feed`](Parser::feed) it chunks, then
/// [`finish`](Parser::finish) it.
pub struct Parser {
    limits: Limits,
    summary: Summary,
}

impl Parser {
    pub fn new(limits: Limits) -> Parser {
        Parser {
            limits,
            summary: Summary::default(),
        }
    }

    /// Feeds the next chunk of the message (any size, even empty).
    pub fn feed<S: Sink>(&mut self, chunk: &[u8], sink: &mut S) {
        let _ = (sink, self.limits);
        self.summary.bytes += chunk.len() as u64;
    }

    /// Ends the message: flushes buffered data, closes every open part.
    pub fn finish<S: Sink>(self, sink: &mut S) -> Summary {
        let _ = sink;
        self.summary
    }
}
