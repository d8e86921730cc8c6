#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| exai_core::config::fuzz::load_config(data));
