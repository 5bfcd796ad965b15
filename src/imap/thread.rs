//! THREAD (RFC 5256 §2.1, §2.2, §4): ORDEREDSUBJECT and REFERENCES over the keys parsed at
//! insert (`store::sortkeys`), and the `* THREAD` response. Nothing here touches the store or a
//! session: the input is one [`Message`] per selected message, in mailbox order.
//!
//! REFERENCES follows the RFC's steps literally (numbered the same in [`references`]): link the
//! References chain (no re-parenting, no loops), parent each message under its last reference,
//! gather the parentless under a root, prune dummies, sort the top level by sent date, merge the
//! top-level threads of one base subject, sort every sibling set by sent date. Messages without a
//! Message-ID, and the second of two messages with the same one, get an id of their own (they can
//! still be children, never parents). Equal sent dates are ordered by sequence number.

use std::collections::HashMap;
use std::fmt::Write as _;

/// What threading looks at in one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The number the response shows: the sequence number, or the UID for UID THREAD.
    pub number: u32,
    /// Sequence number: orders equal sent dates.
    pub seq: u32,
    /// Sent date in UTC: the Date header, else INTERNALDATE (RFC 5256 §2.2).
    pub date: i64,
    /// The base subject in its compared form (`mime::subject::sort_form`).
    pub subject: String,
    /// The subject was a reply or forward.
    pub reply: bool,
    pub message_id: Option<String>,
    /// References (else the first In-Reply-To id), oldest first.
    pub references: Vec<String>,
}

/// A thread: a message, or a dummy (`number` None) standing for a missing parent, and the
/// replies to it in sent-date order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    pub number: Option<u32>,
    pub children: Vec<Thread>,
}

/// ORDEREDSUBJECT: messages grouped by base subject, each group's first message (by sent date)
/// the parent of all others, groups in the order of their first messages' sent dates.
pub fn ordered_subject(msgs: &[Message]) -> Vec<Thread> {
    let mut order: Vec<&Message> = msgs.iter().collect();
    order.sort_by(|a, b| a.subject.cmp(&b.subject).then(a.date.cmp(&b.date)).then(a.seq.cmp(&b.seq)));
    let mut groups: Vec<(&Message, Thread)> = Vec::new();
    for m in order {
        match groups.last_mut() {
            Some((first, t)) if first.subject == m.subject => t.children.push(leaf(m.number)),
            _ => groups.push((m, leaf(m.number))),
        }
    }
    groups.sort_by(|(a, _), (b, _)| a.date.cmp(&b.date).then(a.seq.cmp(&b.seq)));
    groups.into_iter().map(|(_, t)| t).collect()
}

fn leaf(n: u32) -> Thread {
    Thread { number: Some(n), children: Vec::new() }
}

/// One container of the REFERENCES algorithm: a message (index into the input) or a dummy.
#[derive(Debug, Default)]
struct Node {
    msg: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

struct Arena<'a> {
    msgs: &'a [Message],
    nodes: Vec<Node>,
}

impl Arena<'_> {
    fn new_node(&mut self, msg: Option<usize>) -> usize {
        self.nodes.push(Node { msg, ..Node::default() });
        self.nodes.len() - 1
    }

    /// Is `a` an ancestor of `b` (or `b` itself)?
    fn is_ancestor(&self, a: usize, b: usize) -> bool {
        let mut cur = Some(b);
        // Every link was made loop-free, so this walk ends.
        while let Some(c) = cur {
            if c == a {
                return true;
            }
            cur = self.nodes[c].parent;
        }
        false
    }

    fn unlink(&mut self, child: usize) {
        if let Some(p) = self.nodes[child].parent.take() {
            self.nodes[p].children.retain(|&c| c != child);
        }
    }

    /// Makes `parent` the parent of `child` unless that would make a loop.
    fn link(&mut self, parent: usize, child: usize) {
        if self.is_ancestor(child, parent) {
            return;
        }
        self.unlink(child);
        self.nodes[child].parent = Some(parent);
        self.nodes[parent].children.push(child);
    }

    /// The sent-date key of a node: its message's, or a dummy's first child's (children sorted).
    fn key(&self, n: usize) -> (i64, u32) {
        let node = &self.nodes[n];
        match node.msg {
            Some(m) => (self.msgs[m].date, self.msgs[m].seq),
            None => node.children.first().map(|&c| self.key(c)).unwrap_or((i64::MAX, u32::MAX)),
        }
    }

    /// The message a subject is taken from: the node's, or a dummy's first child's.
    fn subject_msg(&self, n: usize) -> Option<&Message> {
        let node = &self.nodes[n];
        match node.msg {
            Some(m) => Some(&self.msgs[m]),
            None => node.children.first().and_then(|&c| self.subject_msg(c)),
        }
    }

    fn is_dummy(&self, n: usize) -> bool {
        self.nodes[n].msg.is_none()
    }

    fn is_reply(&self, n: usize) -> bool {
        self.nodes[n].msg.is_some_and(|m| self.msgs[m].reply)
    }

    fn sort_siblings(&mut self, list: &mut [usize]) {
        list.sort_by_key(|&n| self.key(n));
    }

    /// Step 3: prune the dummies of a sibling list (children first).
    fn prune(&mut self, list: Vec<usize>, top: bool) -> Vec<usize> {
        let mut out = Vec::with_capacity(list.len());
        for n in list {
            let children = std::mem::take(&mut self.nodes[n].children);
            let children = self.prune(children, false);
            if !self.is_dummy(n) {
                self.nodes[n].children = children;
                out.push(n);
            } else if children.is_empty() {
            } else if !top || children.len() == 1 {
                out.extend(children);
            } else {
                self.nodes[n].children = children;
                out.push(n);
            }
        }
        out
    }

    /// Step 6: every sibling set sorted by sent date, depth first (a dummy's key is its first
    /// child's, so children are sorted before their parents' siblings).
    fn sort_all(&mut self, list: &mut [usize]) {
        for &n in list.iter() {
            let mut children = std::mem::take(&mut self.nodes[n].children);
            self.sort_all(&mut children);
            self.nodes[n].children = children;
        }
        self.sort_siblings(list);
    }

    fn tree(&self, n: usize) -> Thread {
        let node = &self.nodes[n];
        Thread {
            number: node.msg.map(|m| self.msgs[m].number),
            children: node.children.iter().map(|&c| self.tree(c)).collect(),
        }
    }
}

/// REFERENCES (RFC 5256 §2.1 "REFERENCES" and the steps of §2.2).
pub fn references(msgs: &[Message]) -> Vec<Thread> {
    let mut a = Arena { msgs, nodes: Vec::with_capacity(msgs.len() * 2) };
    let mut by_id: HashMap<&str, usize> = HashMap::with_capacity(msgs.len() * 2);
    // Step 1: the containers of the messages, each under its references.
    for (i, m) in msgs.iter().enumerate() {
        let node = match m.message_id.as_deref() {
            Some(id) => match by_id.get(id) {
                Some(&n) if a.nodes[n].msg.is_none() => {
                    a.nodes[n].msg = Some(i);
                    n
                }
                // A duplicate Message-ID: this message gets an id of its own.
                Some(_) => a.new_node(Some(i)),
                None => {
                    let n = a.new_node(Some(i));
                    by_id.insert(id, n);
                    n
                }
            },
            None => a.new_node(Some(i)),
        };
        // 1A: link each reference to the next, keeping links already made.
        let mut prev: Option<usize> = None;
        for r in &m.references {
            let c = match by_id.get(r.as_str()) {
                Some(&c) => c,
                None => {
                    let c = a.new_node(None);
                    by_id.insert(r, c);
                    c
                }
            };
            if let Some(p) = prev
                && a.nodes[c].parent.is_none()
            {
                a.link(p, c);
            }
            prev = Some(c);
        }
        // 1B: the last reference is the parent, replacing a link from a truncated References.
        match prev {
            Some(p) if !a.is_ancestor(node, p) => a.link(p, node),
            Some(_) => {}
            None => a.unlink(node),
        }
    }
    // Step 2: the parentless under the root.
    let top: Vec<usize> = (0..a.nodes.len()).filter(|&n| a.nodes[n].parent.is_none()).collect();
    // Step 3.
    let mut top = a.prune(top, true);
    // Step 4: the top level by sent date (dummies by their earliest child).
    for &n in &top {
        if a.is_dummy(n) {
            let mut children = std::mem::take(&mut a.nodes[n].children);
            a.sort_siblings(&mut children);
            a.nodes[n].children = children;
        }
    }
    a.sort_siblings(&mut top);
    // Step 5A/B: the subject table.
    let mut table: HashMap<String, usize> = HashMap::new();
    for &n in &top {
        let Some(subject) = a.subject_msg(n).map(|m| m.subject.as_str()) else { continue };
        if subject.is_empty() {
            continue;
        }
        match table.get(subject) {
            None => {
                table.insert(subject.to_owned(), n);
            }
            Some(&t) => {
                if (a.is_dummy(n) && !a.is_dummy(t)) || (a.is_reply(t) && !a.is_reply(n) && !a.is_dummy(t)) {
                    table.insert(subject.to_owned(), n);
                }
            }
        }
    }
    // Step 5C: merge the threads of one subject.
    let mut removed = vec![false; a.nodes.len()];
    let snapshot = top.clone();
    for n in snapshot {
        let Some(subject) = a.subject_msg(n).map(|m| m.subject.clone()) else { continue };
        if subject.is_empty() {
            continue;
        }
        let Some(&t) = table.get(&subject) else { continue };
        if t == n {
            continue;
        }
        if a.is_dummy(t) && a.is_dummy(n) {
            let children = std::mem::take(&mut a.nodes[n].children);
            for c in children {
                a.nodes[c].parent = Some(t);
                a.nodes[t].children.push(c);
            }
            removed[n] = true;
        } else if a.is_dummy(t) || (a.is_reply(n) && !a.is_reply(t)) {
            a.nodes[n].parent = Some(t);
            a.nodes[t].children.push(n);
            removed[n] = true;
        } else {
            let d = a.new_node(None);
            removed.push(false);
            a.nodes[d].children = vec![t, n];
            a.nodes[t].parent = Some(d);
            a.nodes[n].parent = Some(d);
            if let Some(pos) = top.iter().position(|&x| x == t) {
                top[pos] = d;
            }
            removed[n] = true;
            table.insert(subject, d);
        }
    }
    top.retain(|&n| !removed[n]);
    // Step 6.
    a.sort_all(&mut top);
    top.into_iter().map(|n| a.tree(n)).collect()
}

/// The `* THREAD` response line (RFC 5256 §4), CRLF included: `* THREAD (2)(3 6 (4 23)(44 7 96))`.
pub fn response(threads: &[Thread]) -> String {
    let mut out = String::from("* THREAD");
    if !threads.is_empty() {
        out.push(' ');
    }
    for t in threads {
        out.push('(');
        members(&mut out, t);
        out.push(')');
    }
    out.push_str("\r\n");
    out
}

/// `thread-members [SP thread-nested]`: a chain of single replies inline, a fork as nested lists.
fn members(out: &mut String, t: &Thread) {
    let mut cur = t;
    let mut first = true;
    loop {
        if let Some(n) = cur.number {
            if !first {
                out.push(' ');
            }
            let _ = write!(out, "{n}");
            first = false;
        }
        match cur.children.as_slice() {
            [] => return,
            [only] if cur.number.is_some() => cur = only,
            many => {
                if !first {
                    out.push(' ');
                }
                for c in many {
                    out.push('(');
                    members(out, c);
                    out.push(')');
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message: sequence number = number, date = seq unless given.
    fn m(n: u32, id: &str, refs: &[&str], subject: &str) -> Message {
        let (subject, reply) = crate::mime::subject::base_subject(subject);
        Message {
            number: n,
            seq: n,
            date: i64::from(n),
            subject: crate::mime::subject::sort_form(&subject),
            reply,
            message_id: (!id.is_empty()).then(|| id.to_string()),
            references: refs.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn refs(msgs: &[Message]) -> String {
        response(&references(msgs))
    }

    #[test]
    fn the_response_syntax_of_rfc_5256_section_4() {
        let l = |n| leaf(n);
        let t = |n, children| Thread { number: Some(n), children };
        let threads = vec![l(2), t(3, vec![t(6, vec![t(4, vec![l(23)]), t(44, vec![t(7, vec![l(96)])])])])];
        assert_eq!(response(&threads), "* THREAD (2)(3 6 (4 23)(44 7 96))\r\n");
        let dummy = Thread { number: None, children: vec![l(3), l(5)] };
        assert_eq!(response(&[dummy]), "* THREAD ((3)(5))\r\n");
        assert_eq!(response(&[]), "* THREAD\r\n");
    }

    #[test]
    fn references_builds_the_rfc_example_tree() {
        // Shaped after the RFC 5256 §4 example: 3 → 6 → {4 → 23, 44 → 7 → 96}, 2 alone.
        let msgs = vec![
            m(2, "a2", &[], "other"),
            m(3, "a3", &[], "topic"),
            m(4, "a4", &["a3", "a6"], "Re: topic"),
            m(6, "a6", &["a3"], "Re: topic"),
            m(7, "a7", &["a3", "a6", "a44"], "Re: topic"),
            m(23, "a23", &["a3", "a6", "a4"], "Re: topic"),
            m(44, "a44", &["a3", "a6"], "Re: topic"),
            m(96, "a96", &["a3", "a6", "a44", "a7"], "Re: topic"),
        ];
        assert_eq!(refs(&msgs), "* THREAD (2)(3 6 (4 23)(44 7 96))\r\n");
    }

    #[test]
    fn missing_parents_become_dummies_and_are_pruned() {
        // Two replies to a message not in the mailbox: a dummy at the top keeps them together.
        let msgs = vec![m(1, "r1", &["gone"], "Re: x"), m(2, "r2", &["gone"], "Re: x")];
        assert_eq!(refs(&msgs), "* THREAD ((1)(2))\r\n");
        // One reply to a missing message: the dummy is dropped.
        assert_eq!(refs(&[m(1, "r1", &["gone"], "Re: x")]), "* THREAD (1)\r\n");
        // A missing message in the middle: its children move up to its parent.
        let msgs = vec![m(1, "p", &[], "y"), m(2, "c1", &["p", "gone"], "Re: y"), m(3, "c2", &["p", "gone"], "Re: y")];
        assert_eq!(refs(&msgs), "* THREAD (1 (2)(3))\r\n");
    }

    #[test]
    fn loops_and_duplicates_do_not_break_the_tree() {
        // a says b is its parent, b says a is: the first link wins and the second is refused.
        let msgs = vec![m(1, "a", &["b"], "l"), m(2, "b", &["a"], "l")];
        let t = references(&msgs);
        assert_eq!(response(&t), "* THREAD (2 1)\r\n");
        // A message that names itself.
        assert_eq!(refs(&[m(1, "s", &["s"], "z")]), "* THREAD (1)\r\n");
        // A duplicate Message-ID: the second is a message of its own, and replies go to the first.
        let msgs = vec![m(1, "d", &[], "q"), m(2, "d", &[], "w"), m(3, "e", &["d"], "Re: q")];
        assert_eq!(refs(&msgs), "* THREAD (1 3)(2)\r\n");
        // No Message-ID at all.
        assert_eq!(refs(&[m(1, "", &[], "a"), m(2, "", &[], "b")]), "* THREAD (1)(2)\r\n");
    }

    #[test]
    fn a_truncated_references_is_corrected_by_the_last_reference() {
        // 3 first claims 1 as parent through 2's References; 2's own header then names 4.
        let msgs = vec![
            m(1, "m1", &[], "s1"),
            m(3, "m3", &["m1", "m2"], "Re: s1"),
            m(2, "m2", &["m4"], "Re: s4"),
            m(4, "m4", &[], "s4"),
        ];
        assert_eq!(refs(&msgs), "* THREAD (1)(4 2 3)\r\n");
    }

    #[test]
    fn threads_of_one_base_subject_merge() {
        // Both originals: a new dummy holds them.
        let msgs = vec![m(1, "x1", &[], "Lunch"), m(2, "x2", &[], "lunch")];
        assert_eq!(refs(&msgs), "* THREAD ((1)(2))\r\n");
        // A reply without references goes under the original.
        let msgs = vec![m(1, "x1", &[], "Lunch"), m(2, "x2", &[], "Re: [team] lunch (fwd)")];
        assert_eq!(refs(&msgs), "* THREAD (1 2)\r\n");
        // The original after the reply: the original is the table entry, the reply its child.
        let msgs = vec![m(1, "x1", &[], "Re: Lunch"), m(2, "x2", &[], "Lunch")];
        assert_eq!(refs(&msgs), "* THREAD (2 1)\r\n");
        // A dummy thread and a message of the same subject: the message joins the dummy.
        let msgs = vec![m(1, "r1", &["gone"], "Re: x"), m(2, "r2", &["gone"], "Re: x"), m(3, "o", &[], "x")];
        assert_eq!(refs(&msgs), "* THREAD ((1)(2)(3))\r\n");
        // Empty subjects never merge.
        assert_eq!(refs(&[m(1, "e1", &[], ""), m(2, "e2", &[], "Re:")]), "* THREAD (1)(2)\r\n");
    }

    #[test]
    fn siblings_and_threads_are_in_sent_date_order_then_sequence() {
        let mut msgs =
            vec![m(1, "p", &[], "a"), m(2, "c1", &["p"], "Re: a"), m(3, "c2", &["p"], "Re: a"), m(4, "q", &[], "b")];
        msgs[1].date = 50; // c1 later than c2
        msgs[3].date = 0; // q the oldest thread
        assert_eq!(refs(&msgs), "* THREAD (4)(1 (3)(2))\r\n");
        msgs[1].date = msgs[2].date; // equal dates: sequence order
        assert_eq!(refs(&msgs), "* THREAD (4)(1 (2)(3))\r\n");
    }

    #[test]
    fn ordered_subject_groups_by_base_subject_and_date() {
        let mut msgs = vec![
            m(1, "", &[], "b"),
            m(2, "", &[], "Re: a"),
            m(3, "", &[], "a"),
            m(4, "", &[], "Fwd: b"),
            m(5, "", &[], "c"),
            m(6, "", &[], "RE: A"),
        ];
        msgs[2].date = 0; // 3 is the oldest
        let t = ordered_subject(&msgs);
        assert_eq!(response(&t), "* THREAD (3 (2)(6))(1 4)(5)\r\n");
    }
    /// Every number in a response, in order.
    fn numbers(threads: &[Thread], out: &mut Vec<u32>) {
        for t in threads {
            out.extend(t.number);
            numbers(&t.children, out);
        }
    }

    #[test]
    fn random_reference_graphs_thread_every_message_once() {
        // xorshift: reproducible without a dependency.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let subjects = ["a", "Re: a", "b", "Fwd: b", "", "Re: c"];
        for round in 0..300 {
            let count = 1 + next(40) as u32;
            let ids = 1 + next(50);
            let msgs: Vec<Message> = (1..=count)
                .map(|n| {
                    let id = if next(10) == 0 { String::new() } else { format!("i{}", next(ids)) };
                    let refs: Vec<String> = (0..next(5)).map(|_| format!("i{}", next(ids))).collect();
                    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
                    let mut msg = m(n, &id, &refs, subjects[next(subjects.len() as u64) as usize]);
                    msg.date = next(5) as i64; // many equal dates
                    msg
                })
                .collect();
            for threads in [references(&msgs), ordered_subject(&msgs)] {
                let mut seen = Vec::new();
                numbers(&threads, &mut seen);
                seen.sort_unstable();
                assert_eq!(seen, (1..=count).collect::<Vec<_>>(), "round {round}: {}", response(&threads));
                // No dummy without children, no dummy with one child below the top.
                fn check(t: &Thread, top: bool) {
                    if t.number.is_none() {
                        assert!(t.children.len() >= if top { 2 } else { 1 }, "{t:?}");
                    }
                    for c in &t.children {
                        check(c, false);
                    }
                }
                threads.iter().for_each(|t| check(t, true));
            }
        }
    }
}
