//! `airlock::path::normalize` on arbitrary input.
//!
//! Properties (a panic is a finding): never panics; for every `Ok(p)`:
//! - the canonical form is a fixed point: `normalize(&p.encoded()) == Ok(p)`;
//! - `p.encoded()` starts with `/` and is at most `MAX_PATH_LEN` bytes;
//! - no segment is empty, `.` or `..`;
//! - no segment contains `/`, `\`, `%` or an ASCII control byte
//!   (0x00-0x1F, 0x7F).
//!
//! `regressions/path_normalize/` holds the inputs of a fixed finding (a
//! canonical form longer than `MAX_PATH_LEN` broke the fixed point).
#![no_main]

use airlock::path::{self, MAX_PATH_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let Ok(p) = path::normalize(s) else { return };
    let enc = p.encoded();
    assert!(enc.starts_with('/'), "encoded form {enc:?} of {s:?} is not absolute");
    for seg in p.segments() {
        assert!(!seg.is_empty(), "empty segment from {s:?}");
        assert!(seg != "." && seg != "..", "dot segment {seg:?} from {s:?}");
        assert!(
            !seg.bytes().any(|b| matches!(b, b'/' | b'\\' | b'%' | 0..=0x1f | 0x7f)),
            "segment {seg:?} from {s:?} holds a separator, '%' or a control byte"
        );
    }
    assert!(enc.len() <= MAX_PATH_LEN, "canonical form of {s:?} is {} bytes, over the cap", enc.len());
    assert_eq!(path::normalize(&enc), Ok(p), "canonical form {enc:?} of {s:?} is not a fixed point");
});
