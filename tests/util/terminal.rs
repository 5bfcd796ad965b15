//! `popbridge` on a terminal, as a person uses it: a pseudo-terminal (rexpect) on which a test
//! waits for each question and types the answer; the whole screen is kept for the checks.

use std::process::Command;
use std::time::Duration;

use rexpect::process::WaitStatus;
use rexpect::session::PtySession;

use crate::util::Bridge;

/// Every answer should come within this (a Dovecot login is well under a second).
pub const STEP: Duration = Duration::from_secs(30);

/// What a person at the terminal sees and types, kept whole for the checks at the end.
pub struct Terminal {
    pty: PtySession,
    screen: String,
}

impl Terminal {
    /// `popbridge account add ARGS` on a pseudo-terminal of its own (stdin, stdout and stderr).
    pub fn account_add(b: &Bridge, args: &[&str]) -> Terminal {
        Terminal::account_add_with(b, args, &[])
    }

    /// The same with more environment (`POPBRIDGE_AUTOCONFIG_URL`, …).
    pub fn account_add_with(b: &Bridge, args: &[&str], env: &[(&str, String)]) -> Terminal {
        let mut cmd = Command::new(crate::util::popbridge_bin());
        cmd.env("POPBRIDGE_CONFIG", &b.config)
            .env("POPBRIDGE_DATA_DIR", &b.data)
            .env_remove("RUST_LOG")
            .env("TERM", "dumb")
            .args(["account", "add"])
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let pty = rexpect::session::spawn_command(cmd, Some(STEP.as_millis() as u64)).expect("spawn on a pty");
        Terminal { pty, screen: String::new() }
    }

    /// Waits until `text` is on the screen.
    pub fn expect(&mut self, text: &str) {
        match self.pty.exp_string(text) {
            Ok(before) => {
                self.screen.push_str(&before);
                self.screen.push_str(text);
            }
            Err(e) => panic!("waiting for {text:?}: {e}\nthe screen so far:\n{}", self.screen),
        }
    }

    /// Waits for the question, then types the answer and Enter.
    pub fn answer(&mut self, question: &str, typed: &str) {
        self.expect(question);
        self.pty.send_line(typed).expect("type on the pty");
    }

    /// Waits until popbridge exits; its exit code.
    pub fn exit_code(mut self) -> (i32, String) {
        match self.pty.exp_eof() {
            Ok(rest) => self.screen.push_str(&rest),
            Err(e) => panic!("waiting for the end: {e}\nthe screen so far:\n{}", self.screen),
        }
        let code = match self.pty.process().wait().expect("wait for popbridge") {
            WaitStatus::Exited(_, code) => code,
            other => panic!("popbridge did not exit normally: {other:?}\nscreen:\n{}", self.screen),
        };
        (code, self.screen)
    }
}
