//! Writing NumPy `.npy` files (format version 1.0, little-endian float32, C order), the
//! format `numpy.load` and PyTorch tutorials read features from.

use std::path::Path;

/// The `.npy` header for a float32 array of `shape`: magic, version, length, and the
/// dictionary padded with spaces so that the data starts at a multiple of 64 bytes.
fn header(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((dict.len() as u16).to_le_bytes());
    out.extend(dict.as_bytes());
    out
}

/// Writes `values` (row-major, `shape.iter().product()` of them) to `path`.
pub fn write_f32(path: &Path, shape: &[usize], values: &[f32]) -> std::io::Result<()> {
    assert_eq!(
        shape.iter().product::<usize>(),
        values.len(),
        "shape and data disagree"
    );
    let mut bytes = header(shape);
    bytes.reserve(values.len() * 4);
    for v in values {
        bytes.extend(v.to_le_bytes());
    }
    crate::write_file(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_numpy_v1_aligned_to_64_bytes() {
        let h = header(&[196, 2048]);
        assert_eq!(h.len() % 64, 0);
        assert_eq!(&h[..8], b"\x93NUMPY\x01\x00");
        let len = u16::from_le_bytes([h[8], h[9]]) as usize;
        assert_eq!(10 + len, h.len());
        let text = std::str::from_utf8(&h[10..]).unwrap();
        assert!(
            text.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (196, 2048), }")
        );
        assert!(text.ends_with('\n'));
        assert!(std::str::from_utf8(&header(&[5])[10..])
            .unwrap()
            .contains("(5,)"));
    }

    #[test]
    fn data_follows_the_header_little_endian() {
        let path = std::env::temp_dir().join(format!("npy-test-{}.npy", std::process::id()));
        write_f32(&path, &[2, 2], &[1.0, -2.0, 0.5, 3.25]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let start = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!(start % 64, 0);
        let data: Vec<f32> = bytes[start..]
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(data, [1.0, -2.0, 0.5, 3.25]);
    }
}
