//! The `.pth` stride reader: the pickle of a PyTorch file (zip format or legacy), read for the
//! shape and strides of each tensor, then each tensor's elements reordered to row-major as
//! loading does for a view that is not contiguous.

#![no_main]

use captioner_model::pth_strides::{read_layouts, reorder_to_contiguous};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("captioner-fuzz-{}.pth", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let Ok(layouts) = read_layouts(&path) else {
        return;
    };
    for layout in layouts.values() {
        let _ = layout.is_contiguous();
        // Whatever the file says, the element buffer is what burn-store read: any length,
        // and the length the shape asks for when it is small.
        let wanted = layout
            .shape
            .iter()
            .try_fold(4usize, |n, &size| n.checked_mul(size))
            .filter(|&n| n <= 1 << 16);
        let buffer = vec![7u8; 1 << 16];
        for length in [0, 1, 7, 64].into_iter().chain(wanted) {
            if let Ok(out) = reorder_to_contiguous(layout, &buffer[..length], 4) {
                assert_eq!(out.len(), length);
            }
        }
    }
});
