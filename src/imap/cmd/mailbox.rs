//! The mailbox commands that do not select: CREATE, DELETE, RENAME, SUBSCRIBE / UNSUBSCRIBE, LIST /
//! LSUB and STATUS (RFC 3501 §6.3.3-10, RFC 6154 SPECIAL-USE).

use super::*;
use crate::imap::syntax::list::{List, Selection};

pub(super) fn protected(info: &MailboxInfo) -> Option<String> {
    info.account.as_ref().map(|a| {
        format!("\"{}\" is where account {a}'s mail arrives; to remove it, remove the account (popbridge account remove {a})", info.name)
    })
}

pub(super) async fn create(s: &mut Session, m: &Mailbox<'_>) -> Reply {
    let Some(view) = s.view().cloned() else { return wrong_state() };
    let Some(client) = client_name(m) else {
        return no(Some("CANNOT"), "not a valid mailbox name (modified UTF-7 expected)");
    };
    let client = client.trim_end_matches(DELIMITER).to_string();
    if client.eq_ignore_ascii_case("INBOX") {
        return no(Some("ALREADYEXISTS"), "INBOX always exists");
    }
    if !names::valid_new_name(&client) {
        return no(Some("CANNOT"), "invalid mailbox name");
    }
    let Some(store_name) = view.to_store(&client) else {
        return no(Some("CANNOT"), "invalid mailbox name");
    };
    let special =
        view.special_use(&client).filter(|_| view.virtual_specials().contains(&store_name)).map(str::to_string);
    let r = s.store().create_mailbox_tree(store_name, special).await;
    match r {
        Ok(true) => {
            s.notify();
            ok(None, "CREATE completed")
        }
        Ok(false) => no(Some("ALREADYEXISTS"), "mailbox already exists"),
        Err(e) => db_no(e),
    }
}

pub(super) async fn delete(s: &mut Session, m: &Mailbox<'_>) -> Reply {
    let info = match resolve_mailbox(s, m, false).await {
        Ok(Some((_, i))) => i,
        Ok(None) => {
            return no(Some("NONEXISTENT"), "no such mailbox");
        }
        Err(e) => return db_no(e),
    };
    if info.name == "INBOX" {
        return no(Some("CANNOT"), "INBOX cannot be deleted");
    }
    if let Some(why) = protected(&info) {
        return no(Some("CANNOT"), &why);
    }
    let (id, name) = (info.id, info.name.clone());
    let r = s.store().delete_mailbox_leaf(id, name).await;
    match r {
        Ok(true) => {
            if let State::Selected { view, mb } = &s.state
                && mb.id == id
            {
                s.state = State::Authenticated { view: view.clone() };
            }
            s.notify();
            ok(None, "DELETE completed")
        }
        Ok(false) => no(Some("INUSE"), "the mailbox has subfolders: delete them first"),
        Err(e) => db_no(e),
    }
}

pub(super) async fn rename(s: &mut Session, from: &Mailbox<'_>, to: &Mailbox<'_>) -> Reply {
    let Some(view) = s.view().cloned() else { return wrong_state() };
    let info = match resolve_mailbox(s, from, false).await {
        Ok(Some((_, i))) => i,
        Ok(None) => {
            return no(Some("NONEXISTENT"), "no such mailbox");
        }
        Err(e) => return db_no(e),
    };
    if let Some(why) = protected(&info) {
        return no(Some("CANNOT"), &why);
    }
    let Some(new_client) = client_name(to).map(|c| c.trim_end_matches(DELIMITER).to_string()) else {
        return no(Some("CANNOT"), "not a valid mailbox name");
    };
    let Some(new_name) = view.to_store(&new_client).filter(|_| names::valid_new_name(&new_client)) else {
        return no(Some("CANNOT"), "invalid mailbox name");
    };
    if new_name.starts_with(&format!("{}/", info.name)) {
        return no(Some("CANNOT"), "a mailbox cannot be moved below itself");
    }
    let (old, id) = (info.name.clone(), info.id);
    let r = s.store().rename_mailbox_tree(id, old, new_name).await;
    match r {
        Ok(true) => {
            s.notify();
            ok(None, "RENAME completed")
        }
        Ok(false) => no(Some("ALREADYEXISTS"), "a mailbox with the new name exists"),
        Err(e) => db_no(e),
    }
}

pub(super) async fn subscribe(s: &mut Session, m: &Mailbox<'_>, on: bool) -> Reply {
    match resolve_mailbox(s, m, true).await {
        Ok(Some((name, _))) => match s.store().set_mailbox_subscribed(name, on).await {
            Ok(_) => ok(None, "completed"),
            Err(e) => db_no(e),
        },
        Ok(None) => {
            // A name still subscribed after its mailbox was deleted (RFC 3501 §6.3.6).
            let name = s.view().zip(client_name(m)).and_then(|(v, c)| v.to_store(&c));
            let kept = match name {
                Some(n) => s.store().kept_subscription(n, on).await,
                None => Ok(false),
            };
            match kept {
                Ok(_) if !on => ok(None, "completed"),
                Ok(true) => ok(None, "completed"),
                Ok(false) => no(Some("NONEXISTENT"), "no such mailbox"),
                Err(e) => db_no(e),
            }
        }
        Err(e) => db_no(e),
    }
}

// ----- LIST / LSUB / STATUS -----

/// LIST / LSUB as RFC 3501 has them: the extended LIST with no options and one pattern.
pub(super) async fn list(
    s: &mut Session,
    d: &mut Driver,
    reference: &Mailbox<'_>,
    pattern: &ListMailbox<'_>,
    lsub: bool,
) -> Reply {
    let pattern: &[u8] = match pattern {
        ListMailbox::Token(t) => t.as_ref(),
        ListMailbox::String(st) => st.as_ref(),
    };
    let reference: &[u8] = match reference {
        Mailbox::Inbox => b"INBOX",
        Mailbox::Other(o) => o.inner().as_ref(),
    };
    let q = List { reference: reference.to_vec(), patterns: vec![pattern.to_vec()], ..List::default() };
    run_list(s, d, q, lsub).await
}

/// LIST with selection or return options, or several patterns (RFC 5258, RFC 5819).
pub async fn list_extended(s: &mut Session, d: &mut Driver, l: List) -> Reply {
    run_list(s, d, l, false).await
}

/// A mailbox as LIST sees it in this login's view.
struct Listed {
    /// The client's name.
    name: String,
    subscribed: bool,
    /// Its SPECIAL-USE attribute in this view.
    special: Option<String>,
    /// The store's row; `None` for an account view's special folder not created yet, and for a
    /// name without a mailbox.
    info: Option<MailboxInfo>,
    /// False: a subscription that outlived its mailbox (RFC 3501 §6.3.6), or the superior of one.
    exists: bool,
}

/// Whether `child` is below `parent` in the hierarchy.
fn below(child: &str, parent: &str) -> bool {
    child.len() > parent.len() && child.starts_with(parent) && child[parent.len()..].starts_with(DELIMITER)
}

/// Every mailbox this login's view shows, INBOX first then by name: the store's, an account
/// view's special folders not created yet, and with `kept` the subscriptions that outlived their
/// mailbox with their superiors that are no mailbox either (for RECURSIVEMATCH and LSUB's "%").
async fn in_view(s: &Session, view: &View, kept: bool) -> DbResult<Vec<Listed>> {
    let special_of = |name: &str, stored: Option<&String>| match view {
        View::Combined => stored.cloned().filter(|_| !name.contains(DELIMITER)),
        View::Account { .. } => view.special_use(name).map(str::to_string),
    };
    let mut shown: Vec<Listed> = s
        .store()
        .list_mailboxes()
        .await?
        .into_iter()
        .filter_map(|m| {
            let name = view.to_client(&m.name)?;
            let special = special_of(&name, m.special_use.as_ref());
            Some(Listed { special, subscribed: m.subscribed, name, info: Some(m), exists: true })
        })
        .collect();
    for v in view.virtual_specials() {
        if let Some(c) = view.to_client(&v)
            && !shown.iter().any(|l| l.name == c)
        {
            shown.push(Listed { special: special_of(&c, None), subscribed: true, name: c, info: None, exists: true });
        }
    }
    if kept {
        for name in s.store().kept_subscriptions().await?.iter().filter_map(|k| view.to_client(k)) {
            let mut at = Some(name.as_str());
            let mut subscribed = true;
            while let Some(n) = at {
                if !shown.iter().any(|l| l.name == n) {
                    shown.push(Listed { name: n.to_string(), subscribed, special: None, info: None, exists: false });
                }
                subscribed = false;
                at = n.rsplit_once(DELIMITER).map(|(parent, _)| parent);
            }
        }
    }
    shown.sort_by(|a, b| (a.name != "INBOX", &a.name).cmp(&(b.name != "INBOX", &b.name)));
    Ok(shown)
}

/// The one LIST: RFC 3501 LIST and LSUB, and LIST-EXTENDED's selection options (SUBSCRIBED,
/// REMOTE, RECURSIVEMATCH, SPECIAL-USE), several patterns and return options (CHILDREN,
/// SUBSCRIBED, SPECIAL-USE, STATUS). `\HasChildren` / `\HasNoChildren` and the special-use
/// attributes are always given (RFC 5258 §4 and RFC 6154 §2 allow them unasked, and clients
/// without LIST-EXTENDED rely on them); `\Subscribed` only when asked for. A name is
/// `\NonExistent` when it is a subscription kept after its mailbox was deleted, or the missing
/// superior of one (CREATE and RENAME make every superior, so there are no others).
async fn run_list(s: &mut Session, d: &mut Driver, q: List, lsub: bool) -> Reply {
    let Some(view) = s.view().cloned() else { return wrong_state() };
    let cmd = if lsub { "LSUB" } else { "LIST" };
    let reference = decode_name(&q.reference).unwrap_or_default();
    // An undecodable pattern matches nothing.
    let patterns: Vec<String> = q.patterns.iter().filter_map(|p| decode_name(p)).collect();
    if !lsub && q.selection == Selection::default() && patterns.len() == 1 && patterns[0].is_empty() {
        // The hierarchy delimiter and root (RFC 3501 §6.3.8).
        d.out().extend_from_slice(b"* LIST (\\Noselect) \"/\" \"\"\r\n");
        return ok(None, "LIST completed");
    }
    // RFC 5258 §3: among several patterns, an empty one is ignored.
    let full: Vec<String> = patterns.iter().filter(|p| !p.is_empty()).map(|p| format!("{reference}{p}")).collect();
    let matches = |name: &str| full.iter().any(|p| names::list_match(p, name));
    let has_percent = full.iter().any(|p| p.contains('%'));
    let shown = match in_view(s, &view, lsub || q.selection.subscribed).await {
        Ok(v) => v,
        Err(e) => return db_no(e),
    };
    let sel = &q.selection;
    let meets = |l: &Listed| {
        (if sel.subscribed { l.subscribed } else { l.exists }) && (!sel.special_use || l.special.is_some())
    };
    let mut childinfo_tags = Vec::new();
    if sel.subscribed {
        childinfo_tags.push("\"SUBSCRIBED\"");
    }
    if sel.special_use {
        childinfo_tags.push("\"SPECIAL-USE\"");
    }
    let show_subscribed = sel.subscribed || q.returns.subscribed;
    let mut lines: Vec<(String, Option<usize>)> = Vec::new();
    for (i, l) in shown.iter().enumerate() {
        if !matches(&l.name) {
            continue;
        }
        // A mailbox's children are mailboxes; a name without one has the subscribed names below
        // it as children too (as Dovecot 2.3 answers).
        let has_children = shown.iter().any(|c| (c.exists || !l.exists) && below(&c.name, &l.name));
        if lsub && !l.subscribed {
            // RFC 3501 §6.3.9: "foo/bar" subscribed, "foo" not, and "%" keeps "foo/bar" from
            // matching: LSUB returns "foo" flagged \Noselect.
            if has_percent && shown.iter().any(|c| c.subscribed && below(&c.name, &l.name) && !matches(&c.name)) {
                lines.push((format!("* LSUB (\\Noselect) \"/\" {}\r\n", quoted_name(&l.name)), None));
            }
            continue;
        }
        if lsub && !l.exists {
            lines.push((format!("* LSUB () \"/\" {}\r\n", quoted_name(&l.name)), None));
            continue;
        }
        // RECURSIVEMATCH: a descendant meets the criteria but the patterns do not show it — the
        // parent is listed (if it matches) with CHILDINFO (RFC 5258 §3.1 and §5.9: "baz2", whose
        // subscribed children all match "*2", gets none; Dovecot agrees).
        let childinfo =
            sel.recursive_match && shown.iter().any(|c| below(&c.name, &l.name) && meets(c) && !matches(&c.name));
        if !meets(l) && !childinfo {
            continue;
        }
        let mut attrs = Vec::new();
        if !l.exists {
            attrs.push("\\NonExistent".to_string());
        }
        // For a name without a mailbox, only when asked (RFC 5258 §5.8 A2 and §5.11).
        if l.exists || q.returns.children {
            attrs.push(if has_children { "\\HasChildren" } else { "\\HasNoChildren" }.to_string());
        }
        if let Some(su) = &l.special {
            attrs.push(su.clone());
        }
        if !lsub && show_subscribed && l.subscribed {
            attrs.push("\\Subscribed".into());
        }
        let mut line = format!("* {cmd} ({}) \"/\" {}", attrs.join(" "), quoted_name(&l.name));
        if childinfo {
            line.push_str(&format!(" (\"CHILDINFO\" ({}))", childinfo_tags.join(" ")));
        }
        line.push_str("\r\n");
        lines.push((line, Some(i).filter(|_| l.exists)));
    }
    let Some(items) = q.returns.status.filter(|_| !lsub) else {
        let out = d.out();
        for (line, _) in lines {
            out.extend_from_slice(line.as_bytes());
        }
        return ok(None, &format!("{cmd} completed"));
    };
    if items.contains(&StatusDataItemName::HighestModSeq) {
        super::select::enable_condstore(s, d); // RFC 7162 §3.1: an enabling command
    }
    // LIST-STATUS (RFC 5819): each mailbox's STATUS right after its LIST (all are selectable).
    for (line, i) in lines {
        d.out().extend_from_slice(line.as_bytes());
        let Some(l) = i.and_then(|i| shown.get(i)) else { continue };
        let info = match &l.info {
            Some(info) => info.clone(),
            // An account view's special folder comes into being on first use, as for STATUS.
            None => match view.to_store(&l.name) {
                Some(store_name) => match s.store().mailbox_named(store_name, l.special.clone()).await {
                    Ok(Some(info)) => info,
                    Ok(None) => continue,
                    Err(e) => return db_no(e),
                },
                None => continue,
            },
        };
        match status_line(s, &info, &l.name, &items).await {
            Ok(st) => d.out().extend_from_slice(st.as_bytes()),
            Err(e) => return db_no(e),
        }
    }
    ok(None, "LIST completed")
}

/// The `* STATUS` response for a mailbox shown as `shown`: the counters the mailbox row keeps,
/// and RECENT, DELETED and SIZE from the store only when asked for.
async fn status_line(s: &Session, info: &MailboxInfo, shown: &str, items: &[StatusDataItemName]) -> DbResult<String> {
    let id = info.id;
    let want_recent = items.contains(&StatusDataItemName::Recent);
    let want_deleted = items.contains(&StatusDataItemName::Deleted);
    let (recent, deleted) = s.store().status_counts(id, want_recent, want_deleted).await?;
    let size = if items.contains(&StatusDataItemName::Size) { s.store().mailbox_size(id).await? } else { 0 };
    let mut parts = Vec::new();
    for it in items {
        match it {
            StatusDataItemName::Messages => parts.push(format!("MESSAGES {}", info.messages)),
            StatusDataItemName::Recent => parts.push(format!("RECENT {recent}")),
            StatusDataItemName::UidNext => parts.push(format!("UIDNEXT {}", info.uidnext.max(1))),
            StatusDataItemName::UidValidity => parts.push(format!("UIDVALIDITY {}", info.uidvalidity)),
            StatusDataItemName::Unseen => parts.push(format!("UNSEEN {}", info.unseen)),
            StatusDataItemName::Deleted => parts.push(format!("DELETED {deleted}")),
            StatusDataItemName::Size => parts.push(format!("SIZE {size}")),
            StatusDataItemName::HighestModSeq => parts.push(format!("HIGHESTMODSEQ {}", info.highestmodseq)),
            _ => {}
        }
    }
    Ok(format!("* STATUS {} ({})\r\n", quoted_name(shown), parts.join(" ")))
}

pub(super) async fn status(s: &mut Session, d: &mut Driver, m: &Mailbox<'_>, items: &[StatusDataItemName]) -> Reply {
    let (client, info) = match resolve_mailbox(s, m, true).await {
        Ok(Some((_, i))) => (client_name(m).unwrap_or_default(), i),
        Ok(None) => {
            return no(Some("NONEXISTENT"), "no such mailbox");
        }
        Err(e) => return db_no(e),
    };
    let shown = if client.eq_ignore_ascii_case("INBOX") { "INBOX".to_string() } else { client };
    if items.contains(&StatusDataItemName::HighestModSeq) {
        super::select::enable_condstore(s, d); // RFC 7162 §3.1: an enabling command
    }
    match status_line(s, &info, &shown, items).await {
        Ok(line) => d.out().extend_from_slice(line.as_bytes()),
        Err(e) => return db_no(e),
    }
    ok(None, "STATUS completed")
}
