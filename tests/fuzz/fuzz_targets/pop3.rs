//! libFuzzer entry for the POP3 client core; the properties are in `props/pop3.rs`.
#![no_main]

#[allow(dead_code)] // each target uses one of the property modules
#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::pop3::check(data));
