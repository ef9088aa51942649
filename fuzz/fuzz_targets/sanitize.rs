//! The whole sanitiser on arbitrary input: never a panic, and every clean message it writes has
//! passed the verifier (the pipeline runs it), so an Ok here is a verified message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mugaika::config::Config;
use mugaika::pipeline::{sanitize_reader, Context, SanitizeError};

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().expect("temp dir");
    }
    let cfg = Config::default();
    DIR.with(|d| {
        let out = d.path().join("out.eml");
        match sanitize_reader(data, &cfg, &Context::default(), &out) {
            Ok(_) | Err(SanitizeError::Rejected(_)) => {}
            Err(SanitizeError::Internal(e)) => panic!("internal error on fuzz input: {e}"),
            Err(SanitizeError::Timeout(_)) => {}
        }
    });
});
