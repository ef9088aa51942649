//! The whole sanitiser on arbitrary input, under a configuration the fuzzer chooses (output
//! charset, link policy, notice language, default or tiny parser limits): never a panic in
//! mugaika's code, and every clean message it writes has passed the verifier (the pipeline runs
//! it and turns a violation into an internal error), so an `Ok` here is a verified message and
//! an internal error is a finding. Third-party converter panics are contained as in production
//! (see the fuzz crate's panic policy).
#![no_main]
use libfuzzer_sys::fuzz_target;
use mugaika::config::{ByteSize, Config, Dur, Language, LinkPolicy, OutputCharset};
use mugaika::pipeline::{sanitize_reader, Context, SanitizeError};
use mugaika_fuzz::{contain_third_party_panics, Choices};

fn config(c: &mut Choices) -> Config {
    let b = c.byte();
    let mut cfg = Config::default();
    cfg.sanitize.output_charset = if b & 1 == 0 {
        OutputCharset::Utf8
    } else {
        OutputCharset::Iso2022Jp
    };
    cfg.sanitize.links = [
        LinkPolicy::Keep,
        LinkPolicy::Show,
        LinkPolicy::Defang,
        LinkPolicy::Remove,
    ][usize::from(b >> 1) & 3];
    cfg.sanitize.notice_language = if b & 8 == 0 {
        Language::Ja
    } else {
        Language::En
    };
    if b & 0x30 == 0x30 {
        cfg.mime.max_header_size = ByteSize(1024);
        cfg.mime.max_depth = 3;
        cfg.mime.max_parts = 8;
        cfg.mime.max_line_length = ByteSize(1000);
    }
    cfg.sanitize.html_timeout = Dur(std::time::Duration::from_secs(5));
    cfg
}

fuzz_target!(init: contain_third_party_panics(), |data: &[u8]| {
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().expect("temp dir");
    }
    let mut c = Choices::new(data);
    let cfg = config(&mut c);
    let msg = c.rest();
    DIR.with(|d| {
        let out = d.path().join("out.eml");
        let ctx = Context {
            temp_dir: Some(d.path().to_path_buf()),
            ..Context::default()
        };
        match sanitize_reader(msg, &cfg, &ctx, &out) {
            Ok(_) => assert!(out.is_file(), "Ok without a clean message"),
            Err(SanitizeError::Rejected(_)) | Err(SanitizeError::Timeout(_)) => {
                assert!(!out.exists(), "a refused message left its output behind")
            }
            Err(SanitizeError::Internal(e)) => panic!("internal error on fuzz input: {e}"),
        }
    });
});
