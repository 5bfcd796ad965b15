//! A private, real Dovecot 2.3 per test (POP3 + STLS, POP3S, IMAP + STARTTLS, IMAPS on free
//! loopback ports), mirroring the team harness's `dovecot-up.sh` in Rust.
//!
//! Everything lives in a temp dir under /tmp (world-traversable: as root, Dovecot drops to
//! `dovenull`/`dovecot` and the mail files belong to `nobody`; as a normal user everything runs
//! as that user). Only the master PID this instance wrote is ever signalled.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::certs::{self, CertPair, TestCa};

/// Which certificate Dovecot presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertKind {
    /// Signed by the test CA for `localhost` + `127.0.0.1`.
    Ca,
    /// Self-signed for `localhost` + `127.0.0.1` (verification against the CA must fail).
    SelfSigned,
    /// Signed by the test CA, but for `wrong.example.invalid`.
    WrongHost,
    /// Signed by the test CA for `localhost` + `127.0.0.1`, expired in 2021.
    Expired,
}

#[derive(Clone, Debug)]
pub struct DovecotOpts {
    pub users: Vec<(String, String)>,
    pub cert: CertKind,
    /// Dovecot's delay after a failed login (Dovecot's own default is 2 s; ours is 0).
    pub auth_failure_delay_secs: u32,
    /// Dovecot's anvil auth penalty: after a failed login, later logins from the same IP are
    /// delayed 2, 4, 8, 15 s (decaying). Off by default (anvil's `anvil-auth-penalty` socket
    /// gets `mode = 0`), so tests with several wrong passwords stay fast; a failed login still
    /// takes ~0.5 s (Dovecot checks its failure queue every 500 ms) plus the failure delay.
    pub auth_penalty: bool,
    /// Validate OAuth2 bearer tokens (SASL XOAUTH2 / OAUTHBEARER) with passdb oauth2 against an
    /// introspection endpoint; the users' passwords still work with PLAIN and LOGIN.
    pub oauth2: Option<OAuth2Passdb>,
    /// Run Dovecot's SMTP submission service too (implicit TLS on `Dovecot::submission_port`,
    /// the same passdbs), relaying every message to plain SMTP on 127.0.0.1 at this port.
    pub submission_relay_port: Option<u16>,
    /// Run Dovecot's LMTP service too (plain, on `Dovecot::lmtp_port` on 127.0.0.1), delivering
    /// into the same users' maildirs (RCPT `user@anything`).
    pub lmtp: bool,
}

/// Dovecot's passdb oauth2 (`tests/util/oauth.rs` has the server it asks).
#[derive(Clone, Debug)]
pub struct OAuth2Passdb {
    /// RFC 7662 introspection endpoint, asked with `introspection_mode = post` (the token, the
    /// client ID and secret in a form body).
    pub introspection_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// The SASL mechanisms offered for tokens: `xoauth2`, `oauthbearer` or both.
    pub mechanisms: Vec<String>,
}

impl Default for DovecotOpts {
    fn default() -> Self {
        DovecotOpts {
            users: vec![("alice".into(), "alice-pw".into()), ("bob".into(), "bob-pw".into())],
            cert: CertKind::Ca,
            auth_failure_delay_secs: 0,
            auth_penalty: false,
            oauth2: None,
            submission_relay_port: None,
            lmtp: false,
        }
    }
}

pub struct Dovecot {
    /// The temp dir holding config, run/, state/, log/, home/<user>/Maildir, tls/.
    pub dir: PathBuf,
    /// Plain POP3 (STLS offered).
    pub pop3_port: u16,
    /// POP3 over implicit TLS.
    pub pop3s_port: u16,
    /// Plain IMAP (STARTTLS offered).
    pub imap_port: u16,
    /// IMAP over implicit TLS.
    pub imaps_port: u16,
    /// SMTP submission over implicit TLS (0 unless `DovecotOpts::submission_relay_port`).
    pub submission_port: u16,
    /// LMTP (plain; 0 unless `DovecotOpts::lmtp`).
    pub lmtp_port: u16,
    /// The test CA's certificate (trust this to verify a `CertKind::Ca` server).
    pub ca_pem_path: PathBuf,
    /// The certificate and key Dovecot presents.
    pub server_cert: CertPair,
    /// The files of `server_cert` (e.g. to pin the self-signed certificate).
    pub server_cert_path: PathBuf,
    pub ca: TestCa,
    /// uid:gid owning the maildirs (nobody when root, else ourselves).
    pub mail_uid: u32,
    pub mail_gid: u32,
    tempdir: Option<tempfile::TempDir>,
    users: std::sync::Mutex<Vec<(String, String)>>,
    master_pid: Option<u32>,
    delivered: AtomicU64,
    /// Why earlier attempts of `start` failed (each retried with fresh ports).
    pub failed_starts: Vec<String>,
}

fn is_root() -> bool {
    fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

fn id_of(flag: &str, user: Option<&str>) -> String {
    let mut cmd = Command::new("id");
    cmd.arg(flag);
    if let Some(u) = user {
        cmd.arg(u);
    }
    let out = cmd.output().expect("run id");
    assert!(out.status.success(), "id {flag} {user:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Candidate ports for one start (distinct; free a moment ago). Dovecot binds them itself, so a
/// port taken meanwhile makes its start fail with "Address already in use": `start` then tries
/// again with new ones.
fn free_ports() -> [u16; 4] {
    super::fresh_ports::<4>()
}

/// How often `start` tries again with fresh ports when one was taken ("Address already in use").
pub const START_ATTEMPTS_IN_USE: usize = 8;
/// How often it tries again after any other failure (a slow start under load, say).
pub const START_ATTEMPTS_OTHER: usize = 3;

/// Whether a failed start failed because a port was taken (Dovecot exits 89 and says
/// "listen(127.0.0.1, PORT) failed: Address already in use").
fn port_in_use(err: &str) -> bool {
    err.contains("Address already in use")
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // the state is the first field after the ")" closing the command name
        Ok(s) => s.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')).unwrap_or(false),
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).stderr(std::process::Stdio::null()).status();
}

/// Size as on the wire (every line end as CRLF), i.e. Dovecot's `W=`.
fn crlf_size(data: &[u8]) -> usize {
    let lf = data.iter().filter(|&&b| b == b'\n').count();
    let crlf = data.windows(2).filter(|w| w == b"\r\n").count();
    data.len() + lf - crlf
}

/// The passdb sections and `auth_mechanisms`: the passwd-file alone, or beside passdb oauth2
/// (whose settings file is written to `dir`).
fn passdbs(opts: &DovecotOpts, dir: &Path) -> String {
    let ds = dir.display();
    let passwd = |mechanisms: &str| {
        format!(
            "passdb {{\n  driver = passwd-file\n{mechanisms}  args = scheme=PLAIN username_format=%n {ds}/users.passwd\n}}\n"
        )
    };
    let Some(o) = &opts.oauth2 else {
        // apop: the passdb holds plaintext passwords, which APOP (and CRAM-MD5) need
        return passwd("") + "auth_mechanisms = plain login cram-md5 apop\n";
    };
    let ext = dir.join("dovecot-oauth2.conf.ext");
    let settings = format!(
        "introspection_url = {}\nintrospection_mode = post\nclient_id = {}\nclient_secret = {}\n\
         username_attribute = username\nactive_attribute = active\nactive_value = true\ntimeout_msecs = 60000\n",
        o.introspection_url, o.client_id, o.client_secret
    );
    fs::write(&ext, settings).expect("write dovecot-oauth2.conf.ext");
    let tokens = o.mechanisms.join(" ");
    passwd("  mechanisms = plain login\n")
        + &format!(
            "passdb {{\n  driver = oauth2\n  mechanisms = {tokens}\n  args = {}\n}}\nauth_mechanisms = plain login {tokens}\n",
            ext.display()
        )
}

/// Dovecot's submission service, relaying to the sink, or nothing.
fn submission_conf(opts: &DovecotOpts, port: u16) -> String {
    let Some(relay) = opts.submission_relay_port else {
        return String::new();
    };
    format!(
        "hostname = localhost\nsubmission_relay_host = 127.0.0.1\nsubmission_relay_port = {relay}\n\
         submission_relay_ssl = no\nservice submission-login {{\n  chroot =\n  inet_listener submissions {{\n\
         port = {port}\n    ssl = yes\n  }}\n}}\n"
    )
}

impl Dovecot {
    /// Start a private Dovecot; waits until all four ports accept connections.
    /// Dovecot binds the ports itself and exits if one is taken (nothing else listens on them
    /// then, so "accepting" means Dovecot): a port taken meanwhile gets fresh ports, up to
    /// [`START_ATTEMPTS_IN_USE`] times; any other failure is retried up to
    /// [`START_ATTEMPTS_OTHER`] times. Panics with the Dovecot log if it still fails.
    pub fn start(opts: DovecotOpts) -> Dovecot {
        Self::start_trying_first(opts, None)
    }

    /// `start`, with the first attempt on `first` (to test the retry on a taken port).
    pub fn start_trying_first(opts: DovecotOpts, mut first: Option<[u16; 4]>) -> Dovecot {
        let (mut in_use, mut other) = (Vec::new(), Vec::new());
        while in_use.len() < START_ATTEMPTS_IN_USE && other.len() < START_ATTEMPTS_OTHER {
            let ports = first.take().unwrap_or_else(free_ports);
            match Self::try_start(&opts, ports) {
                Ok(mut d) => {
                    d.failed_starts = in_use.into_iter().chain(other).collect();
                    return d;
                }
                Err(e) if port_in_use(&e) => in_use.push(e),
                Err(e) => other.push(e),
            }
        }
        panic!(
            "dovecot failed to start ({} times on a taken port, {} times otherwise); last:\n{}",
            in_use.len(),
            other.len(),
            other.last().or(in_use.last()).map(String::as_str).unwrap_or("")
        );
    }

    fn try_start(opts: &DovecotOpts, ports: [u16; 4]) -> Result<Dovecot, String> {
        assert!(
            Path::new("/usr/sbin/dovecot").exists(),
            "/usr/sbin/dovecot missing: apt-get install dovecot-core dovecot-pop3d dovecot-imapd"
        );
        assert!(
            !opts.lmtp || Path::new("/usr/lib/dovecot/lmtp").exists(),
            "/usr/lib/dovecot/lmtp missing: apt-get install dovecot-lmtpd"
        );
        let tempdir =
            tempfile::Builder::new().prefix("popbridge-dovecot.").tempdir_in("/tmp").expect("create temp dir");
        let d = tempdir.path().to_path_buf();
        // the mail user (not root) must traverse it
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
        for sub in ["run", "state", "log", "home", "tls"] {
            fs::create_dir_all(d.join(sub)).expect("mkdir");
        }

        let root = is_root();
        let (login_user, internal_user, internal_group, mail_user) = if root {
            ("dovenull".to_string(), "dovecot".to_string(), "dovecot".to_string(), "nobody".to_string())
        } else {
            let me = id_of("-un", None);
            (me.clone(), me.clone(), id_of("-gn", None), me)
        };
        let mail_uid: u32 = id_of("-u", Some(&mail_user)).parse().expect("uid");
        let mail_gid: u32 = id_of("-g", Some(&mail_user)).parse().expect("gid");

        // TLS
        let ca = TestCa::new();
        let names = ["localhost", "127.0.0.1"];
        let server_cert = match opts.cert {
            CertKind::Ca => ca.issue(&names),
            CertKind::SelfSigned => certs::self_signed(&names),
            CertKind::WrongHost => ca.issue(&["wrong.example.invalid"]),
            CertKind::Expired => ca.issue_expired(&names),
        };
        let tls = d.join("tls");
        let ca_pem_path = certs::write(&tls, "ca.pem", &ca.ca_pem());
        let server_cert_path = certs::write(&tls, "server.pem", &server_cert.cert_pem);
        let key_path = certs::write(&tls, "server.key", &server_cert.key_pem);
        // Dovecot reads the key as root before dropping privileges; keep it private.
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).expect("chmod key");

        let [pop3_port, pop3s_port, imap_port, imaps_port] = ports;
        let submission_port = if opts.submission_relay_port.is_some() { super::free_port() } else { 0 };
        let lmtp_port = if opts.lmtp { super::free_port() } else { 0 };

        let dovecot = Dovecot {
            dir: d.clone(),
            pop3_port,
            pop3s_port,
            imap_port,
            imaps_port,
            submission_port,
            lmtp_port,
            ca_pem_path,
            server_cert,
            server_cert_path: server_cert_path.clone(),
            ca,
            mail_uid,
            mail_gid,
            tempdir: Some(tempdir),
            users: std::sync::Mutex::new(opts.users.clone()),
            master_pid: None,
            delivered: AtomicU64::new(0),
            failed_starts: Vec::new(),
        };
        let mut dovecot = dovecot;

        for (user, _) in &opts.users {
            for sub in ["cur", "new", "tmp"] {
                fs::create_dir_all(dovecot.maildir(user).join(sub)).expect("mkdir maildir");
            }
            dovecot.chown_tree(&d.join("home").join(user));
        }
        dovecot.chown(&d.join("home"));
        dovecot.write_passwd(&opts.users);

        let dh =
            if Path::new("/usr/share/dovecot/dh.pem").exists() { "ssl_dh = </usr/share/dovecot/dh.pem" } else { "" };
        let name = d.file_name().unwrap().to_string_lossy().to_string();
        let ds = d.display();
        let passdb_conf = passdbs(opts, &d);
        let submission_protocol = if submission_port != 0 { " submission" } else { "" };
        let submission = submission_conf(opts, submission_port);
        let lmtp_protocol = if lmtp_port != 0 { " lmtp" } else { "" };
        let lmtp = if lmtp_port != 0 {
            format!(
                "service lmtp {{\n  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {lmtp_port}\n  }}\n}}\n"
            )
        } else {
            String::new()
        };
        let conf = format!(
            r#"# generated by tests/util/dovecot.rs (mirrors dovecot-up.sh) — private test instance
instance_name = {name}
base_dir = {ds}/run
state_dir = {ds}/state
log_path = {ds}/log/dovecot.log
listen = 127.0.0.1
protocols = pop3 imap{submission_protocol}{lmtp_protocol}
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
first_valid_uid = {mail_uid}
first_valid_gid = {mail_gid}
mail_location = maildir:~/Maildir
{passdb_conf}userdb {{
  driver = passwd-file
  args = username_format=%n {ds}/users.passwd
}}
disable_plaintext_auth = no
auth_failure_delay = {delay}s
auth_verbose = yes
mail_max_userip_connections = 100
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
{dh}
ssl_min_protocol = TLSv1.2
# RETR must not flip \Seen, so every run sees identical server state
pop3_no_flag_updates = yes
# Dovecot's default, spelled out: stable UIDLs
pop3_uidl_format = %08Xu%08Xv
service pop3-login {{
  chroot =
  inet_listener pop3 {{
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = {pop3s_port}
    ssl = yes
  }}
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
{penalty}}}
{submission}{lmtp}"#,
            delay = opts.auth_failure_delay_secs,
            // login_trusted_networks does NOT skip the penalty in 2.3.19 (tried); closing
            // anvil's penalty socket is the documented way to turn it off completely
            penalty = if opts.auth_penalty { "" } else { "  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n" },
            cert = server_cert_path.display(),
            key = key_path.display(),
        );
        let conf_path = d.join("dovecot.conf");
        fs::write(&conf_path, conf).expect("write dovecot.conf");

        // Not `output()`: the daemonized master inherits stdout/stderr, so pipes would never
        // reach EOF. Send both to a file instead.
        let start_log = d.join("log/start.out");
        let out_file = fs::File::create(&start_log).expect("create start.out");
        let status = Command::new("/usr/sbin/dovecot")
            .arg("-c")
            .arg(&conf_path)
            .stdin(std::process::Stdio::null())
            .stdout(out_file.try_clone().expect("dup"))
            .stderr(out_file)
            .status()
            .expect("run /usr/sbin/dovecot");
        // Whatever happened, remember a master we may have started so Drop stops it.
        dovecot.master_pid = dovecot.read_master_pid();
        if !status.success() {
            return Err(format!(
                "dovecot exited with {status}\noutput: {}\nlog:\n{}",
                fs::read_to_string(&start_log).unwrap_or_default(),
                dovecot.log()
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while dovecot.master_pid.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            dovecot.master_pid = dovecot.read_master_pid();
        }
        for port in
            [pop3_port, pop3s_port, imap_port, imaps_port, submission_port, lmtp_port].into_iter().filter(|p| *p != 0)
        {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            loop {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    break;
                }
                let gone = dovecot.master_pid.is_none_or(|p| !alive(p));
                if gone || Instant::now() > deadline {
                    return Err(format!(
                        "port {port} not accepting (master alive: {})\nlog:\n{}",
                        !gone,
                        dovecot.log()
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(dovecot)
    }

    fn read_master_pid(&self) -> Option<u32> {
        fs::read_to_string(self.dir.join("run/master.pid")).ok().and_then(|s| s.trim().parse().ok())
    }

    fn chown(&self, path: &Path) {
        if is_root() {
            std::os::unix::fs::chown(path, Some(self.mail_uid), Some(self.mail_gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        }
    }

    fn chown_tree(&self, path: &Path) {
        self.chown(path);
        if path.is_dir() {
            for e in fs::read_dir(path).expect("read_dir") {
                self.chown_tree(&e.expect("dir entry").path());
            }
        }
    }

    fn write_passwd(&self, users: &[(String, String)]) {
        let d = self.dir.display();
        let mut text = String::new();
        for (u, p) in users {
            text.push_str(&format!("{u}:{{PLAIN}}{p}:{}:{}::{d}/home/{u}::\n", self.mail_uid, self.mail_gid));
        }
        let path = self.dir.join("users.passwd");
        // Dovecot re-reads a passwd-file when its mtime or size changes: make sure the
        // mtime (seconds) moves even for a same-length rewrite within one second.
        let old_mtime = fs::metadata(&path).ok().and_then(|m| m.modified().ok());
        let tmp = self.dir.join("users.passwd.tmp");
        {
            let mut f = fs::File::create(&tmp).expect("create passwd tmp");
            f.write_all(text.as_bytes()).expect("write passwd");
            let now = SystemTime::now();
            let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
            let mtime = match old_mtime {
                Some(old) if secs(now) <= secs(old) => UNIX_EPOCH + Duration::from_secs(secs(old) + 1),
                _ => now,
            };
            f.set_modified(mtime).expect("set passwd mtime");
        }
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).expect("chmod passwd");
        fs::rename(&tmp, &path).expect("install passwd");
    }

    /// `<dir>/home/<user>/Maildir`.
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir.join("home").join(user).join("Maildir")
    }

    /// Deliver messages (raw bytes, CRLF) into the user's maildir `cur/`, in this order:
    /// file names `<t>.M<i>P<pid>.test,S=<size>,W=<crlf size>:2,` with increasing `t`
    /// (also the mtime = Dovecot's INTERNALDATE), so Dovecot's POP3 order is this order,
    /// also across several calls. Written to `tmp/` first, then renamed; owned by the mail user.
    pub fn deliver(&self, user: &str, messages: &[Vec<u8>]) {
        let md = self.maildir(user);
        assert!(md.join("cur").is_dir(), "no maildir for user {user}");
        let pid = std::process::id();
        for data in messages {
            let i = self.delivered.fetch_add(1, Ordering::SeqCst);
            let t = 1_700_000_000 + i;
            let name = format!("{t}.M{i:06}P{pid}.test,S={},W={}:2,", data.len(), crlf_size(data));
            let tmp = md.join("tmp").join(&name);
            {
                let mut f = fs::File::create(&tmp).expect("create message");
                f.write_all(data).expect("write message");
                f.set_modified(UNIX_EPOCH + Duration::from_secs(t)).expect("set mtime");
            }
            self.chown(&tmp);
            fs::rename(&tmp, md.join("cur").join(&name)).expect("move message to cur/");
        }
    }

    /// Gives the user's (not yet opened) maildir this UIDVALIDITY, by writing Dovecot's uidlist
    /// header before Dovecot first looks. Dovecot's UIDLs are UID + UIDVALIDITY
    /// (`pop3_uidl_format = %08Xu%08Xv`): two mailboxes with the same one list the same UIDLs.
    pub fn set_uidvalidity(&self, user: &str, uidvalidity: u32) {
        let path = self.maildir(user).join("dovecot-uidlist");
        assert!(!path.exists(), "{user}'s maildir was opened already");
        fs::write(&path, format!("3 V{uidvalidity} N1\n")).expect("write dovecot-uidlist");
        self.chown(&path);
    }

    /// Paths of the message files in the user's `new/` and `cur/`, sorted by file name.
    pub fn message_files(&self, user: &str) -> Vec<PathBuf> {
        self.folder_files(user, "")
    }

    /// The same for one of the user's folders (`".Archive"`; `""` is INBOX).
    pub fn folder_files(&self, user: &str, folder: &str) -> Vec<PathBuf> {
        let md = self.maildir(user).join(folder);
        let mut files: Vec<PathBuf> = ["new", "cur"]
            .iter()
            .filter_map(|sub| fs::read_dir(md.join(sub)).ok())
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        files
    }

    /// The raw bytes of every message currently in the user's maildir (new/ and cur/),
    /// sorted by file name. A file deleted between listing and reading is skipped: a POP3
    /// session whose client was killed right after QUIT may still be expunging.
    pub fn messages(&self, user: &str) -> Vec<Vec<u8>> {
        self.message_files(user)
            .iter()
            .filter_map(|p| match fs::read(p) {
                Ok(b) => Some(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => panic!("read {}: {e}", p.display()),
            })
            .collect()
    }

    /// Change a user's password by rewriting the passwd-file; Dovecot re-reads it. Returns
    /// after the next full second (≤ 1 s), from when on Dovecot uses the new password.
    pub fn set_password(&self, user: &str, password: &str) {
        let mut users = self.users.lock().unwrap();
        match users.iter_mut().find(|(u, _)| u == user) {
            Some(entry) => entry.1 = password.to_string(),
            None => panic!("unknown user {user}"),
        }
        self.write_passwd(&users);
        // Dovecot stats a passwd-file at most once per second (per auth process): wait for the
        // next full second so the very next login sees the new password.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let to_next = Duration::from_secs(now.as_secs() + 1) - now;
        std::thread::sleep(to_next + Duration::from_millis(20));
    }

    /// The Dovecot log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("log/dovecot.log")).unwrap_or_default()
    }

    /// Stop this instance's master (SIGTERM, SIGKILL after 5 s); its children exit with it.
    /// Idempotent. Only ever signals the PID from this instance's own `run/master.pid`.
    pub fn stop(&mut self) {
        let Some(pid) = self.master_pid.take().or_else(|| self.read_master_pid()) else {
            return;
        };
        if !alive(pid) {
            return;
        }
        signal(pid, "-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if alive(pid) {
            signal(pid, "-KILL");
            let deadline = Instant::now() + Duration::from_secs(2);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // master.pid stays behind after a stop: forget it so a second stop() does nothing
        let _ = fs::remove_file(self.dir.join("run/master.pid"));
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
        if let Some(t) = self.tempdir.take() {
            let _ = t.close();
        }
    }
}
