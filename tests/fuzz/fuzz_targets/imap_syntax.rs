//! libFuzzer entry for the IMAP extension parsers (`imap::syntax`); the properties are in
//! `props/imap_syntax.rs`.
#![no_main]

#[allow(dead_code)] // each target uses one of the property modules
#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::imap_syntax::check(data));
