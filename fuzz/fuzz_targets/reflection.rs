//! libFuzzer target: [`cachefront_fuzz::reflection`] (the replay test runs the same function).
#![no_main]
#![allow(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cachefront_fuzz::reflection(data));
