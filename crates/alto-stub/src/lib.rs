//! Linux stubs on the original inode.
//!
//! A stub is the file itself, not a replacement: same inode, size, owner, mode, ACLs, other
//! extended attributes, atime and mtime (ctime cannot be kept). The first 4 KiB keep their
//! real bytes, everything after is a hole, and the `trusted.alto.stub` extended attribute
//! ([`StubAttr`], format in [`attr`]) names the tier-2 object that holds the content and its
//! SHA-256. This crate turns a file into a stub ([`convert_to_stub`]), brings the content
//! back ([`recall`], [`recall_file`]) and repairs what a crash left half done
//! ([`reconcile`]). It does not talk to tier-2 and does not decide *which* files become
//! stubs; `alto-agent` does both and hands this crate verified facts.
//!
//! **Must never:** leave a file that claims to be whole but is not (the attribute is removed
//! only after the recalled bytes hashed right and were synced); punch a file before the
//! attribute that names its object is durable; touch a file that is open elsewhere or changed
//! since it was copied; follow a symlink or open anything but a regular file; talk to the
//! network or tier-2; guess at an attribute it does not fully understand.
//!
//! # Requirements
//!
//! Root, or more exactly `CAP_SYS_ADMIN` for `trusted.*` attributes and `CAP_LEASE` for
//! leases on files the agent does not own. A file system with extended attributes, hole
//! punching and leases: ext4, xfs, btrfs (tmpfs has no pre-content events, so stubs there are
//! pointless). Transparent recall on access (fanotify `FAN_PRE_ACCESS`) lives in the agent;
//! this crate only provides the fill ([`recall_file`] on the event descriptor).
//!
//! # States and what a restarted agent does
//!
//! | on disk | content | meaning | [`reconcile`] does |
//! |---|---|---|---|
//! | no attribute | whole | an ordinary file | nothing ([`Reconciled::NotAStub`]) |
//! | `stubbing` | whole (hashes to the attribute's SHA-256) | killed before the punch | removes the attribute, restores mtime ([`Reconciled::AbortedStubbing`]); the tier-2 copy stays and the next tiering run dedupes onto it |
//! | `stubbing` | hole(s) after 4 KiB | killed during or after the punch | finishes: punches again, restores mtime, sets `stubbed` ([`Reconciled::FinishedStubbing`]). Safe because `stubbing` is only ever written after the caller verified the object (the contract of [`convert_to_stub`]) |
//! | `stubbing` | differs, no hole | written to after the crash, before the restart | refuses ([`StubError::Conflict`]): a person or the server must decide |
//! | `stubbed` | head + hole | a stub | nothing ([`Reconciled::Stubbed`]), or reports [`Reconciled::Stale`] if size or mtime differ from the attribute (`open(O_TRUNC)` generates no pre-content event) |
//! | `recalling` | whole and hashes right | killed after the recall wrote everything | finishes: restores mtime, removes the attribute ([`Reconciled::FinishedRecall`]) |
//! | `recalling` | partial | killed during the recall | back to `stubbed`: punches the tail again ([`Reconciled::RolledBackRecall`]); the next access recalls again |
//!
//! In every row the file is either whole (and says so by having no attribute) or a stub
//! whose attribute names the object that holds the data. A recall only ever writes the first
//! 4 KiB after the whole content verified, so a stub's head is never replaced by wrong bytes.
//!
//! A restarted agent must run [`reconcile`] on every file in `stubbing` or `recalling`
//! (the scanner reports the attribute) before it lets consumers at those files. Without a
//! running agent nobody holds a lease, so a process could write to a file left in
//! `stubbing`; the table's third row catches the common case, but a write into a partly
//! punched file cannot be told apart from the punch, and is overwritten by the object's
//! content when that stub is recalled.
//!
//! # Leases: what was observed (kernel 6.18, ext4, as root)
//!
//! * `F_SETLEASE F_WRLCK` is refused with `EAGAIN` while *any* other open file description
//!   of the inode exists: another descriptor in the same process (read-only, write-only or
//!   read-write), a child process holding it read-only or open for append, and a read-only
//!   `mmap` whose descriptor was already closed. Root behaves like everyone else here
//!   (`CAP_LEASE` only waives the ownership rule). Once the other descriptor is closed, the
//!   lease is granted.
//! * While the lease is held, another process's `open()` blocks until the lease is released
//!   (or `lease-break-time`, 45 s, passes); an `O_NONBLOCK` open fails with `EWOULDBLOCK`.
//!   `F_GETLEASE` then reports the pending break, which [`convert_to_stub`] checks before
//!   punching and answers by undoing its attribute ([`StubError::InUse`]).
//! * The lease break signals the holder with `SIGIO` by default, which kills a process that
//!   did not handle it, and the kernel resets the lease signal every time a lease is
//!   released (observed: the second lease on the same descriptor killed the test process
//!   with `SIGIO` although `F_SETSIG` had been set for the first). This crate therefore sets
//!   `SIGURG` (ignored by default) before every lease and clears the owner right after, so a
//!   lease break sends no signal at all. The agent must not give `SIGURG` a handler that
//!   does something else. This is the crate's only `unsafe` code: `rustix` has no lease
//!   API, so one private function calls `libc::fcntl` with integer arguments.
//! * Close every descriptor of the file before [`convert_to_stub`], including the one the
//!   upload read from: the lease counts this process's descriptors too.
//!
//! # Holes and blocks
//!
//! After conversion a 1 MiB file on ext4 (4 KiB blocks) keeps 8 blocks of data; the stub
//! attribute (about 230 bytes) does not fit in a 256-byte inode and takes one external 4 KiB
//! attribute block, so `st_blocks` is 16 (8 KiB). [`is_sparse_stub_layout`] allows exactly
//! that: `st_blocks × 512 ≤ 4096 + st_blksize`. A file of at most 4096 bytes is marked but not
//! punched; it is a stub in name only and its recall just verifies and removes the attribute.
//! Hard links share the inode, so every name of a converted file is a stub.

pub mod attr;
mod lease;
mod stub;

pub use attr::{
    AttrError, ChunkRef, StubAttr, StubState, STUB_ATTR_VERSION, STUB_ATTR_VERSION_CHUNKS,
    STUB_XATTR,
};
pub use stub::{
    begin_range_recall, convert_to_stub, convert_to_stub_with, finish_range_recall, identity,
    is_sparse_stub_layout, read_attr, recall, recall_file, reconcile, release_replaced,
    stub_status, FileIdentity, RangeFinish, RangeRecall, Reconciled, StubError, StubOutcome,
    StubStatus, STUB_HEAD,
};
