#!/usr/bin/env python3
# Vendored copy of the team harness generator (shared/harness/gen-mail.py), unchanged apart
# from these two lines, so CI and the integration tests need nothing outside the repo.
"""gen-mail.py — deterministic, realistic RFC 5322 test corpus.

  gen-mail.py --count N [--seed S] (--maildir DIR | --eml-dir DIR) [--manifest FILE]

Same (count, seed) -> byte-identical messages.  Mix (approx.):
  15% text/plain, 10% text/html, 65% multipart/alternative (2-20 KB),
   5% multipart/mixed with base64 attachments (10 KB .. 1.5 MB raw, <= ~2 MB encoded),
   5% forwarded message/rfc822;  ~30% replies (In-Reply-To/References),
  ~20% RFC 2047 headers (UTF-8 B/Q, ISO-8859-1), ~5% raw UTF-8 headers,
  Date headers random over 2004-2025 in many zones/forms, unrelated to the
  arrival order (file mtime / Received increase with the index).
Malformed kinds (each on max(1, N//200) distinct messages when N >= 20):
  no-date, no-message-id, bare-lf, long-header (>998 octets), dot-lines
  (lines ".", "..", ".foo", "From "), no-final-newline, headers-only,
  bad-date, bad-encoded-word, 8bit-undeclared.
Maildir files go to cur/ named "<t>.M<i>P<seed>.harness,S=<size>,W=<crlf size>:2,<flags>"
(S/W let Dovecot skip size scans). Prints a JSON summary on stdout.
"""
import argparse, base64, datetime as dt, hashlib, json, math, os, quopri, random, sys

WORDS = ("the of and to in is it that for on with as was at by this be from or have an are not but "
         "which one all were when we there can more if out so what up about into than them time "
         "meeting report budget quarter project deadline invoice server release backup schedule "
         "review draft contract shipment order account password update network storage customer "
         "please thanks regards attached below above tomorrow monday friday urgent question answer "
         "mailbox folder message sender receipt delivery protocol client bridge sync latency").split()
WORDS_INTL = ("Grüße Straße Müller naïve café résumé déjà vu Ærøskøbing Zürich Łódź żółw "
              "Привет спасибо встреча 会議 東京 ありがとう 你好 세계 שלום مرحبا ☕ 🚀 ✓").split()
FIRST = ["Alice", "Bob", "Carol", "Dave", "Eve", "Mallory", "Trent", "Peggy", "Victor", "Walter",
         "José", "Zoë", "Jürgen", "Łukasz", "Søren", "Ольга", "山田", "François", "Ana María", "Nguyễn"]
LAST = ["Smith", "Jones", "Müller", "García", "Kowalski", "Dubois", "Rossi", "Nakamura", "O'Brien",
        "Ivanova", "太郎", "Ødegård", "Brontë", "van der Berg", "Lefèvre"]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com", "corp.example.test",
           "lists.example.org", "sub.domain.example.invalid"]
ZONES = ["+0000", "-0500", "+0100", "+0200", "+0530", "+0900", "-0800", "+1245", "-0330", "-0000"]
ATTACH = [("application/pdf", "report.pdf"), ("image/jpeg", "photo.jpg"), ("application/zip", "archive.zip"),
          ("application/octet-stream", "data.bin"), ("image/png", "screenshot.png"),
          ("application/pdf", "résumé 2024.pdf"), ("application/vnd.ms-excel", "Übersicht Q3.xls")]
MALFORMED = ["no-date", "no-message-id", "bare-lf", "long-header", "dot-lines", "no-final-newline",
             "headers-only", "bad-date", "bad-encoded-word", "8bit-undeclared"]
CRLF = "\r\n"


def enc_word(s, rng):
    """RFC 2047 encode s: B or Q, UTF-8 or ISO-8859-1; words < 76 chars, never splitting a character."""
    cs = "UTF-8"
    if rng.random() < 0.3:
        try:
            s.encode("iso-8859-1"); cs = "ISO-8859-1"
        except UnicodeEncodeError:
            pass
    b = rng.random() < 0.5

    def enc(chunk):
        raw = chunk.encode(cs)
        if b:
            return base64.b64encode(raw).decode()
        return "".join(chr(c) if chr(c).isalnum() and c < 128 else "_" if c == 32 else "=%02X" % c for c in raw)
    words, cur = [], ""
    for ch in s:
        if cur and len(enc(cur + ch)) > 45:
            words.append(cur); cur = ""
        cur += ch
    return " ".join("=?%s?%s?%s?=" % (cs, "B" if b else "Q", enc(w)) for w in words + [cur])


class Gen:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.seed = seed

    def words(self, n, intl=0.0):
        r = self.rng
        w = r.choices(WORDS, k=n)
        if intl:
            for i in range(0, n, max(1, int(1 / intl))):
                w[i] = r.choice(WORDS_INTL)
        return w

    def paragraphs(self, size, intl=0.0):
        """~size bytes of wrapped text paragraphs (list of lines)."""
        lines, total = [], 0
        while total < size:
            ws, line = self.words(self.rng.randint(20, 90), intl), ""
            ws[0] = ws[0].capitalize()
            for w in ws:
                if len(line) + len(w) + 1 > 72:
                    lines.append(line); total += len(line) + 2; line = w
                else:
                    line = (line + " " + w) if line else w
            lines += [line + ".", ""]; total += len(line) + 4
        return lines

    def name(self):
        return "%s %s" % (self.rng.choice(FIRST), self.rng.choice(LAST))

    def addr(self, hdr_mode):
        n = self.name()
        local = "".join(c for c in n.lower() if c.isascii() and c.isalnum())[:12] or "user%d" % self.rng.randint(1, 99)
        email = "%s@%s" % (local, self.rng.choice(DOMAINS))
        if n.isascii():
            return '"%s" <%s>' % (n, email) if "'" in n else "%s <%s>" % (n, email)
        if hdr_mode == "2047":
            return "%s <%s>" % (enc_word(n, self.rng), email)
        if hdr_mode == "utf8":
            return '"%s" <%s>' % (n, email)
        return email  # plain address when we must stay ASCII

    def date(self, bad=False):
        r = self.rng
        t = dt.datetime(2004, 1, 1) + dt.timedelta(seconds=r.randrange(0, 21 * 365 * 86400))
        if bad:
            return r.choice(["sometime yesterday", "32 Foo 2019 25:61:00", "Mon, 2 Jan 06 15:04:05 MST",
                             "2021-03-04T05:06:07Z", "Tue, 31 Feb 2015 10:00:00 +0000", ""])
        z = r.choice(ZONES)
        form = r.random()
        if form < 0.7:
            return t.strftime("%a, %d %b %Y %H:%M:%S ") + z
        if form < 0.8:
            return "%d %s" % (t.day, t.strftime("%b %Y %H:%M:%S ")) + z       # no weekday, 1-digit day
        if form < 0.9:
            return t.strftime("%a, %d %b %Y %H:%M:%S ") + z + " (%s)" % r.choice(["UTC", "CET", "PST", "JST"])
        return t.strftime("%a, %d %b %Y %H:%M:%S ") + r.choice(["GMT", "UT", "EST", "PDT"])  # obsolete zones

    def attachment(self, boundary):
        r = self.rng
        ctype, fname = r.choice(ATTACH)
        size = int(math.exp(r.uniform(math.log(10_000), math.log(1_500_000))))
        data = base64.encodebytes(r.randbytes(size)).decode().replace("\n", CRLF)
        if fname.isascii():
            disp = 'attachment; filename="%s"' % fname
        else:   # RFC 2231 filename
            disp = "attachment; filename*=UTF-8''%s" % "".join(
                c if c.isascii() and c.isalnum() or c in ".-_" else "".join("%%%02X" % b for b in c.encode())
                for c in fname)
        return ["--" + boundary, 'Content-Type: %s; name="%s"' % (ctype, fname if fname.isascii() else "attachment"),
                "Content-Transfer-Encoding: base64", "Content-Disposition: " + disp, "", data.rstrip(CRLF)]

    def text_part(self, size, html, intl, cte):
        lines = self.paragraphs(size, intl)
        if html:
            body = ["<!DOCTYPE html>", "<html><head><meta charset=\"utf-8\"><title>msg</title></head><body>"]
            body += ["<p>%s</p>" % l if l else "" for l in lines]
            body += ['<p><a href="https://www.example.com/x?id=%d">link</a> <b>bold</b></p>' % self.rng.randint(1, 9999),
                     "</body></html>"]
            lines = body
        text = "\n".join(lines)
        ctype = "text/%s; charset=%s" % ("html" if html else "plain", "utf-8" if intl else "us-ascii")
        if cte == "quoted-printable":
            text = quopri.encodestring(text.encode("utf-8")).decode("ascii")
        elif cte == "base64":
            text = base64.encodebytes(text.encode("utf-8")).decode().rstrip("\n")
        text = text.replace("\n", CRLF)
        return ["Content-Type: " + ctype, "Content-Transfer-Encoding: " + cte, "", text]

    def message(self, i, bad, earlier):
        r = self.rng
        hdr_mode = r.choices(["ascii", "2047", "utf8"], [75, 20, 5])[0]
        intl = r.choice([0.0, 0.0, 0.0, 0.1, 0.3])
        kind = r.choices(["plain", "html", "alt", "attach", "fwd"], [15, 10, 65, 5, 5])[0]
        size = int(math.exp(r.uniform(math.log(2000), math.log(20000))))
        if kind == "plain" and r.random() < 0.5:
            size = r.randint(200, 2000)
        mid = "<%d.%s.%d@harness.example>" % (i, r.getrandbits(48).to_bytes(6, "big").hex(), self.seed)
        subj_words = " ".join(self.words(r.randint(2, 9), 0.3 if hdr_mode != "ascii" else 0))
        subj = subj_words.capitalize()
        refs = []
        if earlier and r.random() < 0.3:    # reply into an existing thread
            parent = r.choice(earlier)
            subj, refs = "Re: " + parent[1].removeprefix("Re: "), parent[2][-8:] + [parent[0]]
        if hdr_mode == "2047" and not subj.isascii():
            subj_h = enc_word(subj, r)
        elif hdr_mode == "utf8" or subj.isascii():
            subj_h = subj
        else:
            subj_h = subj.encode("ascii", "replace").decode()
        if bad == "bad-encoded-word":
            subj_h = r.choice(["=?UTF-8?B?not*valid*base64?= tail", "=?x-unknown-charset?Q?caf=E9?=",
                               "=?UTF-8?Q?unterminated", "=?utf-8?B?w6k=?==?utf-8?B?w6k=?="])
        h = []
        arrival = dt.datetime(2025, 7, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=7 * i)
        h.append("Received: from mx%d.example.net (mx%d.example.net [192.0.2.%d]) by mail.example.com "
                 "with ESMTPS id %08X for <alice@example.com>; %s"
                 % (i % 7, i % 7, i % 250 + 1, r.getrandbits(32), arrival.strftime("%a, %d %b %Y %H:%M:%S +0000")))
        h.append("From: " + self.addr(hdr_mode))
        tos = [self.addr(hdr_mode) for _ in range(r.choice([1, 1, 1, 2, 3]))]
        h.append("To: " + ", ".join(tos))
        if r.random() < 0.2:
            h.append("Cc: " + ", ".join(self.addr(hdr_mode) for _ in range(r.randint(1, 4))))
        h.append("Subject: " + subj_h)
        if bad != "no-date":
            h.append("Date: " + self.date(bad == "bad-date"))
        if bad != "no-message-id":
            h.append("Message-ID: " + mid)
        if refs:
            h.append("In-Reply-To: " + refs[-1])
            h.append("References: " + (CRLF + " ").join(refs))
        if bad == "long-header":
            h.append("X-Long-Header: " + " ".join(self.words(r.randint(300, 900))))   # unfolded, > 998 octets
        h.append("MIME-Version: 1.0")
        if r.random() < 0.3:
            h.append("X-Mailer: Harness Mailer %d.%d" % (r.randint(1, 9), r.randint(0, 99)))
        cte = "7bit" if intl == 0 else r.choice(["quoted-printable", "8bit", "base64"])
        if bad == "8bit-undeclared":
            intl, cte = 0.3, "7bit"      # raw UTF-8 body, declared 7bit/us-ascii
        if bad == "headers-only":
            body = []
            h.append("Content-Type: text/plain; charset=us-ascii")
        elif kind in ("plain", "html") or bad in ("dot-lines", "bare-lf"):
            part = self.text_part(size, kind == "html", intl, cte if bad not in ("dot-lines", "bare-lf") else "8bit")
            if bad == "8bit-undeclared":
                part[0] = "Content-Type: text/plain; charset=us-ascii"
            h += part[:2]
            body = part[3:]
        else:
            b_alt = "=_alt_%d_%x" % (i, r.getrandbits(32))
            alt = ["--" + b_alt] + self.text_part(size * 45 // 100, False, intl, cte) + \
                  ["--" + b_alt] + self.text_part(size * 55 // 100, True, intl, cte) + ["--" + b_alt + "--"]
            if kind == "alt":
                h.append('Content-Type: multipart/alternative; boundary="%s"' % b_alt)
                body = ["This is a multi-part message in MIME format.", ""] + alt
            else:
                b_mix = "=_mix_%d_%x" % (i, r.getrandbits(32))
                h.append('Content-Type: multipart/mixed; boundary="%s"' % b_mix)
                body = ["--" + b_mix, 'Content-Type: multipart/alternative; boundary="%s"' % b_alt, ""] + alt + [""]
                if kind == "attach":
                    for _ in range(r.choice([1, 1, 1, 2])):
                        body += self.attachment(b_mix)
                else:   # forwarded message/rfc822
                    inner = ["From: " + self.addr("ascii"), "To: " + self.addr("ascii"), "Subject: forwarded " + subj_words,
                             "Date: " + self.date(), "Message-ID: <fwd.%d@harness.example>" % i, "MIME-Version: 1.0",
                             "Content-Type: text/plain; charset=us-ascii", ""] + self.paragraphs(r.randint(500, 4000))
                    body += ["--" + b_mix, "Content-Type: message/rfc822", 'Content-Disposition: attachment; filename="fwd.eml"', ""] + inner
                body += ["--" + b_mix + "--", ""]
        if bad == "dot-lines":
            k = max(1, len(body) // 3)
            body[k:k] = [".", "..", ".leading dot", "...three", "From the desk of nobody", ">From quoted", ". ", "."]
        text = CRLF.join(h) + CRLF + CRLF + CRLF.join(body)
        text = text.rstrip(CRLF) if bad == "no-final-newline" else text + CRLF
        raw = text.encode("utf-8")
        if bad == "bare-lf":        # some lines end in LF only
            parts = raw.split(b"\r\n")
            cut = len(h) + 2
            raw = b"\r\n".join(parts[:cut]) + b"\r\n" + b"".join(
                p + (b"\n" if j % 3 == 0 else b"\r\n") for j, p in enumerate(parts[cut:]))
        return raw, (mid, subj, refs), arrival


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", "-n", type=int, required=True)
    ap.add_argument("--seed", type=int, default=42)
    out = ap.add_mutually_exclusive_group(required=True)
    out.add_argument("--maildir", help="write into this maildir (cur/, created if needed)")
    out.add_argument("--eml-dir", help="write NNNNNN.eml files here")
    ap.add_argument("--manifest", help="write a TSV: index file size crlf_size message-id sha256 tags")
    a = ap.parse_args()

    g = Gen(a.seed)
    n = a.count
    bad = {}
    if n >= 2 * len(MALFORMED):
        per = max(1, n // 200)
        idx = g.rng.sample(range(n), per * len(MALFORMED))
        bad = {j: MALFORMED[k // per] for k, j in enumerate(idx)}
    dest = a.maildir or a.eml_dir
    if a.maildir:
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(dest, sub), exist_ok=True)
    else:
        os.makedirs(dest, exist_ok=True)
    man = open(a.manifest, "w") if a.manifest else None
    if man:
        man.write("index\tfile\tsize\tcrlf_size\tmessage_id\tsha256\ttags\n")
    earlier, tot, wire, counts = [], 0, 0, {}
    for i in range(n):
        b = bad.get(i, "")
        raw, meta, arrival = g.message(i, b, earlier)
        earlier.append((meta[0], meta[1], meta[2]))
        vsize = len(raw) + raw.count(b"\n") - raw.count(b"\r\n")   # size with every line end as CRLF
        flags = g.rng.choices(["", "S", "FS", "RS"], [75, 20, 2, 3])[0]
        ts = int(arrival.timestamp())
        if a.maildir:
            name = "%d.M%06dP%d.harness,S=%d,W=%d:2,%s" % (ts, i, a.seed, len(raw), vsize, flags)
            path = os.path.join(dest, "cur", name)
        else:
            name = "%06d.eml" % (i + 1)
            path = os.path.join(dest, name)
        with open(path, "wb") as f:
            f.write(raw)
        os.utime(path, (ts, ts))                # maildir INTERNALDATE = mtime = arrival
        tot += len(raw); wire += vsize
        tags = [t for t in [b, "attachment" if b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment" in raw else ""] if t]
        for t in tags:
            counts[t] = counts.get(t, 0) + 1
        if man:
            man.write("%d\t%s\t%d\t%d\t%s\t%s\t%s\n" % (i + 1, name, len(raw), vsize, meta[0] if b != "no-message-id" else "-",
                                                     hashlib.sha256(raw).hexdigest(), ",".join(tags)))
    if man:
        man.close()
    summary = {"messages": n, "seed": a.seed, "bytes": tot, "crlf_bytes": wire, "dest": dest, "tags": counts}
    print(json.dumps(summary))
    print("generated %d messages, %.1f MB (%.1f MB as CRLF on the wire) in %s" % (n, tot / 1e6, wire / 1e6, dest), file=sys.stderr)


if __name__ == "__main__":
    main()
