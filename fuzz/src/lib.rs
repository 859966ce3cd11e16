//! Shared helpers of the fuzz targets: a runtime for the async state
//! machines and the wire-format invariants several targets check.

use std::future::Future;
use std::sync::OnceLock;

/// Runs `fut` to completion on a process-wide current-thread runtime.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime can always be built")
    })
    .block_on(fut)
}

/// Panics unless every CR in `bytes` is followed by LF and every LF is
/// preceded by CR (no bare CR, no bare LF).
pub fn assert_crlf_only(bytes: &[u8], what: &str) {
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(
                bytes.get(i + 1),
                Some(&b'\n'),
                "{what}: bare CR at {i} in {:?}",
                String::from_utf8_lossy(bytes)
            ),
            b'\n' => assert!(
                i > 0 && bytes[i - 1] == b'\r',
                "{what}: bare LF at {i} in {:?}",
                String::from_utf8_lossy(bytes)
            ),
            _ => {}
        }
    }
}

/// Decodes a complete dot-stuffed stream (terminator included) with the
/// receiver's DATA decoder; panics unless the whole input is consumed and
/// ends exactly at the terminator.
pub fn dot_decode_complete(wire: &[u8], what: &str) -> Vec<u8> {
    let mut decoder = postamt_receiver::data::DotDecoder::new();
    let mut out = Vec::with_capacity(wire.len());
    let consumed = decoder.decode(wire, &mut out);
    assert!(decoder.is_done(), "{what}: no terminator in {wire:?}");
    assert_eq!(
        consumed,
        wire.len(),
        "{what}: terminator before the end of {wire:?}"
    );
    out
}

/// `data` with every line ending made CRLF (a bare LF becomes CRLF; with
/// `bare_cr_is_eol` a bare CR does too) and a final CRLF added when `data`
/// is not empty and does not end in a line ending.
pub fn normalize_lines(data: &[u8], bare_cr_is_eol: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 2);
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' if data.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' if bare_cr_is_eol => out.extend_from_slice(b"\r\n"),
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}
