//! The command lines that set a bridge up: `init` with its listeners, and `account add` for the
//! peers the tests use (a fake server, Dovecot's alice). One home for each, so a test says only
//! what differs (its name, port, password command, extra flags).
#![allow(dead_code)]

use super::dovecot::Dovecot;
use super::{Bridge, LOCAL_PASSWORD, Run};

/// `init` as user `me` with the local password on stdin, and the four listeners in the order
/// `--imap`, `--imaps`, `--submission`, `--submissions` (each an address or `off`).
pub fn init_args([imap, imaps, submission, submissions]: [&str; 4]) -> [&str; 12] {
    [
        "init",
        "--password-stdin",
        "--user",
        "me",
        "--imap",
        imap,
        "--imaps",
        imaps,
        "--submission",
        submission,
        "--submissions",
        submissions,
    ]
}

/// A POP account for `account add`, on a server at 127.0.0.1.
#[derive(Clone, Copy, Debug)]
pub struct PopAccount<'a> {
    pub name: &'a str,
    pub email: &'a str,
    pub port: u16,
    /// `--pop-tls`: plain, starttls or implicit.
    pub tls: &'a str,
    pub user: &'a str,
    /// `--password-command`; `None` is `--password-stdin` (the caller writes the password).
    pub password_command: Option<&'a str>,
}

impl<'a> PopAccount<'a> {
    /// Account Fake (u@example.com): user `u` on the plain fake server at `port`, the password
    /// from `echo p`.
    pub fn fake(port: u16) -> PopAccount<'a> {
        PopAccount {
            name: "Fake",
            email: "u@example.com",
            port,
            tls: "plain",
            user: "u",
            password_command: Some("echo p"),
        }
    }

    /// The `account add` command line for it, `extra` flags after.
    pub fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "account",
            "add",
            "--name",
            self.name,
            "--email",
            self.email,
            "--pop-host",
            "127.0.0.1",
            "--pop-port",
            &self.port.to_string(),
            "--pop-tls",
            self.tls,
            "--pop-user",
            self.user,
        ]
        .map(str::to_string)
        .into();
        match self.password_command {
            Some(command) => args.extend(["--password-command".to_string(), command.to_string()]),
            None => args.push("--password-stdin".to_string()),
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    }
}

/// `args` borrowed as the `&[&str]` that [`Bridge::run`] takes.
pub fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

impl Bridge {
    /// `account add` of `account` (its password from its command), `extra` flags after.
    pub fn add_pop_account(&self, account: &PopAccount, extra: &[&str]) -> Run {
        assert!(account.password_command.is_some(), "a password on stdin: use Bridge::add_account");
        self.run(&strs(&account.args(extra)))
    }

    /// Account Work: Dovecot's alice over POP3S, its CA trusted; `extra` flags after.
    pub fn add_dovecot_alice(&self, d: &Dovecot, extra: &[&str]) -> Run {
        let ca = d.ca_pem_path.display().to_string();
        let mut flags = vec!["--ca-file", &ca];
        flags.extend_from_slice(extra);
        self.add_account("Work", d.pop3s_port, "implicit", "alice", "alice-pw", &flags)
    }

    /// `init` of an uninitialised bridge with these four listeners (see [`init_args`]).
    pub fn init_listening_on(&self, listeners: [&str; 4]) {
        self.run_stdin(&init_args(listeners), LOCAL_PASSWORD).expect(0);
    }
}

mod tests {
    use super::*;

    /// A command line written as one string (no argument holds a space).
    fn words(line: &str) -> Vec<&str> {
        line.split(' ').collect()
    }

    #[test]
    fn init_args_name_each_listener() {
        assert_eq!(
            init_args(["127.0.0.1:1", "off", "127.0.0.1:3", "off"]).to_vec(),
            words(
                "init --password-stdin --user me --imap 127.0.0.1:1 --imaps off --submission 127.0.0.1:3 --submissions off"
            )
        );
    }

    #[test]
    fn a_fake_account_is_user_u_on_plain_loopback_with_a_password_command() {
        let args = PopAccount::fake(1110).args(&["--no-test"]);
        assert_eq!(
            args[..15],
            words(
                "account add --name Fake --email u@example.com --pop-host 127.0.0.1 --pop-port 1110 --pop-tls plain --pop-user u --password-command"
            )[..]
        );
        assert_eq!(args[15..], ["echo p", "--no-test"]);
    }

    #[test]
    fn without_a_command_the_password_comes_on_stdin() {
        let a = PopAccount { name: "Work", email: "me@example.com", password_command: None, ..PopAccount::fake(995) };
        assert_eq!(
            strs(&a.args(&["--auth", "plain"])),
            words(
                "account add --name Work --email me@example.com --pop-host 127.0.0.1 --pop-port 995 --pop-tls plain --pop-user u --password-stdin --auth plain"
            )
        );
    }
}
