//! Who is behind an access: the process and user of a thread id, from `/proc`.

use alto_api_types::RecallProcess;

/// Reads `/proc/<tid>/status` (tgid, real uid) and `/proc/<tid>/exe`. A thread that exited
/// meanwhile gives what could be read (at least the id).
pub fn of_thread(tid: i32, owners: &crate::owners::Owners) -> RecallProcess {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u32>().ok())
    };
    let pid = field("Tgid:").and_then(|p| i32::try_from(p).ok()).unwrap_or(tid);
    let uid = field("Uid:");
    let exe = std::fs::read_link(format!("/proc/{tid}/exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    RecallProcess { pid, exe, uid, user: uid.map(|u| owners.name(u)) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_thread_is_read_back() {
        use std::os::unix::fs::MetadataExt as _;
        let link = std::fs::read_link("/proc/thread-self").unwrap();
        let tid: i32 = link.file_name().unwrap().to_str().unwrap().parse().unwrap();
        let p = super::of_thread(tid, &crate::owners::Owners::from_system());
        assert_eq!(p.pid, std::process::id() as i32);
        assert_eq!(p.uid, Some(std::fs::metadata("/proc/self").unwrap().uid()));
        assert_eq!(
            p.exe.as_deref(),
            std::env::current_exe().ok().and_then(|e| e.to_str().map(String::from)).as_deref()
        );
    }
}
