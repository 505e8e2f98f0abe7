//! libFuzzer target: [`cachefront_fuzz::cache_control`] (the replay test runs the same function).
#![no_main]
#![allow(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cachefront_fuzz::cache_control(data));
