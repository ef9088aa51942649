//! The streaming parser must never panic and must give the same events however its input is
//! split: the fuzzer chooses the message, the chunk boundaries and the limits (the defaults, or
//! tiny ones so that every limit is reached often).
//!
//! Besides chunk invariance, the event stream must keep the promises the sanitiser relies on:
//! events strictly nested (every `part_start` ended once, children inside their parent), part
//! indexes increasing in document order, the depth and part-count limits honoured, the summary
//! counting what was reported, and no header value holding a CR or LF.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mugaika::mime::{Limits, Parser, Part, PartEnd, Sink, Summary};
use mugaika_fuzz::{pieces, Choices};

#[derive(Default, PartialEq, Debug)]
struct Events {
    log: Vec<String>,
    body: Vec<u8>,
    /// Open parts: (index, depth).
    #[allow(clippy::type_complexity)]
    open: Vec<(usize, usize)>,
    starts: usize,
    last_index: Option<usize>,
    max_depth: usize,
}

impl Sink for Events {
    fn part_start(&mut self, p: &Part) {
        self.flush();
        assert!(
            self.last_index.is_none_or(|l| p.index > l),
            "part index {} after {:?}",
            p.index,
            self.last_index
        );
        self.last_index = Some(p.index);
        assert_eq!(
            p.parent,
            self.open.last().map(|o| o.0),
            "parent of part {}",
            p.index
        );
        assert_eq!(p.depth, self.open.len(), "depth of part {}", p.index);
        self.max_depth = self.max_depth.max(p.depth);
        for h in &p.headers {
            assert!(
                !h.value.contains(&b'\r') && !h.value.contains(&b'\n'),
                "{h:?}"
            );
        }
        self.open.push((p.index, p.depth));
        self.starts += 1;
        self.log.push(format!(
            "start {} {:?} {} {:?} {:?} {:?} {:?}",
            p.index, p.parent, p.content_type.mime_type, p.encoding, p.filename, p.flags, p.headers
        ));
    }
    fn body(&mut self, d: &[u8]) {
        assert!(!self.open.is_empty(), "body outside a part");
        self.body.extend_from_slice(d);
    }
    fn part_end(&mut self, e: &PartEnd) {
        self.flush();
        let top = self.open.pop().expect("part_end without part_start");
        assert_eq!(top.0, e.index, "part_end out of order");
        self.log.push(format!("end {:?}", e));
    }
}

impl Events {
    fn flush(&mut self) {
        if !self.body.is_empty() {
            let b = std::mem::take(&mut self.body);
            self.log.push(format!("body {:?}", b));
        }
    }
}

fn run(limits: Limits, chunks: &[&[u8]]) -> (Events, Summary) {
    let mut ev = Events::default();
    let mut p = Parser::new(limits);
    for c in chunks {
        p.feed(c, &mut ev);
    }
    let s = p.finish(&mut ev);
    ev.flush();
    assert!(ev.open.is_empty(), "parts left open: {:?}", ev.open);
    (ev, s)
}

fuzz_target!(|data: &[u8]| {
    let mut c = Choices::new(data);
    let limits = if c.byte().is_multiple_of(4) {
        Limits {
            max_header_size: 1024,
            max_depth: 3,
            max_parts: 8,
            max_boundary_length: 70,
            max_line_length: 1000,
        }
    } else {
        Limits::default()
    };
    let seed = [c.byte(), c.byte(), c.byte()];
    let msg = c.rest();

    let (whole, s1) = run(limits, &[msg]);
    let (chunked, s2) = run(limits, &pieces(&seed, msg));
    assert_eq!(whole.log, chunked.log, "the split changed the events");
    assert_eq!(s1, s2, "the split changed the summary");
    assert!(
        whole.max_depth <= limits.max_depth,
        "depth {} past the limit",
        whole.max_depth
    );
    assert!(
        whole.starts <= limits.max_parts,
        "{} parts past the limit",
        whole.starts
    );
    assert_eq!(s1.parts, whole.starts, "summary parts");
    assert_eq!(s1.bytes, msg.len() as u64, "summary bytes");
});
