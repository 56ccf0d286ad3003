//! cargo-fuzz target `parse_edit_serialize`: see `ringsip_fuzz::parse_edit_serialize`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ringsip_fuzz::parse_edit_serialize(data);
});
