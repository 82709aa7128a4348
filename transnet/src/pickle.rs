//! The restricted pickle of a PyTorch `state_dict`: an ordered dict from names to tensors,
//! each rebuilt from a storage (a raw little-endian file of the archive), an offset, a shape
//! and strides. Only the opcodes such a pickle uses are read, and no class is ever built:
//! the two callables that matter (`OrderedDict` and `_rebuild_tensor_v2`) are recognised by
//! name, anything else stays an opaque value. A damaged or hostile file is an error.

use std::collections::HashMap;

/// A tensor as the pickle describes it; its data is read from the archive afterwards.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TensorRef {
    /// The storage's element type, from its class name (`FloatStorage` …).
    pub(crate) dtype: Dtype,
    /// The storage's entry under `data/` in the archive.
    pub(crate) key: String,
    /// In elements.
    pub(crate) offset: usize,
    pub(crate) shape: Vec<usize>,
    pub(crate) stride: Vec<usize>,
}

/// Element types of storages the weights may use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Dtype {
    F32,
    F64,
    F16,
    I64,
}

impl Dtype {
    pub(crate) fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F16 => 2,
        }
    }
}

#[derive(Clone, Debug)]
enum Value {
    Mark,
    None,
    /// A bool or a float: read, never used.
    Scalar,
    Int(i64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// `module.name` of a GLOBAL.
    Global(String),
    Storage(Dtype, String),
    Tensor(TensorRef),
    /// Anything built by a callable that does not matter here.
    Opaque,
}

/// Stack and memo limits: far beyond a state_dict's needs, low enough that no file can make
/// the reader hold much memory.
const MAX_STACK: usize = 1 << 16;
const MAX_MEMO: usize = 1 << 20;
const MAX_DIMS: usize = 8;

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or_else(|| format!("pickle truncated at byte {}", self.at))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn le<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.b[self.at..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or("pickle: an unterminated GLOBAL")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.at += n + 1;
        Ok(s)
    }
    fn utf8(&mut self, n: usize) -> Result<String, String> {
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| "pickle: a string is not UTF-8".into())
    }
}

/// The tensors of a `state_dict` pickle, in the file's order.
pub(crate) fn state_dict(bytes: &[u8]) -> Result<Vec<(String, TensorRef)>, String> {
    let top = run(bytes)?;
    let Value::Dict(items) = top else {
        return Err("the pickle is not a dict of tensors".into());
    };
    let mut out = Vec::new();
    for (k, v) in items {
        match (k, v) {
            (Value::Str(name), Value::Tensor(t)) => out.push((name, t)),
            (Value::Str(name), _) => return Err(format!("{name} is not a tensor")),
            _ => return Err("a key of the dict is not a name".into()),
        }
    }
    Ok(out)
}

fn pop(stack: &mut Vec<Value>) -> Result<Value, String> {
    stack.pop().ok_or_else(|| "pickle: stack underflow".into())
}

/// Everything above the topmost mark, which is removed.
fn pop_mark(stack: &mut Vec<Value>) -> Result<Vec<Value>, String> {
    let m = stack
        .iter()
        .rposition(|v| matches!(v, Value::Mark))
        .ok_or("pickle: no mark")?;
    let items = stack.split_off(m + 1);
    stack.pop();
    Ok(items)
}

fn int(v: &Value) -> Result<usize, String> {
    match v {
        Value::Int(i) => usize::try_from(*i).map_err(|_| format!("pickle: {i} is not a size")),
        _ => Err("pickle: a size that is not an integer".into()),
    }
}

fn sizes(v: &Value) -> Result<Vec<usize>, String> {
    match v {
        Value::Tuple(items) if items.len() <= MAX_DIMS => items.iter().map(int).collect(),
        _ => Err("pickle: a tensor's shape is not a short tuple".into()),
    }
}

/// `callable(*args)` for the callables a state_dict uses.
fn reduce(callable: Value, args: Value) -> Result<Value, String> {
    let Value::Global(name) = callable else {
        return Ok(Value::Opaque);
    };
    match name.as_str() {
        "collections.OrderedDict" => Ok(Value::Dict(Vec::new())),
        "torch._utils._rebuild_tensor_v2" => {
            let Value::Tuple(a) = args else {
                return Err("pickle: _rebuild_tensor_v2 without arguments".into());
            };
            let [Value::Storage(dtype, key), offset, shape, stride, ..] = a.as_slice() else {
                return Err("pickle: _rebuild_tensor_v2 with unexpected arguments".into());
            };
            let (shape, stride) = (sizes(shape)?, sizes(stride)?);
            if shape.len() != stride.len() {
                return Err("pickle: a tensor's shape and strides differ in length".into());
            }
            Ok(Value::Tensor(TensorRef {
                dtype: *dtype,
                key: key.clone(),
                offset: int(offset)?,
                shape,
                stride,
            }))
        }
        _ => Ok(Value::Opaque),
    }
}

/// A persistent id `('storage', <class>, key, location, numel)` → the storage it names.
fn persistent(pid: Value) -> Result<Value, String> {
    let Value::Tuple(p) = pid else {
        return Err("pickle: a persistent id that is not a tuple".into());
    };
    let [Value::Str(kind), Value::Global(class), Value::Str(key), ..] = p.as_slice() else {
        return Err("pickle: an unexpected persistent id".into());
    };
    if kind != "storage" {
        return Err(format!("pickle: a persistent id of kind {kind}"));
    }
    let dtype = match class.as_str() {
        "torch.FloatStorage" => Dtype::F32,
        "torch.DoubleStorage" => Dtype::F64,
        "torch.HalfStorage" => Dtype::F16,
        "torch.LongStorage" => Dtype::I64,
        other => return Err(format!("pickle: storages of {other} are not read")),
    };
    if key.is_empty() || key.contains(['/', '\\']) || key.contains("..") {
        return Err(format!("pickle: a storage key {key:?}"));
    }
    Ok(Value::Storage(dtype, key.clone()))
}

fn run(bytes: &[u8]) -> Result<Value, String> {
    let mut r = Reader { b: bytes, at: 0 };
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();
    loop {
        if stack.len() > MAX_STACK || memo.len() > MAX_MEMO {
            return Err("pickle: too deep or too large".into());
        }
        let op = r.u8()?;
        match op {
            0x80 => {
                r.u8()?; // PROTO
            }
            0x95 => {
                r.take(8)?; // FRAME
            }
            b'.' => return pop(&mut stack),
            b'(' => stack.push(Value::Mark),
            b'N' => stack.push(Value::None),
            0x88 | 0x89 => stack.push(Value::Scalar),
            b'J' => stack.push(Value::Int(i32::from_le_bytes(r.le()?) as i64)),
            b'K' => stack.push(Value::Int(r.u8()? as i64)),
            b'M' => stack.push(Value::Int(u16::from_le_bytes(r.le()?) as i64)),
            0x8a => {
                // LONG1: a little-endian two's-complement integer of n ≤ 8 bytes
                let n = r.u8()? as usize;
                if n > 8 {
                    return Err("pickle: an integer too large".into());
                }
                let b = r.take(n)?;
                let mut v: i64 = 0;
                for (i, &byte) in b.iter().enumerate() {
                    v |= (byte as i64) << (8 * i);
                }
                if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                stack.push(Value::Int(v));
            }
            b'G' => {
                r.take(8)?; // BINFLOAT
                stack.push(Value::Scalar);
            }
            b'X' => {
                let n = u32::from_le_bytes(r.le()?) as usize;
                stack.push(Value::Str(r.utf8(n)?));
            }
            0x8c => {
                let n = r.u8()? as usize;
                stack.push(Value::Str(r.utf8(n)?));
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                stack.push(Value::Global(format!("{module}.{name}")));
            }
            0x93 => {
                // STACK_GLOBAL
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => stack.push(Value::Global(format!("{m}.{n}"))),
                    _ => return Err("pickle: STACK_GLOBAL without names".into()),
                }
            }
            b')' => stack.push(Value::Tuple(Vec::new())),
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return Err("pickle: stack underflow".into());
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            b']' => stack.push(Value::List(Vec::new())),
            b'}' => stack.push(Value::Dict(Vec::new())),
            b'a' => {
                let v = pop(&mut stack)?;
                match stack.last_mut() {
                    Some(Value::List(l)) => l.push(v),
                    _ => return Err("pickle: APPEND to a non-list".into()),
                }
            }
            b'e' => {
                let items = pop_mark(&mut stack)?;
                match stack.last_mut() {
                    Some(Value::List(l)) => l.extend(items),
                    _ => return Err("pickle: APPENDS to a non-list".into()),
                }
            }
            b's' => {
                let v = pop(&mut stack)?;
                let k = pop(&mut stack)?;
                match stack.last_mut() {
                    Some(Value::Dict(d)) => d.push((k, v)),
                    Some(Value::Opaque) => {}
                    _ => return Err("pickle: SETITEM on a non-dict".into()),
                }
            }
            b'u' => {
                let items = pop_mark(&mut stack)?;
                if items.len() % 2 != 0 {
                    return Err("pickle: SETITEMS with an odd count".into());
                }
                let mut it = items.into_iter();
                match stack.last_mut() {
                    Some(Value::Dict(d)) => {
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            d.push((k, v));
                        }
                    }
                    Some(Value::Opaque) => {}
                    _ => return Err("pickle: SETITEMS on a non-dict".into()),
                }
            }
            b'q' => {
                let i = r.u8()? as u32;
                memoize(&mut memo, i, &stack)?;
            }
            b'r' => {
                let i = u32::from_le_bytes(r.le()?);
                memoize(&mut memo, i, &stack)?;
            }
            0x94 => {
                let i = memo.len() as u32; // MEMOIZE
                memoize(&mut memo, i, &stack)?;
            }
            b'h' => {
                let i = r.u8()? as u32;
                stack.push(recall(&memo, i)?);
            }
            b'j' => {
                let i = u32::from_le_bytes(r.le()?);
                stack.push(recall(&memo, i)?);
            }
            b'Q' => {
                let pid = pop(&mut stack)?;
                stack.push(persistent(pid)?);
            }
            b'R' => {
                let args = pop(&mut stack)?;
                let callable = pop(&mut stack)?;
                stack.push(reduce(callable, args)?);
            }
            b'b' => {
                // BUILD: the state of an object; a state_dict's is its `_metadata`
                pop(&mut stack)?;
                if stack.is_empty() {
                    return Err("pickle: BUILD without an object".into());
                }
            }
            b'0' => {
                pop(&mut stack)?;
            }
            other => return Err(format!("pickle: opcode 0x{other:02x} is not read")),
        }
    }
}

fn memoize(memo: &mut HashMap<u32, Value>, i: u32, stack: &[Value]) -> Result<(), String> {
    let top = stack.last().ok_or("pickle: memo of an empty stack")?;
    // a container is stored as it is now; its later items are never looked up again in a
    // state_dict, so a copy does as well as a reference
    memo.insert(i, top.clone());
    Ok(())
}

fn recall(memo: &HashMap<u32, Value>, i: u32) -> Result<Value, String> {
    memo.get(&i)
        .cloned()
        .ok_or_else(|| format!("pickle: memo {i} was never stored"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A state_dict pickle as PyTorch writes it, with one 2×3 float tensor in storage "0".
    pub(crate) fn one_tensor_pickle() -> Vec<u8> {
        let mut p = vec![0x80, 2];
        p.extend_from_slice(b"ccollections\nOrderedDict\nq\x00)Rq\x01(");
        let name = b"fc.weight";
        p.push(b'X');
        p.extend_from_slice(&(name.len() as u32).to_le_bytes());
        p.extend_from_slice(name);
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\nq\x02((");
        for s in [&b"storage"[..], b"0", b"cpu"] {
            p.push(b'X');
            p.extend_from_slice(&(s.len() as u32).to_le_bytes());
            p.extend_from_slice(s);
            if s == b"storage" {
                p.extend_from_slice(b"ctorch\nFloatStorage\n");
            }
        }
        p.extend_from_slice(b"K\x06tQK\x00K\x02K\x03\x86K\x03K\x01\x86\x89h\x00)Rtq\x03R");
        p.extend_from_slice(b"u}b.");
        p
    }

    #[test]
    fn a_state_dict_is_read() {
        let t = state_dict(&one_tensor_pickle()).expect("reads");
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].0, "fc.weight");
        assert_eq!(
            t[0].1,
            TensorRef {
                dtype: Dtype::F32,
                key: "0".into(),
                offset: 0,
                shape: vec![2, 3],
                stride: vec![3, 1],
            }
        );
    }

    #[test]
    fn damaged_pickles_are_errors_not_panics() {
        let p = one_tensor_pickle();
        for n in 0..p.len() {
            assert!(state_dict(&p[..n]).is_err(), "a cut at {n} was accepted");
        }
        for i in 0..p.len() {
            for byte in [0x00, 0xff, b'(', b'.', b'h', b'R', b'Q'] {
                let mut q = p.clone();
                q[i] = byte;
                let _ = state_dict(&q);
            }
        }
        assert!(
            state_dict(b"\x80\x02K\x01.").is_err(),
            "an int is not a state_dict"
        );
    }
}
