//! Reading GGUF files: header, metadata and tensor directory, from any random-access
//! [`ByteSource`]. Tensor bytes are read one tensor at a time, so the whole file never has
//! to sit in memory next to the weights built from it (this matters in wasm, where the
//! file lives in a JS `ArrayBuffer` and linear memory is precious).

use std::collections::HashMap;

use candle_core::quantized::GgmlDType;

use crate::error::{Error, Result};

/// Random access to the bytes of a model file.
pub trait ByteSource {
    /// Total length in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` with the bytes at `offset`; the caller has checked the range. Reading
    /// into the caller's buffer lets tensors be read straight into their final storage.
    fn read_into(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
}

/// A model file the engine keeps open after loading, to read the embedding's rows from
/// ([`crate::runtime::model::embedding`]). A browser's file handle lives on one thread.
#[cfg(not(target_arch = "wasm32"))]
pub type SharedSource = std::sync::Arc<dyn ByteSource + Send + Sync>;
#[cfg(target_arch = "wasm32")]
pub type SharedSource = std::rc::Rc<dyn ByteSource>;

impl<T: ByteSource + ?Sized> ByteSource for &T {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_into(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        (**self).read_into(offset, buf)
    }
}

impl ByteSource for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_into(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        buf.copy_from_slice(&self[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
}

#[cfg(unix)]
impl ByteSource for std::fs::File {
    fn size(&self) -> u64 {
        self.metadata().map(|m| m.len()).unwrap_or(0)
    }
    fn read_into(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        Ok(self.read_exact_at(buf, offset)?)
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Array),
}

/// A metadata array, stored as its element type: a hostile file's million-element byte
/// array costs a megabyte, not 32 (the size of a [`Value`]) per element.
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    Str(Vec<String>),
}

impl Array {
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::F64(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::Str(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn strings(&self) -> Option<&[String]> {
        match self {
            Array::Str(v) => Some(v),
            _ => None,
        }
    }
    /// A float array as `f32` (writers use either width).
    pub fn f32s(&self) -> Option<Vec<f32>> {
        match self {
            Array::F32(v) => Some(v.clone()),
            Array::F64(v) => Some(v.iter().map(|&x| x as f32).collect()),
            _ => None,
        }
    }
    /// An integer array as `i64` (writers disagree on the width of token types); `None` for
    /// a `u64` above `i64::MAX`.
    pub fn i64s(&self) -> Option<Vec<i64>> {
        fn all<T: Copy>(v: &[T], f: impl Fn(T) -> Option<i64>) -> Option<Vec<i64>> {
            v.iter().map(|&x| f(x)).collect()
        }
        match self {
            Array::U8(v) => all(v, |x| Some(x.into())),
            Array::I8(v) => all(v, |x| Some(x.into())),
            Array::U16(v) => all(v, |x| Some(x.into())),
            Array::I16(v) => all(v, |x| Some(x.into())),
            Array::U32(v) => all(v, |x| Some(x.into())),
            Array::I32(v) => all(v, |x| Some(x.into())),
            Array::U64(v) => all(v, |x| i64::try_from(x).ok()),
            Array::I64(v) => all(v, Some),
            _ => None,
        }
    }
}

impl Value {
    /// Any integer type as `u64` (GGUF writers disagree on the width of counts).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) if v >= 0 => Some(v as u64),
            Value::I16(v) if v >= 0 => Some(v as u64),
            Value::I32(v) if v >= 0 => Some(v as u64),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v as i64),
            Value::I16(v) => Some(v as i64),
            Value::I32(v) => Some(v as i64),
            Value::I64(v) => Some(v),
            _ => self.as_u64().map(|v| v as i64),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Where one tensor's bytes are and how to read them.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// GGUF dims, innermost first (as ggml stores them).
    pub dims: Vec<usize>,
    pub dtype: GgmlDType,
    /// Absolute offset in the file.
    pub offset: u64,
    pub size: usize,
}

impl TensorInfo {
    /// Dims outermost first, the order candle (and everyone else) uses.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
}

/// A parsed GGUF header: everything but the tensor bytes.
#[derive(Debug)]
pub struct Gguf {
    pub version: u32,
    pub metadata: HashMap<String, Value>,
    pub tensors: HashMap<String, TensorInfo>,
}

const MAGIC: &[u8; 4] = b"GGUF";
/// Refuse absurd counts before allocating for them (a corrupt header must not OOM us).
const MAX_COUNT: u64 = 1 << 24;
const MAX_STRING: u64 = 1 << 26;

/// ggml type ids (ggml.h `enum ggml_type`) we can turn into candle tensors.
fn ggml_dtype(type_id: u32) -> Option<GgmlDType> {
    Some(match type_id {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        9 => GgmlDType::Q8_1,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        15 => GgmlDType::Q8K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

/// Sequential reader over a [`ByteSource`] that fetches the source in large windows.
struct Reader<'a, S: ByteSource + ?Sized> {
    src: &'a S,
    /// The source's size, asked once: a file answers with a system call, and a header has
    /// hundreds of thousands of values (one per token of the vocabulary).
    len: u64,
    pos: u64,
    window_start: u64,
    window: Vec<u8>,
}

const WINDOW: usize = 1 << 20;

impl<'a, S: ByteSource + ?Sized> Reader<'a, S> {
    fn bytes(&mut self, n: u64, what: &str) -> Result<&[u8]> {
        let len = self.len;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= len)
            .ok_or_else(|| Error::Truncated {
                what: what.to_string(),
                needed: self.pos.saturating_add(n),
                len,
            })?;
        let window_end = self.window_start + self.window.len() as u64;
        if self.pos < self.window_start || end > window_end {
            let take = (n as usize).max(WINDOW).min((len - self.pos) as usize);
            self.window.resize(take, 0);
            self.src.read_into(self.pos, &mut self.window)?;
            self.window_start = self.pos;
        }
        let from = (self.pos - self.window_start) as usize;
        self.pos = end;
        Ok(&self.window[from..from + n as usize])
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        Ok(self.bytes(N as u64, what)?.try_into().expect("length checked"))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn count(&mut self, what: &str) -> Result<u64> {
        let n = self.u64(what)?;
        if n > MAX_COUNT {
            return Err(Error::Malformed(format!("{what} = {n} is implausibly large")));
        }
        Ok(n)
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        if n > MAX_STRING {
            return Err(Error::Malformed(format!("{what}: string of {n} bytes")));
        }
        let bytes = self.bytes(n, what)?;
        // llama.cpp accepts invalid UTF-8 in token texts; keep going with replacement chars.
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
    /// An array's elements, its length checked against the bytes left in the file (each
    /// element takes at least its fixed size, a string at least its 8-byte length) before
    /// anything is allocated for it.
    fn array_value(&mut self, key: &str) -> Result<Array> {
        let elem = self.u32(key)?;
        let n = self.count(key)?;
        let min_size = match elem {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8 | 10..=12 => 8,
            9 => return Err(Error::Malformed(format!("{key}: nested arrays"))),
            t => return Err(Error::Malformed(format!("{key}: unknown array element type {t}"))),
        };
        let left = self.len.saturating_sub(self.pos);
        if n.saturating_mul(min_size) > left {
            return Err(Error::Truncated {
                what: format!("{key}: array of {n} elements"),
                needed: self.pos.saturating_add(n.saturating_mul(min_size)),
                len: self.len,
            });
        }
        let n = n as usize;
        fn read<T>(n: usize, mut next: impl FnMut() -> Result<T>) -> Result<Vec<T>> {
            (0..n).map(|_| next()).collect()
        }
        Ok(match elem {
            0 => Array::U8(read(n, || Ok(self.array::<1>(key)?[0]))?),
            1 => Array::I8(read(n, || Ok(self.array::<1>(key)?[0] as i8))?),
            2 => Array::U16(read(n, || Ok(u16::from_le_bytes(self.array(key)?)))?),
            3 => Array::I16(read(n, || Ok(i16::from_le_bytes(self.array(key)?)))?),
            4 => Array::U32(read(n, || self.u32(key))?),
            5 => Array::I32(read(n, || Ok(i32::from_le_bytes(self.array(key)?)))?),
            6 => Array::F32(read(n, || Ok(f32::from_le_bytes(self.array(key)?)))?),
            7 => Array::Bool(read(n, || Ok(self.array::<1>(key)?[0] != 0))?),
            8 => Array::Str(read(n, || self.string(key))?),
            10 => Array::U64(read(n, || self.u64(key))?),
            11 => Array::I64(read(n, || Ok(i64::from_le_bytes(self.array(key)?)))?),
            _ => Array::F64(read(n, || Ok(f64::from_le_bytes(self.array(key)?)))?),
        })
    }

    fn value(&mut self, type_id: u32, key: &str) -> Result<Value> {
        Ok(match type_id {
            0 => Value::U8(self.array::<1>(key)?[0]),
            1 => Value::I8(self.array::<1>(key)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(key)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(key)?)),
            4 => Value::U32(self.u32(key)?),
            5 => Value::I32(i32::from_le_bytes(self.array(key)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            7 => Value::Bool(self.array::<1>(key)?[0] != 0),
            8 => Value::Str(self.string(key)?),
            9 => Value::Array(self.array_value(key)?),
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            t => return Err(Error::Malformed(format!("{key}: unknown value type {t}"))),
        })
    }
}

impl Gguf {
    /// Parses the header and checks that every tensor lies inside the file.
    pub fn parse<S: ByteSource + ?Sized>(src: &S) -> Result<Gguf> {
        let len = src.size();
        let mut r = Reader {
            src,
            len,
            pos: 0,
            window_start: 0,
            window: Vec::new(),
        };
        if len < 4 || r.bytes(4, "magic")? != MAGIC {
            return Err(Error::NotGguf);
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(Error::UnsupportedVersion(version));
        }
        let n_tensors = r.count("tensor count")?;
        let n_kv = r.count("metadata count")?;
        let mut metadata = HashMap::new();
        for _ in 0..n_kv {
            let key = r.string("metadata key")?;
            let type_id = r.u32(&key)?;
            let value = r.value(type_id, &key)?;
            metadata.insert(key, value);
        }
        // A directory entry takes at least 32 bytes (empty name, no dims): check the count
        // against the bytes left before reserving room for it.
        if n_tensors.saturating_mul(32) > len.saturating_sub(r.pos) {
            return Err(Error::Truncated {
                what: format!("a directory of {n_tensors} tensors"),
                needed: r.pos.saturating_add(n_tensors.saturating_mul(32)),
                len,
            });
        }
        let mut infos = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = r.string("tensor name")?;
            let n_dims = r.u32(&name)?;
            if n_dims > 4 {
                return Err(Error::Malformed(format!("tensor {name} has {n_dims} dims")));
            }
            let dims = (0..n_dims)
                .map(|_| r.u64(&name).map(|d| d as usize))
                .collect::<Result<Vec<_>>>()?;
            let type_id = r.u32(&name)?;
            let offset = r.u64(&name)?;
            infos.push((name, dims, type_id, offset));
        }
        let alignment = metadata.get("general.alignment").and_then(Value::as_u64).unwrap_or(32);
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(Error::Malformed(format!("general.alignment = {alignment}")));
        }
        let data_start = r.pos.div_ceil(alignment) * alignment;
        let mut tensors = HashMap::with_capacity(infos.len());
        for (name, dims, type_id, rel) in infos {
            let dtype = ggml_dtype(type_id).ok_or_else(|| Error::UnsupportedTensorType {
                name: name.clone(),
                type_id,
            })?;
            let elems = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            let size = elems
                .filter(|e| e % dtype.block_size() == 0)
                .and_then(|e| (e / dtype.block_size()).checked_mul(dtype.type_size()))
                .ok_or_else(|| Error::Malformed(format!("tensor {name} has dims {dims:?}")))?;
            // A relative offset near 2^64 must not wrap around onto the header.
            let needed = data_start.checked_add(rel).and_then(|o| o.checked_add(size as u64));
            let Some(needed) = needed.filter(|&n| n <= len) else {
                return Err(Error::Truncated {
                    what: format!("tensor {name}"),
                    needed: needed.unwrap_or(u64::MAX),
                    len,
                });
            };
            let offset = needed - size as u64;
            tensors.insert(
                name,
                TensorInfo {
                    dims,
                    dtype,
                    offset,
                    size,
                },
            );
        }
        Ok(Gguf {
            version,
            metadata,
            tensors,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// `general.architecture`, the key models are dispatched on.
    pub fn architecture(&self) -> Result<&str> {
        self.str("general.architecture")
    }

    pub fn str(&self, key: &str) -> Result<&str> {
        self.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| missing(key, "string"))
    }
    pub fn u64(&self, key: &str) -> Result<u64> {
        self.get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| missing(key, "unsigned integer"))
    }
    pub fn f32(&self, key: &str) -> Result<f32> {
        self.get(key)
            .and_then(Value::as_f32)
            .ok_or_else(|| missing(key, "float"))
    }
    pub fn array(&self, key: &str) -> Result<&Array> {
        self.get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| missing(key, "array"))
    }

    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))
    }
}

fn missing(key: &str, expected: &'static str) -> Error {
    Error::Metadata {
        key: key.to_string(),
        expected,
    }
}
