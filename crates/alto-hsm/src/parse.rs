//! Walking a buffer of fanotify event records (safe code, byte offsets only): each record is
//! `struct fanotify_event_metadata` (24 bytes) followed by info records up to `event_len`; the
//! one this crate needs is the RANGE record of a pre-content event.

use crate::sys::FAN_EVENT_INFO_TYPE_RANGE;

/// Size of `struct fanotify_event_metadata`.
pub(crate) const METADATA_LEN: usize = 24;
/// Size of `struct fanotify_event_info_range`.
const RANGE_LEN: usize = 24;

/// The byte range a pre-content event is about. The kernel rounds it to whole pages
/// (offset down, end up). `count == 0` means "the whole file" (`FICLONE`, a truncate to a
/// page-aligned size). A range is no reliable description of the access: a truncate to an
/// unaligned size N reports the page around N (measured on 6.18.44: `truncate(10000)` gives
/// offset 8192, count 4096, just like a read), and an `O_APPEND` write reports the file
/// position, not EOF. Whoever fills must therefore treat a range as a lower bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub offset: u64,
    pub count: u64,
}

impl Range {
    /// True when the event does not name a usable range (`count == 0`).
    pub fn is_whole_file(&self) -> bool {
        self.count == 0
    }
}

/// One record, before its descriptor gets an owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawEvent {
    pub(crate) fd: i32,
    pub(crate) mask: u64,
    pub(crate) pid: i32,
    pub(crate) range: Option<Range>,
}

/// Why the rest of a buffer could not be walked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) String);

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(a)
}

/// Parses every complete record in `bytes`. Records before a malformed one are returned
/// together with the error, so their descriptors still get owners (and answers).
pub(crate) fn parse(bytes: &[u8]) -> (Vec<RawEvent>, Option<Malformed>) {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < METADATA_LEN {
            return (out, Some(Malformed(format!("{} trailing bytes", rest.len()))));
        }
        let event_len = u32_at(rest, 0) as usize;
        let vers = rest[4];
        let metadata_len = u16_at(rest, 6) as usize;
        if vers != libc::FANOTIFY_METADATA_VERSION {
            return (out, Some(Malformed(format!("metadata version {vers}"))));
        }
        if metadata_len < METADATA_LEN || event_len < metadata_len || event_len > rest.len() {
            return (
                out,
                Some(Malformed(format!(
                    "event_len {event_len}, metadata_len {metadata_len}, {} bytes left",
                    rest.len()
                ))),
            );
        }
        let mask = u64_at(rest, 8);
        let fd = u32_at(rest, 16) as i32;
        let pid = u32_at(rest, 20) as i32;
        let mut range = None;
        let mut ip = metadata_len;
        while ip + 4 <= event_len {
            let info_type = rest[ip];
            let len = u16_at(rest, ip + 2) as usize;
            if len == 0 || ip + len > event_len {
                break;
            }
            if info_type == FAN_EVENT_INFO_TYPE_RANGE && len >= RANGE_LEN {
                range = Some(Range { offset: u64_at(rest, ip + 8), count: u64_at(rest, ip + 16) });
            }
            ip += len;
        }
        out.push(RawEvent { fd, mask, pid, range });
        pos += event_len;
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::FAN_PRE_ACCESS;

    fn record(fd: i32, pid: i32, infos: &[Vec<u8>]) -> Vec<u8> {
        let info_len: usize = infos.iter().map(Vec::len).sum();
        let mut b = Vec::new();
        b.extend_from_slice(&((METADATA_LEN + info_len) as u32).to_ne_bytes());
        b.push(libc::FANOTIFY_METADATA_VERSION);
        b.push(0);
        b.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
        b.extend_from_slice(&FAN_PRE_ACCESS.to_ne_bytes());
        b.extend_from_slice(&fd.to_ne_bytes());
        b.extend_from_slice(&pid.to_ne_bytes());
        for i in infos {
            b.extend_from_slice(i);
        }
        b
    }

    fn range_info(offset: u64, count: u64) -> Vec<u8> {
        let mut b = vec![FAN_EVENT_INFO_TYPE_RANGE, 0];
        b.extend_from_slice(&(RANGE_LEN as u16).to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&offset.to_ne_bytes());
        b.extend_from_slice(&count.to_ne_bytes());
        b
    }

    fn pidfd_info(pidfd: i32) -> Vec<u8> {
        // FAN_EVENT_INFO_TYPE_PIDFD (4), len 8: comes before RANGE with FAN_REPORT_PIDFD.
        let mut b = vec![4, 0];
        b.extend_from_slice(&8u16.to_ne_bytes());
        b.extend_from_slice(&pidfd.to_ne_bytes());
        b
    }

    #[test]
    fn walks_records_by_event_len_and_finds_the_range_after_other_infos() {
        let mut buf = record(7, 100, &[range_info(4096, 12288)]);
        buf.extend(record(8, 101, &[pidfd_info(9), range_info(30, 0)]));
        buf.extend(record(10, 102, &[]));
        let (events, err) = parse(&buf);
        assert_eq!(err, None);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].fd, 7);
        assert_eq!(events[0].pid, 100);
        assert_eq!(events[0].mask, FAN_PRE_ACCESS);
        assert_eq!(events[0].range, Some(Range { offset: 4096, count: 12288 }));
        assert_eq!(events[1].range, Some(Range { offset: 30, count: 0 }));
        assert!(events[1].range.is_some_and(|r| r.is_whole_file()));
        assert_eq!(events[2].range, None);
    }

    #[test]
    fn returns_the_good_records_before_a_malformed_one() {
        let mut buf = record(7, 100, &[range_info(0, 4096)]);
        let mut bad = record(8, 100, &[]);
        bad[4] = 2; // wrong metadata version
        buf.extend(bad);
        let (events, err) = parse(&buf);
        assert_eq!(events.len(), 1);
        assert!(err.is_some());

        let mut short = record(7, 100, &[range_info(0, 4096)]);
        short.truncate(40);
        let (events, err) = parse(&short);
        assert!(events.is_empty());
        assert!(err.is_some());
    }
}
