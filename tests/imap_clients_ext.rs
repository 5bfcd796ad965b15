//! Python IMAPClient (PyPI `imapclient`, what Python users script their mail with) using the
//! issue 15 extensions the way its users do: `multiappend()` (MULTIAPPEND),
//! `sort()` on DATE / REVERSE DATE / ARRIVAL / SUBJECT / FROM / DISPLAYFROM (SORT, SORT=DISPLAY),
//! `thread()` REFERENCES and ORDEREDSUBJECT (THREAD), and CONDSTORE through `enable()`,
//! `select_folder()`'s HIGHESTMODSEQ, `fetch(..., modifiers=['CHANGEDSINCE n'])`,
//! `search(['MODSEQ', n])` and `folder_status(..., ['HIGHESTMODSEQ'])`; and the keyword a STORE
//! created appears in the next SELECT's FLAGS and PERMANENTFLAGS.
//!
//! Perl's Mail::IMAPClient (Debian `libmail-imapclient-perl`; its `sort()` and `thread()` are what
//! Perl mail scripts use for server-side sorting) runs the same sort and thread cases. Mutt 2.2
//! (Debian `mutt`, run under `script`) reopens a mailbox from its header cache with CONDSTORE and
//! QRESYNC (`UID FETCH … (CHANGEDSINCE m VANISHED)`).
//!
//! Each script runs against the test Dovecot (the expectations were checked there) and against
//! popbridge, as separate tests, so it is plain which server passes.

use crate::util::Bridge;
use crate::util::dovecot::{Dovecot, DovecotOpts};
use crate::util::imap_clients::{self as ic, Security, Target};

/// The IMAPClient script: each part (MULTIAPPEND, SORT, SORT=DISPLAY, THREAD=REFERENCES,
/// THREAD=ORDEREDSUBJECT, CONDSTORE, keywords in FLAGS) prints PASS or FAIL (a capability not
/// advertised is a FAIL) and the next runs anyway; it exits non-zero naming the failed parts, or
/// prints `IMAPCLIENT OK`. Expected orders are in append positions 1..5 (UIDs after SELECT).
const SCRIPT: &str = r#"
import datetime, traceback

RESULTS = []

def part(name, cap=None):
    """Runs the decorated check at once; a failure (or `cap` not advertised) is recorded, and
    the next part runs anyway, so one run shows every part's state."""
    def run(fn):
        try:
            if cap and not C.has_capability(cap):
                raise AssertionError("%s is not advertised" % cap)
            fn()
            RESULTS.append((name, None))
            print("PASS", name)
        except Exception as e:
            RESULTS.append((name, "%s: %s" % (type(e).__name__, e)))
            print("FAIL", name, "--", type(e).__name__, e)
            traceback.print_exc()
        return fn
    return run

print("CAPABILITIES", C.capabilities())
CONDSTORE = C.has_capability("CONDSTORE")
if CONDSTORE:
    # IMAPClient refuses ENABLE once a mailbox is selected: first thing, as its users do.
    enabled = C.enable("CONDSTORE")
    print("ENABLE", enabled)

BOX = "IMAPClient"
if C.folder_exists(BOX):  # a rerun against a server kept from before
    C.delete_folder(BOX)
C.create_folder(BOX)
utc = datetime.timezone.utc
# (From, Subject, Date, Message-ID, References): sort and thread keys with the RFC 5256 traps —
# a base subject under "Re: [list] Fwd: ... (fwd)", a Date in another zone, a lower-case subject.
MAILS = [
    ("Carol <carol@example.com>", "Meeting", "Mon, 3 Mar 2025 10:00:00 +0000", "<m1@example.com>", None),
    ("alice@example.com", "Re: Meeting", "Mon, 3 Mar 2025 11:00:00 +0000", "<m2@example.com>", "<m1@example.com>"),
    ("Bob Smith <bsmith@example.com>", "Apples", "Mon, 3 Mar 2025 09:00:00 +0000", "<m3@example.com>", None),
    ("\"Dave\" <dave@example.com>", "Re: [list] Fwd: Meeting (fwd)", "Mon, 3 Mar 2025 12:00:00 +0000",
     "<m4@example.com>", "<m1@example.com>"),
    ("Eve <eve@example.com>", "zebra", "Mon, 3 Mar 2025 08:00:00 +0100", "<m5@example.com>", None),
]
MSGS = []
for i, (frm, subj, date, mid, refs) in enumerate(MAILS):
    raw = "From: %s\r\nTo: me@example.com\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: %s\r\n" % (frm, subj, date, mid)
    if refs:
        raw += "References: %s\r\nIn-Reply-To: %s\r\n" % (refs, refs)
    raw += "\r\nmessage %d\r\n" % (i + 1)
    # INTERNALDATE in reverse order of the list: ARRIVAL sorts the other way round.
    MSGS.append({"msg": raw, "flags": [r"\Seen"] if i % 2 else [],
                 "date": datetime.datetime(2025, 3, 10 - i, 12, 0, 0, tzinfo=utc)})

@part("MULTIAPPEND: five messages in one APPEND", "MULTIAPPEND")
def _():
    resp = C.multiappend(BOX, MSGS)
    print("MULTIAPPEND", resp)
    assert resp[0] == "OK" and b"[APPENDUID " in resp[1][0], resp

if C.folder_status(BOX, [b"MESSAGES"])[b"MESSAGES"] == 0:
    for m in MSGS:  # so that the other parts can run
        C.append(BOX, m["msg"], m["flags"], m["date"])

info = C.select_folder(BOX)
assert info[b"EXISTS"] == 5, info
UIDS = C.search("ALL")
assert len(UIDS) == 5, UIDS
U = dict(enumerate(UIDS, 1))  # append position -> UID

def by_pos(*pos):
    return [U[p] for p in pos]

def sorts(checks):
    for crit, want in checks:
        got = C.sort(crit)
        print("SORT", crit, got)
        assert got == want, (crit, got, want)

@part("SORT", "SORT")
def _():
    sorts([
        (["DATE"], by_pos(5, 3, 1, 2, 4)),            # 08:00 +0100 is 07:00 UTC: first
        (["REVERSE DATE"], by_pos(4, 2, 1, 3, 5)),
        (["ARRIVAL"], by_pos(5, 4, 3, 2, 1)),
        (["SUBJECT"], by_pos(3, 1, 2, 4, 5)),         # apples, meeting x3 (ties by sequence), zebra
        (["FROM"], by_pos(2, 3, 1, 4, 5)),            # alice, bsmith, carol, dave, eve (mailbox part)
        (["SUBJECT", "REVERSE DATE"], by_pos(3, 4, 2, 1, 5)),
    ])
    got = C.sort(["DATE"], ["SEEN"])
    assert got == by_pos(2, 4), got

@part("SORT=DISPLAY", "SORT=DISPLAY")
def _():
    sorts([(["DISPLAYFROM"], by_pos(2, 3, 1, 4, 5))])  # alice@…, Bob Smith, Carol, Dave, Eve

def shape(t):
    """A thread tuple as text, with append positions for UIDs: (5)(3)(1 (2) (4))."""
    pos = {v: k for k, v in U.items()}
    def one(x):
        return "(" + " ".join(one(y) if isinstance(y, tuple) else str(pos[y]) for y in x) + ")"
    return "".join(one(x) for x in t)

# Threads in the order of their first message's date, children by date (RFC 5256).
@part("THREAD=REFERENCES", "THREAD=REFERENCES")
def _():
    refs = C.thread("REFERENCES")
    print("THREAD REFERENCES", refs, shape(refs))
    assert shape(refs) == "(5)(3)(1 (2) (4))", refs
    unseen = C.thread("REFERENCES", ["UNSEEN"])
    assert shape(unseen) == "(5)(3)(1)", unseen

@part("THREAD=ORDEREDSUBJECT", "THREAD=ORDEREDSUBJECT")
def _():
    ordered = C.thread("ORDEREDSUBJECT")
    print("THREAD ORDEREDSUBJECT", ordered, shape(ordered))
    assert shape(ordered) == "(5)(3)(1 (2) (4))", ordered

# CONDSTORE: HIGHESTMODSEQ on SELECT, CHANGEDSINCE, SEARCH MODSEQ, STATUS HIGHESTMODSEQ.
@part("CONDSTORE", "CONDSTORE")
def _():
    info = C.select_folder(BOX)
    m0 = info[b"HIGHESTMODSEQ"]
    print("HIGHESTMODSEQ", m0)
    C.add_flags([U[3]], [b"$Label1", b"\\Flagged"])
    changed = C.fetch(UIDS, ["FLAGS"], modifiers=["CHANGEDSINCE %d" % m0])
    print("CHANGEDSINCE", changed)
    assert list(changed) == [U[3]], changed
    m1 = changed[U[3]][b"MODSEQ"][0]
    assert m1 > m0, (m0, m1)
    assert b"$Label1" in changed[U[3]][b"FLAGS"], changed
    found = C.search(["MODSEQ", m0 + 1])
    print("SEARCH MODSEQ", found, getattr(found, "modseq", None))
    assert found == [U[3]] and found.modseq == m1, (found, getattr(found, "modseq", None))
    assert C.fetch(UIDS, ["FLAGS"], modifiers=["CHANGEDSINCE %d" % m1]) == {}
    st = C.folder_status(BOX, [b"HIGHESTMODSEQ", b"MESSAGES"])
    assert st[b"HIGHESTMODSEQ"] >= m1 and st[b"MESSAGES"] == 5, st

# A keyword a STORE created is announced in FLAGS and PERMANENTFLAGS of the next SELECT.
@part("keywords in FLAGS and PERMANENTFLAGS")
def _():
    C.add_flags([U[2]], [b"$Label2"])
    info = C.select_folder(BOX)
    print("FLAGS", info[b"FLAGS"], info.get(b"PERMANENTFLAGS"))
    assert b"$Label2" in info[b"FLAGS"] and b"$Label2" in info[b"PERMANENTFLAGS"], info

C.close_folder()
C.delete_folder(BOX)
C.logout()
failed = [(n, e) for n, e in RESULTS if e]
if failed:
    sys.exit("IMAPClient parts failed: " + "; ".join("%s (%s)" % f for f in failed))
print("IMAPCLIENT OK")
"#;

/// `check` against a fresh test Dovecot (alice, plaintext IMAP).
fn on_dovecot(check: fn(&Target)) {
    let d = Dovecot::start(DovecotOpts::default());
    check(&Target::dovecot(&d, "alice", "alice-pw", Security::Plain));
}

/// `check` against a fresh popbridge daemon (combined login, plaintext IMAP).
fn on_popbridge(check: fn(&Target)) {
    let b = Bridge::with_listeners();
    let _daemon = b.daemon();
    check(&b.target(Security::Plain, "me"));
}

/// Runs [`SCRIPT`] against `t` and checks it got to the end.
pub fn check_imapclient(t: &Target) {
    let out = ic::imapclient(t, SCRIPT);
    assert!(out.contains("IMAPCLIENT OK"), "the IMAPClient script stopped early:\n{out}");
}

#[test]
fn imapclient_sort_thread_condstore_multiappend_against_dovecot() {
    on_dovecot(check_imapclient);
}

#[test]
fn imapclient_sort_thread_condstore_multiappend_against_popbridge() {
    on_popbridge(check_imapclient);
}

/// The Mail::IMAPClient script (Uid => 1): the same five messages, SORT on DATE / REVERSE DATE /
/// ARRIVAL / SUBJECT / FROM and with a search key, THREAD REFERENCES and ORDEREDSUBJECT; each part
/// PASS or FAIL, exit 1 naming the failed parts, `MAIL-IMAPCLIENT OK` at the end.
const PERL_SCRIPT: &str = r#"use strict;
use warnings;
use Mail::IMAPClient;

my $imap = Mail::IMAPClient->new(
    Server => '127.0.0.1', Port => $ENV{PB_IMAP_PORT}, User => $ENV{PB_IMAP_USER},
    Password => $ENV{PB_IMAP_PASS}, Uid => 1, Timeout => 10,
) or die "connect/login: $@\n";
my @fail;
sub part {
    my ($name, $cap, $code) = @_;
    if ($cap && !$imap->has_capability($cap)) {
        push @fail, "$name ($cap is not advertised)";
        print "FAIL $name: $cap is not advertised\n";
        return;
    }
    my $err = eval { $code->(); 1 } ? undef : ($@ || 'died');
    if ($err) { chomp $err; push @fail, "$name ($err)"; print "FAIL $name: $err\n" } else { print "PASS $name\n" }
}

my $box = 'MailIMAPClient';
$imap->delete($box) if $imap->exists($box);
$imap->create($box) or die "create: " . $imap->LastError . "\n";
my @mails = (
    ['Carol <carol@example.com>', 'Meeting', 'Mon, 3 Mar 2025 10:00:00 +0000', '<m1@example.com>', undef],
    ['alice@example.com', 'Re: Meeting', 'Mon, 3 Mar 2025 11:00:00 +0000', '<m2@example.com>', '<m1@example.com>'],
    ['Bob Smith <bsmith@example.com>', 'Apples', 'Mon, 3 Mar 2025 09:00:00 +0000', '<m3@example.com>', undef],
    ['"Dave" <dave@example.com>', 'Re: [list] Fwd: Meeting (fwd)', 'Mon, 3 Mar 2025 12:00:00 +0000',
     '<m4@example.com>', '<m1@example.com>'],
    ['Eve <eve@example.com>', 'zebra', 'Mon, 3 Mar 2025 08:00:00 +0100', '<m5@example.com>', undef],
);
my $i = 0;
for my $m (@mails) {
    my ($from, $subj, $date, $mid, $refs) = @$m;
    my $raw = "From: $from\r\nTo: me\@example.com\r\nSubject: $subj\r\nDate: $date\r\nMessage-ID: $mid\r\n";
    $raw .= "References: $refs\r\nIn-Reply-To: $refs\r\n" if $refs;
    $i++;
    $raw .= "\r\nmessage $i\r\n";
    my $flags = $i % 2 ? '' : '\\Seen';
    defined $imap->append_string($box, $raw, $flags, sprintf('%02d-Mar-2025 12:00:00 +0000', 11 - $i))
        or die "append: " . $imap->LastError . "\n";
}
$imap->select($box) or die "select: " . $imap->LastError . "\n";
my @uids = @{ $imap->search('ALL') };
@uids == 5 or die "search ALL: @uids\n";
my %pos = map { $uids[$_] => $_ + 1 } 0 .. $#uids;
sub positions { join ' ', map { $pos{$_} } @_ }

part('SORT', 'SORT', sub {
    for ([ 'DATE', '5 3 1 2 4' ], [ 'REVERSE DATE', '4 2 1 3 5' ], [ 'ARRIVAL', '5 4 3 2 1' ],
         [ 'SUBJECT', '3 1 2 4 5' ], [ 'FROM', '2 3 1 4 5' ]) {
        my ($crit, $want) = @$_;
        my @got = $imap->sort($crit, 'UTF-8', 'ALL');
        my $got = positions(@got);
        print "SORT ($crit): $got\n";
        $got eq $want or die "SORT ($crit): $got, wanted $want\n";
    }
    my $got = positions($imap->sort('DATE', 'UTF-8', 'SEEN'));
    $got eq '2 4' or die "SORT (DATE) SEEN: $got\n";
});

sub shape {
    my ($t) = @_;
    join '', map { ref $_ ? '(' . join(' ', map { ref $_ ? shape([$_]) : $pos{$_} } @$_) . ')' : "($pos{$_})" } @$t;
}
for my $alg ('REFERENCES', 'ORDEREDSUBJECT') {
    part("THREAD=$alg", "THREAD=$alg", sub {
        my $t = $imap->thread($alg, 'UTF-8', 'ALL') or die "THREAD $alg: " . $imap->LastError . "\n";
        my $got = shape($t);
        print "THREAD $alg: $got\n";
        $got eq '(5)(3)(1 (2) (4))' or die "THREAD $alg: $got\n";
    });
}
$imap->close;
$imap->delete($box);
$imap->logout;
if (@fail) { print STDERR "Mail::IMAPClient parts failed: ", join('; ', @fail), "\n"; exit 1 }
print "MAIL-IMAPCLIENT OK\n";
"#;

/// Runs [`PERL_SCRIPT`] against `t` (plaintext IMAP) and checks it got to the end.
pub fn check_mail_imapclient(t: &Target) {
    assert_eq!(t.security, Security::Plain, "the Perl script speaks plaintext IMAP");
    let (code, out, err) = ic::run_program("perl", t, PERL_SCRIPT, "perl (Mail::IMAPClient)");
    assert!(
        code == 0 && out.contains("MAIL-IMAPCLIENT OK"),
        "Mail::IMAPClient script failed (exit {code}; needs libmail-imapclient-perl)\nstdout:\n{out}\nstderr:\n{err}"
    );
}

#[test]
fn perl_mail_imapclient_sort_and_thread_against_dovecot() {
    on_dovecot(check_mail_imapclient);
}

#[test]
fn perl_mail_imapclient_sort_and_thread_against_popbridge() {
    on_popbridge(check_mail_imapclient);
}

/// Mutt 2.2 (Debian `mutt`) with `imap_condstore` and `imap_qresync` and a header cache, run
/// under `script` (it wants a terminal) with keys pushed from its muttrc; `-d 2` logs its IMAP
/// commands to `$HOME/.muttdebug0`, which is what we read back.
struct Mutt {
    home: tempfile::TempDir,
    url: String,
}

impl Mutt {
    fn new(t: &Target) -> Mutt {
        assert_eq!(t.security, Security::Plain, "mutt is configured for plaintext IMAP here");
        let url = format!("imap://{}:{}@127.0.0.1:{}/", t.user, t.password, t.host_port);
        Mutt { home: tempfile::tempdir().expect("temp dir"), url }
    }

    /// Opens `mailbox`, types `keys`, quits; returns the IMAP debug log of this run.
    fn run(&self, mailbox: &str, keys: &str) -> String {
        let h = self.home.path();
        let rc = h.join("muttrc");
        let conf = format!(
            "set folder=\"{}\"\nset spoolfile=\"+{mailbox}\"\nset header_cache=\"{}\"\n\
             set imap_condstore=yes\nset imap_qresync=yes\nset ssl_starttls=no\nset ssl_force_tls=no\n\
             set wait_key=no\nset quit=yes\nset mark_old=no\nset move=no\nset record=\"\"\npush \"{keys}<quit>\"\n",
            self.url,
            h.join("hcache").display()
        );
        std::fs::write(&rc, conf).expect("write muttrc");
        let log = h.join(".muttdebug0");
        let _ = std::fs::remove_file(&log);
        let mut cmd = std::process::Command::new("script");
        cmd.args(["-qec", &format!("mutt -n -F {} -d 2", rc.display()), "/dev/null"])
            .env("HOME", h)
            .env("TERM", "xterm");
        let (code, _, err) = ic::run_with_timeout(cmd, std::time::Duration::from_secs(60), "mutt (under script)");
        assert_eq!(code, 0, "mutt failed (needs the mutt package): {err}");
        std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("mutt's debug log {}: {e}", log.display()))
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.home.path().join(name)).unwrap_or_default()
    }
}

/// The IMAP commands mutt sent (`4> a0006 UID FETCH …` lines of its debug log).
fn mutt_commands(log: &str) -> Vec<&str> {
    log.lines().filter_map(|l| l.split_once("> a").map(|(_, c)| c)).collect()
}

/// Mutt opens a mailbox (full header download into its cache), another client flags one message
/// and expunges another, and mutt opens it again: with CONDSTORE/QRESYNC it asks only for what
/// changed (`UID FETCH 1:n (FLAGS) (CHANGEDSINCE m VANISHED)`, the answer's `VANISHED (EARLIER)`
/// drops the expunged one) instead of downloading the headers again; and it shows the right
/// messages and flags (piped out from its index: all, and `~F` flagged).
pub fn check_mutt_qresync(t: &Target) {
    let mailbox = "MuttQresync";
    let mut r = ic::Raw::connect_login(t);
    r.cmd("m1", &format!("CREATE {mailbox}")).assert_ok("CREATE");
    for i in 1..=3 {
        let m = format!(
            "From: a@example.com\r\nSubject: mutt-{i}\r\nMessage-ID: <mutt-{i}@example.com>\r\n\r\nbody {i}\r\n"
        );
        r.send(format!("m2{i} APPEND {mailbox} {{{}+}}\r\n", m.len()).as_bytes());
        r.send(m.as_bytes());
        r.send(b"\r\n");
        r.read_until_tagged(&format!("m2{i}")).assert_ok("APPEND");
    }
    let mutt = Mutt::new(t);
    let first = mutt.run(mailbox, "");
    assert!(
        mutt_commands(&first).iter().any(|c| c.contains("BODY.PEEK[HEADER.FIELDS")),
        "the first open downloads the headers:\n{first}"
    );
    r.cmd("m3", &format!("SELECT {mailbox}")).assert_ok("SELECT");
    r.cmd("m4", "STORE 2 +FLAGS (\\Flagged)").assert_ok("STORE");
    r.cmd("m5", "STORE 3 +FLAGS (\\Deleted)").assert_ok("STORE");
    r.cmd("m6", "EXPUNGE").assert_ok("EXPUNGE");
    r.logout();
    let h = mutt.home.path().display().to_string();
    let second = mutt.run(
        mailbox,
        &format!(
            "<tag-pattern>~A<enter><tag-prefix><pipe-message>cat > {h}/all.txt<enter><untag-pattern>~A<enter>\
             <limit>~F<enter><pipe-message>cat > {h}/flagged.txt<enter>"
        ),
    );
    let subjects = |f: &str| -> Vec<String> {
        mutt.file(f).lines().filter_map(|l| l.strip_prefix("Subject: ")).map(str::to_string).collect()
    };
    assert_eq!(subjects("all.txt"), ["mutt-1", "mutt-2"], "mutt's index after the reopen:\n{second}");
    assert_eq!(subjects("flagged.txt"), ["mutt-2"], "mutt's ~F after the reopen:\n{second}");
    let cmds = mutt_commands(&second);
    assert!(
        cmds.iter().any(|c| c.contains("UID FETCH") && c.contains("(CHANGEDSINCE ") && c.contains(" VANISHED)")),
        "mutt resynchronised with CONDSTORE/QRESYNC (UID FETCH … (CHANGEDSINCE m VANISHED)): {cmds:#?}"
    );
    assert!(
        !second.contains("QRESYNC failed") && !cmds.iter().any(|c| c.contains("BODY.PEEK[HEADER.FIELDS")),
        "and did not download the headers again: {cmds:#?}"
    );
}

#[test]
fn mutt_resyncs_with_qresync_against_dovecot() {
    on_dovecot(check_mutt_qresync);
}

#[test]
fn mutt_resyncs_with_qresync_against_popbridge() {
    on_popbridge(check_mutt_qresync);
}
