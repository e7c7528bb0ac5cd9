//! FNV-1a, 64-bit: a hash that is stable across processes, builds and
//! platforms (std's `DefaultHasher` is not). Used for schedule offsets,
//! answer fingerprints and cache keys — never for anything adversarial.

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0100_0000_01b3;

/// Continues a hash over `bytes`.
pub fn extend(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

/// The hash of `bytes`.
pub fn hash(bytes: &[u8]) -> u64 {
    extend(OFFSET, bytes)
}

/// The hash of `text` as 16 lowercase hex digits.
pub fn hex(text: &str) -> String {
    format!("{:016x}", hash(text.as_bytes()))
}

/// The hash of several parts, each followed by a 0xff separator so that
/// `["ab", "c"]` and `["a", "bc"]` differ.
pub fn parts(parts: &[&str]) -> u64 {
    parts
        .iter()
        .fold(OFFSET, |h, p| extend(extend(h, p.as_bytes()), &[0xff]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_test_vectors() {
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(parts(&["ab", "c"]), parts(&["a", "bc"]));
    }
}
