//! HTML to text on arbitrary input: html2text through mugaika's rich renderer (with every link
//! policy) and the streaming tag stripper that replaces it past `sanitize.max_html_size` or
//! when it fails.
//!
//! html2text is third-party and has panicked and hung on hostile HTML; production runs it on a
//! worker thread under `catch_unwind` and a timeout, so this target contains its panics the same
//! way (see the fuzz crate's panic policy) and relies on libFuzzer's `-timeout` for hangs. The
//! stripper is ours: it must never panic and must give the same text (and link count) however
//! the HTML is split.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mugaika::config::LinkPolicy;
use mugaika::sanitise::html::{meta_charset, render_rich, Stripper};
use mugaika_fuzz::{contain_third_party_panics, str_pieces, Choices};

const POLICIES: [LinkPolicy; 4] = [
    LinkPolicy::Keep,
    LinkPolicy::Show,
    LinkPolicy::Defang,
    LinkPolicy::Remove,
];

fn strip(policy: LinkPolicy, pieces: &[&str]) -> (String, u64) {
    let mut s = Stripper::new(policy);
    let mut out = String::new();
    for p in pieces {
        s.push(p, &mut out);
    }
    s.finish(&mut out);
    (out, s.links_rewritten())
}

fuzz_target!(init: contain_third_party_panics(), |data: &[u8]| {
    let mut c = Choices::new(data);
    let policy = POLICIES[c.below(POLICIES.len())];
    let seed = [c.byte(), c.byte()];
    let raw = c.rest();
    let _ = meta_charset(raw);
    let html = String::from_utf8_lossy(raw);

    // html2text, contained as in production (sanitise::html::convert).
    let _ = std::panic::catch_unwind(|| render_rich(&html, policy));

    let whole = strip(policy, &[&html]);
    let split = strip(policy, &str_pieces(&seed, &html));
    assert_eq!(whole, split, "the split changed the stripped text");
});
