//! A real DNS server for lookups popbridge makes (RFC 6186 SRV): PyPI dnslib's server, run by
//! `dns_stub.py` on 127.0.0.1 (UDP and TCP on one port) with the zone a test gives. scripts/test.sh
//! installs dnslib for the `python3` on PATH; a missing one fails the test, it never skips.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};

pub struct DnsStub {
    pub port: u16,
    child: Child,
    // Held open: the server stops when it closes.
    stdin: Option<ChildStdin>,
    _zone: tempfile::NamedTempFile,
}

impl DnsStub {
    /// Serves `zone` (master-file lines, absolute names).
    pub fn start(zone: &str) -> DnsStub {
        let mut file = tempfile::NamedTempFile::new().expect("zone file");
        std::io::Write::write_all(&mut file, zone.as_bytes()).expect("write the zone");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/util/dns_stub.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(file.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3 tests/util/dns_stub.py");
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read the port");
        let port = line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok()).unwrap_or_else(|| {
            let _ = child.kill();
            panic!(
                "the DNS stub did not start (got {line:?}); it needs dnslib for python3: python3 -m pip install dnslib==0.9.26"
            )
        });
        DnsStub { port, child, stdin, _zone: file }
    }

    /// The value for POPBRIDGE_RESOLVER.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for DnsStub {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
