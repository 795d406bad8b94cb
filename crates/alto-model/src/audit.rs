//! The audit trail's hash chain.
//!
//! Each tenant (and the platform) has its own chain. Entry `n` stores
//! `hash_n = sha256(canonical(entry_n) ‖ hash_{n-1})` as lowercase hex, with 64 zeros before
//! the first entry. The canonical form encodes every field as `<byte length>:<value>\n`, or
//! `~\n` for a missing value, in a fixed order, so no two different entries share an encoding.
//!
//! The same function is implemented in SQL (`audit_canonical` in the migrations), which is
//! what appends entries; [`AuditRecord::chain_hash`] is what verification uses. A test in
//! `alto-db` proves the two agree.

use sha2::{Digest, Sha256};

/// The hash that precedes the first entry of every chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hashed fields of one audit entry, exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in its chain, starting at 1 with no gaps.
    pub seq: i64,
    /// The tenant, or `None` for the platform chain.
    pub customer_id: Option<uuid::Uuid>,
    /// Microseconds since the Unix epoch.
    pub occurred_at_micros: i64,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub action: String,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub outcome: String,
    pub source_ip: Option<String>,
    /// The details JSON as PostgreSQL renders `jsonb::text`.
    pub details: String,
}

fn field(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(s) => {
            out.extend_from_slice(s.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(s.as_bytes());
            out.push(b'\n');
        }
        None => out.extend_from_slice(b"~\n"),
    }
}

impl AuditRecord {
    /// The canonical byte string that is hashed.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        field(&mut out, Some(&self.seq.to_string()));
        field(&mut out, self.customer_id.map(|c| c.to_string()).as_deref());
        field(&mut out, Some(&self.occurred_at_micros.to_string()));
        field(&mut out, Some(&self.actor_kind));
        field(&mut out, self.actor_id.as_deref());
        field(&mut out, self.actor_name.as_deref());
        field(&mut out, Some(&self.action));
        field(&mut out, self.target_kind.as_deref());
        field(&mut out, self.target_id.as_deref());
        field(&mut out, Some(&self.outcome));
        field(&mut out, self.source_ip.as_deref());
        field(&mut out, Some(&self.details));
        out
    }

    /// `sha256(canonical ‖ prev_hash)` as lowercase hex.
    pub fn chain_hash(&self, prev_hash: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.canonical());
        h.update(prev_hash.as_bytes());
        hex::encode(h.finalize())
    }
}

/// What verification found wrong first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainFault {
    /// The entry's stored hash does not match its content and predecessor.
    HashMismatch { seq: i64 },
    /// The entry's stored `prev_hash` is not its predecessor's hash.
    BrokenLink { seq: i64 },
    /// Sequence numbers jump: entries `expected..found` are missing.
    Missing { expected: i64, found: i64 },
    /// The chain head records more entries than exist.
    TruncatedTail { last_present: i64, head_seq: i64 },
}

/// Incremental verifier: feed entries in `seq` order.
#[derive(Debug)]
pub struct ChainVerifier {
    expected_seq: i64,
    prev_hash: String,
    checked: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self { expected_seq: 1, prev_hash: GENESIS_HASH.to_owned(), checked: 0 }
    }
}

impl ChainVerifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next entry; stops at the first fault.
    pub fn push(
        &mut self,
        rec: &AuditRecord,
        stored_prev: &str,
        stored_hash: &str,
    ) -> Result<(), ChainFault> {
        if rec.seq != self.expected_seq {
            return Err(ChainFault::Missing { expected: self.expected_seq, found: rec.seq });
        }
        if stored_prev != self.prev_hash {
            return Err(ChainFault::BrokenLink { seq: rec.seq });
        }
        if rec.chain_hash(stored_prev) != stored_hash {
            return Err(ChainFault::HashMismatch { seq: rec.seq });
        }
        self.prev_hash = stored_hash.to_owned();
        self.expected_seq += 1;
        self.checked += 1;
        Ok(())
    }

    /// Compares the end of the walk with the chain head record.
    pub fn finish(&self, head_seq: i64, head_hash: &str) -> Result<u64, ChainFault> {
        let last = self.expected_seq - 1;
        if head_seq > last {
            return Err(ChainFault::TruncatedTail { last_present: last, head_seq });
        }
        if head_seq == last && head_hash != self.prev_hash && last > 0 {
            return Err(ChainFault::HashMismatch { seq: last });
        }
        Ok(self.checked)
    }

    pub fn checked(&self) -> u64 {
        self.checked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: i64, action: &str) -> AuditRecord {
        AuditRecord {
            seq,
            customer_id: None,
            occurred_at_micros: 1_700_000_000_000_000 + seq,
            actor_kind: "user".into(),
            actor_id: Some("u1".into()),
            actor_name: None,
            action: action.into(),
            target_kind: None,
            target_id: None,
            outcome: "success".into(),
            source_ip: Some("127.0.0.1".into()),
            details: "{}".into(),
        }
    }

    fn chain(n: i64) -> Vec<(AuditRecord, String, String)> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|i| {
                let r = rec(i, "x");
                let h = r.chain_hash(&prev);
                let out = (r, prev.clone(), h.clone());
                prev = h;
                out
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(5);
        let mut v = ChainVerifier::new();
        for (r, p, h) in &c {
            v.push(r, p, h).unwrap();
        }
        assert_eq!(v.finish(5, &c[4].2), Ok(5));
    }

    #[test]
    fn tampered_field_is_named() {
        let mut c = chain(5);
        c[2].0.action = "y".into();
        let mut v = ChainVerifier::new();
        let err = c.iter().try_for_each(|(r, p, h)| v.push(r, p, h)).unwrap_err();
        assert_eq!(err, ChainFault::HashMismatch { seq: 3 });
    }

    #[test]
    fn deleted_entry_is_named() {
        let mut c = chain(5);
        c.remove(1);
        let mut v = ChainVerifier::new();
        let err = c.iter().try_for_each(|(r, p, h)| v.push(r, p, h)).unwrap_err();
        assert_eq!(err, ChainFault::Missing { expected: 2, found: 3 });
    }

    #[test]
    fn truncated_tail_is_named() {
        let c = chain(5);
        let mut v = ChainVerifier::new();
        for (r, p, h) in &c[..3] {
            v.push(r, p, h).unwrap();
        }
        assert_eq!(
            v.finish(5, &c[4].2),
            Err(ChainFault::TruncatedTail { last_present: 3, head_seq: 5 })
        );
    }

    #[test]
    fn null_and_empty_differ() {
        let mut a = rec(1, "x");
        let mut b = rec(1, "x");
        a.actor_name = None;
        b.actor_name = Some(String::new());
        assert_ne!(a.canonical(), b.canonical());
    }
}
