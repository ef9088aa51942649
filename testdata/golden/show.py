#!/usr/bin/env python3
"""Show golden expectations the way a reader sees them, to review them before committing.

The clean messages (.out) are 7-bit: encoded-word headers and base64/QP text. This prints,
for each case, the raw header lines, the decoded header values, every part with its type
and file name, the decoded text, and the .actions summary.

Usage: python3 show.py [PATTERN...]   (substring of a case name; default: every case)
       python3 show.py --failed PATTERN   (show NNN.out.failed instead)
"""
import email
import email.header
import email.policy
import glob
import os
import sys

CODECS = {"iso-2022-jp": "iso2022_jp"}


def show(path):
    raw = open(path, "rb").read()
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    print("=" * 100)
    print(path)
    print("-" * 40, "raw header")
    print(head)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    print("-" * 40, "decoded header")
    # email.header's RFC 2047 decoding (whitespace between adjacent encoded words dropped, as
    # the RFC says; the newer header registry keeps it inside display names).
    compat = email.message_from_bytes(raw)
    for k in ("From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID",
              "In-Reply-To", "References"):
        for v in compat.get_all(k, []):
            print("%s: %s" % (k, email.header.make_header(email.header.decode_header(v))))
    for part in msg.walk():
        if part.is_multipart():
            print("-" * 40, part.get_content_type())
            continue
        print("-" * 40, part.get_content_type(), part.get_param("charset"),
              part.get("Content-Transfer-Encoding"), repr(part.get_filename()))
        payload = part.get_payload(decode=True) or b""
        if part.get_content_maintype() == "text":
            cs = (part.get_content_charset() or "us-ascii").lower()
            print(payload.decode(CODECS.get(cs, cs), "replace").replace("\r\n", "\n"))
        else:
            print("<%d bytes, starts %r>" % (len(payload), payload[:16]))
    actions = path.replace(".out.failed", ".actions").replace(".out", ".actions")
    if os.path.exists(actions):
        print("-" * 40, "actions")
        print(open(actions, encoding="utf-8").read())


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    args = sys.argv[1:]
    suffix = ".out"
    if args and args[0] == "--failed":
        suffix, args = ".out.failed", args[1:]
    for p in sorted(glob.glob(os.path.join(here, "*" + suffix))):
        name = os.path.basename(p)
        if not args or any(a in name for a in args):
            show(p)


if __name__ == "__main__":
    main()
