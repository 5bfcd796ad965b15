//! libFuzzer entry for the config loader; the properties are in `props/config.rs`.
#![no_main]

#[allow(dead_code)] // each target uses one of the property modules
#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::config::check(data));
