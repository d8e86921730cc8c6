#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| exai_server::stdio::fuzz::line_filter(data));
