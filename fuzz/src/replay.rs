//! Runs every fuzz check over files or directories given on the command line (a corpus),
//! without libFuzzer: `cargo run --example replay -- corpus`.

use std::path::Path;

fn visit(p: &Path, n: &mut usize) {
    if p.is_dir() {
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                visit(&e.path(), n);
            }
        }
    } else if let Ok(data) = std::fs::read(p) {
        ringsip_fuzz::parse_message(&data);
        ringsip_fuzz::parse_uri_and_values(&data);
        ringsip_fuzz::parse_edit_serialize(&data);
        for cut in 0..data.len().min(4096) {
            ringsip_fuzz::parse_message(&data[..cut]);
        }
        *n += 1;
    }
}

fn main() {
    let mut n = 0;
    for arg in std::env::args().skip(1) {
        visit(Path::new(&arg), &mut n);
    }
    println!("replayed {n} inputs without a panic");
}
