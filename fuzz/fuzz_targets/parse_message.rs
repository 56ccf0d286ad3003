//! cargo-fuzz target `parse_message`: see `ringsip_fuzz::parse_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ringsip_fuzz::parse_message(data);
});
