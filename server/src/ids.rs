//! Identifiers that several layers share, defined below all of them: which shard (`ShardId`),
//! and random 16-byte ids (topic ids, member ids) with their hex form.

/// A shard's number: its index in `Shared::handles` (shard threads in core order). Which shard
/// owns a partition, a group, the controller: never mixed with counts or partition numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub usize);

impl ShardId {
    /// The shard that runs the controller (topic registry, producer ids).
    pub const CONTROLLER: ShardId = ShardId(0);
}

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// 16 random bytes (a v4 UUID from the kernel; never all zero).
pub fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    loop {
        if let Ok(bytes) = std::fs::read("/proc/sys/kernel/random/uuid") {
            let hex: String = String::from_utf8_lossy(&bytes)
                .chars()
                .filter(|c| c.is_ascii_hexdigit())
                .collect();
            if let Some(parsed) = parse_hex(&hex) {
                id = parsed;
            }
        }
        if id != [0u8; 16] {
            return id;
        }
        // Fallback: the clock and the process id, which need not be secret, only unique.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos());
        id[..16].copy_from_slice(&(nanos ^ (u128::from(std::process::id()) << 64)).to_be_bytes());
    }
}

pub fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn parse_hex(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(id)
}
