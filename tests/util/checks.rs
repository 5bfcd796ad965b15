//! Checks several test files make of their surroundings.
#![allow(dead_code)]

/// This process's limit on open files (`Max open files` in /proc/self/limits; unlimited: u64::MAX).
pub fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("read /proc/self/limits");
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Fails the test, saying what to do, unless it may open `at_least` files; `why` names what it opens.
pub fn assert_open_files(at_least: u64, why: &str) {
    let nofile = open_files_limit();
    assert!(
        nofile >= at_least,
        "{why}: raise the open files limit (ulimit -n 4096; scripts/test.sh does), now {nofile}"
    );
}

mod tests {
    #[test]
    fn the_open_files_limit_is_the_soft_limit_of_this_process() {
        // The same number the shell's `ulimit -n` reports for this process.
        let out = std::process::Command::new("sh").args(["-c", "ulimit -n"]).output().expect("sh");
        let shown = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let want = if shown == "unlimited" { u64::MAX } else { shown.parse().expect("a number") };
        assert_eq!(super::open_files_limit(), want);
        super::assert_open_files(1, "one file");
    }
}
