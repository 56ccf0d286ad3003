//! cargo-fuzz target `parse_uri`: see `ringsip_fuzz::parse_uri_and_values`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ringsip_fuzz::parse_uri_and_values(data);
});
