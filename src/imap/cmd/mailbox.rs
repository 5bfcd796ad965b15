//! The mailbox commands that do not select: CREATE, DELETE, RENAME, SUBSCRIBE / UNSUBSCRIBE, LIST /
//! LSUB and STATUS (RFC 3501 §6.3.3-10, RFC 6154 SPECIAL-USE).

use super::*;

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
        Ok(None) if !on => ok(None, "completed"),
        Ok(None) => no(Some("NONEXISTENT"), "no such mailbox"),
        Err(e) => db_no(e),
    }
}

// ----- LIST / LSUB / STATUS -----

pub(super) async fn list(
    s: &mut Session,
    d: &mut Driver,
    reference: &Mailbox<'_>,
    pattern: &ListMailbox<'_>,
    lsub: bool,
) -> Reply {
    let Some(view) = s.view().cloned() else { return wrong_state() };
    let cmd = if lsub { "LSUB" } else { "LIST" };
    let pattern_bytes: &[u8] = match pattern {
        ListMailbox::Token(t) => t.as_ref(),
        ListMailbox::String(st) => st.as_ref(),
    };
    let reference = match reference {
        Mailbox::Inbox => "INBOX".to_string(),
        Mailbox::Other(o) => decode_name(o.inner().as_ref()).unwrap_or_default(),
    };
    let Some(pattern) = decode_name(pattern_bytes) else {
        return ok(None, &format!("{cmd} completed"));
    };
    if pattern.is_empty() && !lsub {
        // The hierarchy delimiter and root (RFC 3501 §6.3.8).
        d.out().extend_from_slice(b"* LIST (\\Noselect) \"/\" \"\"\r\n");
        return ok(None, "LIST completed");
    }
    let full = format!("{reference}{pattern}");
    let all = match s.store().list_mailboxes().await {
        Ok(a) => a,
        Err(e) => return db_no(e),
    };
    // (client name, subscribed, special-use from the store)
    let mut shown: Vec<(String, bool, Option<String>)> =
        all.iter().filter_map(|m| view.to_client(&m.name).map(|c| (c, m.subscribed, m.special_use.clone()))).collect();
    for v in view.virtual_specials() {
        if let Some(c) = view.to_client(&v)
            && !shown.iter().any(|(n, _, _)| *n == c)
        {
            shown.push((c, true, None));
        }
    }
    shown.sort_by(|a, b| (a.0 != "INBOX", &a.0).cmp(&(b.0 != "INBOX", &b.0)));
    let names: Vec<String> = shown.iter().map(|x| x.0.clone()).collect();
    let out = d.out();
    for (name, subscribed, special) in &shown {
        if !names::list_match(&full, name) {
            continue;
        }
        if lsub && !subscribed {
            // RFC 3501 §6.3.9: "foo/bar" subscribed, "foo" not, and "%" keeps "foo/bar" from
            // matching: LSUB returns "foo" flagged \Noselect.
            let prefix = format!("{name}{DELIMITER}");
            if full.contains('%')
                && shown.iter().any(|(n, sub, _)| *sub && n.starts_with(&prefix) && !names::list_match(&full, n))
            {
                out.extend_from_slice(format!("* LSUB (\\Noselect) \"/\" {}\r\n", quoted_name(name)).as_bytes());
            }
            continue;
        }
        let has_children = names
            .iter()
            .any(|n| n.len() > name.len() && n.starts_with(name.as_str()) && n[name.len()..].starts_with(DELIMITER));
        let mut attrs = vec![if has_children { "\\HasChildren" } else { "\\HasNoChildren" }.to_string()];
        let su = match view {
            View::Combined => special.clone().filter(|_| !name.contains(DELIMITER)),
            View::Account { .. } => view.special_use(name).map(str::to_string),
        };
        if let Some(su) = su {
            attrs.push(su);
        }
        out.extend_from_slice(format!("* {cmd} ({}) \"/\" {}\r\n", attrs.join(" "), quoted_name(name)).as_bytes());
    }
    ok(None, &format!("{cmd} completed"))
}

pub(super) async fn status(s: &mut Session, d: &mut Driver, m: &Mailbox<'_>, items: &[StatusDataItemName]) -> Reply {
    let (client, info) = match resolve_mailbox(s, m, true).await {
        Ok(Some((_, i))) => (client_name(m).unwrap_or_default(), i),
        Ok(None) => {
            return no(Some("NONEXISTENT"), "no such mailbox");
        }
        Err(e) => return db_no(e),
    };
    let id = info.id;
    // Counters come from the mailbox row; only RECENT and DELETED need a query, and only when asked.
    let want_recent = items.contains(&StatusDataItemName::Recent);
    let want_deleted = items.contains(&StatusDataItemName::Deleted);
    let counts = s.store().status_counts(id, want_recent, want_deleted).await;
    let (recent, deleted) = match counts {
        Ok(x) => x,
        Err(e) => return db_no(e),
    };
    let mut parts = Vec::new();
    for it in items {
        match it {
            StatusDataItemName::Messages => parts.push(format!("MESSAGES {}", info.messages)),
            StatusDataItemName::Recent => parts.push(format!("RECENT {recent}")),
            StatusDataItemName::UidNext => parts.push(format!("UIDNEXT {}", info.uidnext.max(1))),
            StatusDataItemName::UidValidity => parts.push(format!("UIDVALIDITY {}", info.uidvalidity)),
            StatusDataItemName::Unseen => parts.push(format!("UNSEEN {}", info.unseen)),
            StatusDataItemName::Deleted => parts.push(format!("DELETED {deleted}")),
            StatusDataItemName::HighestModSeq => {
                super::select::enable_condstore(s, d); // RFC 7162 §3.1: an enabling command
                parts.push(format!("HIGHESTMODSEQ {}", info.highestmodseq));
            }
            _ => {}
        }
    }
    let shown = if client.eq_ignore_ascii_case("INBOX") { "INBOX".to_string() } else { client };
    d.out().extend_from_slice(format!("* STATUS {} ({})\r\n", quoted_name(&shown), parts.join(" ")).as_bytes());
    ok(None, "STATUS completed")
}

/// LIST with selection or return options, or several patterns (RFC 5258, RFC 5819).
pub async fn list_extended(_s: &mut Session, _d: &mut Driver, _l: crate::imap::syntax::list::List) -> Reply {
    bad("LIST-EXTENDED is not supported yet")
}
