#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| exai_kb::store::fuzz::keyword_query(data));
