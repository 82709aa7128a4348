//! The zip container of a `.pth` file. PyTorch writes its archives uncompressed ("stored"),
//! so reading one is finding each entry's bytes through the central directory; any other
//! compression, a zip64 archive or an offset outside the file is an error, never a panic.

use std::collections::HashMap;
use std::ops::Range;

/// End of central directory record: signature and fixed size.
const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD_LEN: usize = 22;
/// The EOCD may be followed by a comment of up to 64 KiB.
const MAX_COMMENT: usize = 0xffff;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const CENTRAL_LEN: usize = 46;
const LOCAL_SIG: u32 = 0x0403_4b50;
const LOCAL_LEN: usize = 30;
/// Compression method "stored".
const STORED: u16 = 0;
/// A 32-bit field at this value means the real one is in a zip64 record.
const ZIP64_MARK: u32 = u32::MAX;

/// The entries of an archive: name → the range of their bytes in the file.
pub(crate) struct Archive {
    entries: HashMap<String, Range<usize>>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl Archive {
    /// Reads the directory of the zip archive `bytes`.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Archive, String> {
        let eocd = find_eocd(bytes).ok_or("not a zip archive (no end of central directory)")?;
        let count = u16_at(bytes, eocd + 10).ok_or("truncated zip directory")? as usize;
        let cd_size = u32_at(bytes, eocd + 12).ok_or("truncated zip directory")?;
        let cd_offset = u32_at(bytes, eocd + 16).ok_or("truncated zip directory")?;
        if cd_size == ZIP64_MARK || cd_offset == ZIP64_MARK || count == 0xffff {
            return Err("a zip64 archive, which a .pth of this size never is".into());
        }
        let mut entries = HashMap::new();
        let mut at = cd_offset as usize;
        for _ in 0..count {
            let (name, range, next) = central_entry(bytes, at)?;
            entries.insert(name, range);
            at = next;
        }
        Ok(Archive { entries })
    }

    /// The name of the entry ending in `suffix` (the archive's top folder varies).
    pub(crate) fn find_suffix(&self, suffix: &str) -> Option<&str> {
        self.entries
            .keys()
            .find(|n| n.ends_with(suffix))
            .map(String::as_str)
    }

    /// The bytes of entry `name`.
    pub(crate) fn get<'a>(&self, bytes: &'a [u8], name: &str) -> Option<&'a [u8]> {
        bytes.get(self.entries.get(name)?.clone())
    }
}

/// The offset of the end-of-central-directory record, searched from the end.
fn find_eocd(bytes: &[u8]) -> Option<usize> {
    let last = bytes.len().checked_sub(EOCD_LEN)?;
    let first = last.saturating_sub(MAX_COMMENT);
    (first..=last)
        .rev()
        .find(|&at| u32_at(bytes, at) == Some(EOCD_SIG))
}

/// One central directory entry at `at`: its name, the range of its data, the next entry.
fn central_entry(bytes: &[u8], at: usize) -> Result<(String, Range<usize>, usize), String> {
    let bad = || format!("damaged zip directory entry at byte {at}");
    if u32_at(bytes, at) != Some(CENTRAL_SIG) {
        return Err(bad());
    }
    let method = u16_at(bytes, at + 10).ok_or_else(bad)?;
    let stored_size = u32_at(bytes, at + 20).ok_or_else(bad)?;
    let size = u32_at(bytes, at + 24).ok_or_else(bad)?;
    let name_len = u16_at(bytes, at + 28).ok_or_else(bad)? as usize;
    let extra_len = u16_at(bytes, at + 30).ok_or_else(bad)? as usize;
    let comment_len = u16_at(bytes, at + 32).ok_or_else(bad)? as usize;
    let local = u32_at(bytes, at + 42).ok_or_else(bad)?;
    let name_at = at + CENTRAL_LEN;
    let name = bytes.get(name_at..name_at + name_len).ok_or_else(bad)?;
    let name = String::from_utf8_lossy(name).into_owned();
    if method != STORED || stored_size != size {
        return Err(format!(
            "zip entry {name} is compressed; a .pth stores its entries"
        ));
    }
    if local == ZIP64_MARK || size == ZIP64_MARK {
        return Err(format!("zip entry {name} needs zip64"));
    }
    let local = local as usize;
    if u32_at(bytes, local) != Some(LOCAL_SIG) {
        return Err(format!("zip entry {name}: no local header at byte {local}"));
    }
    let l_name = u16_at(bytes, local + 26).ok_or_else(bad)? as usize;
    let l_extra = u16_at(bytes, local + 28).ok_or_else(bad)? as usize;
    let start = local + LOCAL_LEN + l_name + l_extra;
    let end = start + size as usize;
    if end > bytes.len() {
        return Err(format!("zip entry {name} runs past the end of the file"));
    }
    Ok((
        name,
        start..end,
        name_at + name_len + extra_len + comment_len,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stored zip of the given entries, written by hand as PyTorch's writer does.
    pub(crate) fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data) in entries {
            let local = out.len() as u32;
            out.extend_from_slice(&LOCAL_SIG.to_le_bytes());
            out.extend_from_slice(&[0; 22]);
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);
            let mut c = Vec::new();
            c.extend_from_slice(&CENTRAL_SIG.to_le_bytes());
            c.extend_from_slice(&[0; 6]);
            c.extend_from_slice(&STORED.to_le_bytes());
            c.extend_from_slice(&[0; 8]);
            c.extend_from_slice(&(data.len() as u32).to_le_bytes());
            c.extend_from_slice(&(data.len() as u32).to_le_bytes());
            c.extend_from_slice(&(name.len() as u16).to_le_bytes());
            c.extend_from_slice(&[0; 12]);
            c.extend_from_slice(&local.to_le_bytes());
            c.extend_from_slice(name.as_bytes());
            central.extend_from_slice(&c);
        }
        let cd_offset = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(&EOCD_SIG.to_le_bytes());
        out.extend_from_slice(&[0; 6]);
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    #[test]
    fn entries_are_found_by_name() {
        let z = zip_of(&[("a/data.pkl", b"pickle"), ("a/data/0", b"\x01\x02\x03\x04")]);
        let a = Archive::parse(&z).expect("parses");
        assert_eq!(a.find_suffix("/data.pkl"), Some("a/data.pkl"));
        assert_eq!(a.get(&z, "a/data/0"), Some(&b"\x01\x02\x03\x04"[..]));
        assert_eq!(a.get(&z, "a/data/1"), None);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let z = zip_of(&[("a/data.pkl", b"pickle"), ("a/data/0", b"abcd")]);
        for n in 0..z.len() {
            // a prefix never panics; a cut that keeps the directory intact may still parse
            let _ = Archive::parse(&z[..n]);
        }
        assert!(Archive::parse(b"not a zip at all, just text").is_err());
        let mut compressed = z.clone();
        let cd = z.len() - EOCD_LEN - 2 * CENTRAL_LEN - "a/data.pkl".len() - "a/data/0".len();
        compressed[cd + 10] = 8; // deflate
        let e = Archive::parse(&compressed).err().expect("refused");
        assert!(e.contains("compressed"), "{e}");
    }
}
