//! The streaming parser must never panic and must give the same events however its input is
//! split: the fuzzer chooses both the message and the chunk boundaries (the first bytes).
#![no_main]
use libfuzzer_sys::fuzz_target;
use mugaika::mime::{Limits, Parser, Part, PartEnd, Sink};

#[derive(Default, PartialEq, Debug)]
struct Events(Vec<String>, Vec<u8>);

impl Sink for Events {
    fn part_start(&mut self, p: &Part) {
        self.flush();
        self.0.push(format!(
            "start {} {:?} {} {:?} {:?} {:?}",
            p.index, p.parent, p.content_type.mime_type, p.encoding, p.filename, p.flags
        ));
    }
    fn body(&mut self, d: &[u8]) {
        self.1.extend_from_slice(d);
    }
    fn part_end(&mut self, e: &PartEnd) {
        self.flush();
        self.0.push(format!("end {:?}", e));
    }
}

impl Events {
    fn flush(&mut self) {
        if !self.1.is_empty() {
            let b = std::mem::take(&mut self.1);
            self.0.push(format!("body {:?}", b));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (split, msg) = data.split_at(2);
    let step = 1 + (u16::from_le_bytes([split[0], split[1]]) as usize % 97);
    let limits = Limits::default();

    let mut whole = Events::default();
    let mut p = Parser::new(limits);
    p.feed(msg, &mut whole);
    let s1 = p.finish(&mut whole);
    whole.flush();

    let mut chunked = Events::default();
    let mut p = Parser::new(limits);
    for c in msg.chunks(step) {
        p.feed(c, &mut chunked);
    }
    let s2 = p.finish(&mut chunked);
    chunked.flush();
    assert_eq!(whole, chunked);
    assert_eq!(s1, s2);
});
