//! The tiering journal: one append-only file per job in flight,
//! `<state_dir>/tier-journal/<job_id>.jsonl`, one JSON record per line, each write `fsync`ed
//! before the step it announces (or after the acknowledgement it records). See
//! [`crate::tier`] for what the records mean and how a restarted agent uses them.
//!
//! * The file is created complete with its first record (the job document) by writing a
//!   temporary, `fsync`, rename, `fsync` of the directory: a journal either exists with its
//!   job or not at all.
//! * Records are appended with one `write` and one `fdatasync` per call (a call may carry
//!   several records). A torn last line (power loss in the middle of a write) is cut off
//!   when the journal is opened again; every earlier line is whole.
//! * The file is deleted once the server acknowledged the job's completion.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::job::{ExecJob, FileResult, JobEnd};

/// A file's tier-2 facts once the server acknowledged `staged`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StagedFile {
    pub seq: i32,
    pub sha256: String,
    pub object_key: String,
    pub stored_size: u64,
}

/// One line of the journal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Record {
    /// The first record: the job as claimed. Read as the contract reads job documents, so
    /// journals written before documents carried `kind` and `version` still replay.
    Job {
        #[serde(deserialize_with = "job_doc")]
        doc: Box<ExecJob>,
    },
    /// About to copy these files to tier-2 (nothing of them is touched yet).
    Staging { seqs: Vec<i32> },
    /// The server acknowledged `staged` for these files (their registry entries exist).
    Staged { files: Vec<StagedFile> },
    /// About to convert these files to stubs.
    Stubbing { seqs: Vec<i32> },
    /// Final outcomes decided, about to be reported.
    Outcome { results: Vec<FileResult> },
    /// The server acknowledged the final outcomes of these files.
    Acked { seqs: Vec<i32> },
    /// The server acknowledged the job's completion.
    Completed { state: JobEnd },
}

fn job_doc<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Box<ExecJob>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    ExecJob::from_json(&v).map(Box::new).map_err(serde::de::Error::custom)
}

/// What the journal says about one file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeqState {
    pub staging: bool,
    pub staged: Option<StagedFile>,
    pub stubbing: bool,
    pub outcome: Option<FileResult>,
    pub acked: bool,
}

impl SeqState {
    /// The server has this file's final outcome.
    pub fn is_final(&self) -> bool {
        self.acked
    }
}

/// A job's journal, folded.
#[derive(Debug, Clone, PartialEq)]
pub struct JobState {
    pub doc: ExecJob,
    pub seqs: BTreeMap<i32, SeqState>,
    pub completed: Option<JobEnd>,
}

impl JobState {
    pub fn new(doc: ExecJob) -> JobState {
        JobState { doc, seqs: BTreeMap::new(), completed: None }
    }

    /// Applies one record (the same fold on replay and while running).
    pub fn apply(&mut self, r: &Record) {
        match r {
            Record::Job { doc } => self.doc = (**doc).clone(),
            Record::Staging { seqs } => {
                for s in seqs {
                    // A new attempt at a file whose earlier attempt was rolled back.
                    let st = self.seqs.entry(*s).or_default();
                    if !st.acked && st.outcome.is_none() {
                        *st = SeqState { staging: true, ..SeqState::default() };
                    }
                }
            }
            Record::Staged { files } => {
                for f in files {
                    self.seqs.entry(f.seq).or_default().staged = Some(f.clone());
                }
            }
            Record::Stubbing { seqs } => {
                for s in seqs {
                    self.seqs.entry(*s).or_default().stubbing = true;
                }
            }
            Record::Outcome { results } => {
                for r in results {
                    self.seqs.entry(r.seq).or_default().outcome = Some(r.clone());
                }
            }
            Record::Acked { seqs } => {
                for s in seqs {
                    self.seqs.entry(*s).or_default().acked = true;
                }
            }
            Record::Completed { state } => self.completed = Some(*state),
        }
    }

    pub fn is_final(&self, seq: i32) -> bool {
        self.seqs.get(&seq).is_some_and(SeqState::is_final)
    }
}

/// An open journal, appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

/// `<state_dir>/tier-journal`
pub fn journal_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("tier-journal")
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn line(r: &Record) -> io::Result<Vec<u8>> {
    let mut v = serde_json::to_vec(r).map_err(io::Error::other)?;
    v.push(b'\n');
    Ok(v)
}

impl Journal {
    pub fn path_for(dir: &Path, job: Uuid) -> PathBuf {
        dir.join(format!("{job}.jsonl"))
    }

    /// Creates the journal of a newly claimed job (atomically, with its document).
    pub fn create(dir: &Path, doc: &ExecJob) -> io::Result<(Journal, JobState)> {
        fs::create_dir_all(dir)?;
        let path = Self::path_for(dir, doc.job_id);
        let tmp = dir.join(format!(".{}.tmp", doc.job_id));
        let first = Record::Job { doc: Box::new(doc.clone()) };
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&line(&first)?)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        sync_dir(dir)?;
        let file = OpenOptions::new().append(true).open(&path)?;
        let mut state = JobState::new(doc.clone());
        state.apply(&first);
        Ok((Journal { path, file }, state))
    }

    /// Opens an existing journal: replays it (cutting off a torn last line) and returns it
    /// ready to append.
    pub fn open(path: &Path) -> io::Result<(Journal, JobState)> {
        let bytes = fs::read(path)?;
        let whole = match bytes.iter().rposition(|b| *b == b'\n') {
            Some(i) => i + 1,
            None => 0,
        };
        let mut state: Option<JobState> = None;
        for (n, l) in bytes[..whole].split(|b| *b == b'\n').enumerate() {
            if l.is_empty() {
                continue;
            }
            let r: Record = serde_json::from_slice(l).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} line {}: {e}", path.display(), n + 1),
                )
            })?;
            match (&mut state, &r) {
                (None, Record::Job { doc }) => state = Some(JobState::new((**doc).clone())),
                (None, _) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: does not start with the job", path.display()),
                    ))
                }
                (Some(s), r) => s.apply(r),
            }
        }
        let state = state.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{}: empty", path.display()))
        })?;
        let file = OpenOptions::new().write(true).open(path)?;
        if whole < bytes.len() {
            file.set_len(whole as u64)?;
            file.sync_all()?;
        }
        drop(file);
        let file = OpenOptions::new().append(true).open(path)?;
        Ok((Journal { path: path.to_owned(), file }, state))
    }

    /// Appends `records` with one write and makes them durable; applies them to `state`.
    pub fn append(&mut self, state: &mut JobState, records: &[Record]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for r in records {
            buf.extend(line(r)?);
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        for r in records {
            state.apply(r);
        }
        Ok(())
    }

    /// Deletes the journal (the job is over).
    pub fn remove(self) -> io::Result<()> {
        fs::remove_file(&self.path)?;
        if let Some(d) = self.path.parent() {
            sync_dir(d)?;
        }
        Ok(())
    }

    /// Moves an unreadable journal aside (`<name>.bad`) so it stops blocking the worker.
    pub fn quarantine(path: &Path) -> io::Result<PathBuf> {
        let mut bad = path.as_os_str().to_owned();
        bad.push(".bad");
        let bad = PathBuf::from(bad);
        fs::rename(path, &bad)?;
        Ok(bad)
    }

    /// Journals present in `dir`, oldest job first (job ids are UUIDv7).
    pub fn list(dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        match fs::read_dir(dir) {
            Ok(rd) => {
                for e in rd {
                    let p = e?.path();
                    let is_journal = p.extension().is_some_and(|x| x == "jsonl")
                        && p.file_stem()
                            .and_then(|s| s.to_str())
                            .is_some_and(|s| s.parse::<Uuid>().is_ok());
                    if is_journal {
                        out.push(p);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Compression, ExecTarget, FileOutcome, JobWork, TargetKind, TierWork};

    fn doc() -> ExecJob {
        ExecJob {
            version: 1,
            job_id: Uuid::now_v7(),
            customer_id: Uuid::now_v7(),
            host_id: Uuid::now_v7(),
            lease_expires_at: None,
            bandwidth_bytes_per_second: None,
            work: JobWork::Tier(TierWork {
                rule_id: None,
                priority: 10,
                compression: Some(Compression::Zstd),
                storage_target: ExecTarget {
                    id: Uuid::nil(),
                    name: "default".into(),
                    kind: TargetKind::Directory,
                    location: String::new(),
                    config: serde_json::Value::Null,
                },
                tiered_destination: String::new(),
                files: vec![],
            }),
        }
    }

    #[test]
    fn replay_folds_records_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let d = doc();
        let (mut j, mut st) = Journal::create(dir.path(), &d).unwrap();
        j.append(&mut st, &[Record::Staging { seqs: vec![0, 1, 2] }]).unwrap();
        let staged = StagedFile {
            seq: 0,
            sha256: "ab".repeat(32),
            object_key: "ab".repeat(32),
            stored_size: 5,
        };
        j.append(&mut st, &[Record::Staged { files: vec![staged.clone()] }]).unwrap();
        j.append(
            &mut st,
            &[
                Record::Outcome { results: vec![FileResult::skipped(1, "changed")] },
                Record::Acked { seqs: vec![1] },
            ],
        )
        .unwrap();
        j.append(&mut st, &[Record::Stubbing { seqs: vec![0] }]).unwrap();
        let path = Journal::path_for(dir.path(), d.job_id);
        drop(j);
        // A torn record at the end.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"t\":\"acked\",\"se").unwrap();
        drop(f);
        let (mut j2, mut st2) = Journal::open(&path).unwrap();
        assert_eq!(st2, st);
        assert!(st2.is_final(1));
        assert!(!st2.is_final(0));
        let s0 = &st2.seqs[&0];
        assert!(s0.stubbing && s0.staged == Some(staged));
        // Appending after the cut continues on a fresh line.
        j2.append(
            &mut st2,
            &[
                Record::Outcome {
                    results: vec![FileResult::stored(
                        0,
                        FileOutcome::Stubbed,
                        "ab".repeat(32),
                        "ab".repeat(32),
                        5,
                    )],
                },
                Record::Acked { seqs: vec![0] },
            ],
        )
        .unwrap();
        let (_, st3) = Journal::open(&path).unwrap();
        assert!(st3.is_final(0));
        assert_eq!(st3.seqs[&2], SeqState { staging: true, ..SeqState::default() });
        assert_eq!(Journal::list(dir.path()).unwrap(), vec![path.clone()]);
        j2.remove().unwrap();
        assert!(Journal::list(dir.path()).unwrap().is_empty());
    }

    /// A journal the previous agent wrote (its job document had no `kind` or `version`, and
    /// spelled compression and the target kind as strings) replays into the contract's types.
    #[test]
    fn a_journal_of_the_previous_agent_replays() {
        let dir = tempfile::tempdir().unwrap();
        let job = Uuid::now_v7();
        let lines = [
            serde_json::json!({"t": "job", "doc": {
                "job_id": job, "customer_id": Uuid::nil(), "host_id": Uuid::nil(),
                "rule_id": null, "priority": 5, "compression": "zstd",
                "storage_target": {"id": Uuid::nil(), "name": "default", "kind": "directory",
                    "location": "/mnt/t2"},
                "tiered_destination": "2026/12/05", "lease_expires_at": null,
                "files": [{"seq": 7, "file_id": Uuid::nil(), "file_path": "/d/a",
                    "path_escaped": false, "file_size": 3,
                    "last_modified": "2026-12-01T00:00:00Z", "inode": 12, "state": "pending"}]}}),
            serde_json::json!({"t": "staging", "seqs": [7]}),
            serde_json::json!({"t": "outcome", "results": [
                {"seq": 7, "outcome": "skipped", "error": "changed"}]}),
        ];
        let path = Journal::path_for(dir.path(), job);
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, text).unwrap();
        let (_, st) = Journal::open(&path).unwrap();
        assert_eq!(st.doc.job_id, job);
        assert_eq!(st.doc.version, 1);
        let w = st.doc.tier().expect("a tier job");
        assert_eq!(w.compression, Some(Compression::Zstd));
        assert_eq!(w.storage_target.kind, TargetKind::Directory);
        assert_eq!(w.files[0].seq, 7);
        assert_eq!(st.seqs[&7].outcome, Some(FileResult::skipped(7, "changed")));
        assert!(!st.is_final(7));
    }
}
