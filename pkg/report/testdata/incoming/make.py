#!/usr/bin/env python3
"""Builds the report corpus of pkg/report from src/: plain copies, gzip and zip
files, and report messages. Deterministic (gzip mtime 0, fixed zip dates).
Run from this directory: /usr/bin/python3 make.py"""
import base64, gzip, io, quopri, shutil, zipfile

def read(name):
    with open("src/" + name, "rb") as f:
        return f.read()

def gz(data):
    b = io.BytesIO()
    with gzip.GzipFile(fileobj=b, mode="wb", mtime=0, filename="") as g:
        g.write(data)
    return b.getvalue()

def zipped(entries):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            z.writestr(zipfile.ZipInfo(name, date_time=(2025, 12, 6, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    return b.getvalue()

def b64(data):
    s = base64.b64encode(data).decode()
    return "\r\n".join(s[i:i + 76] for i in range(0, len(s), 76))

def write(name, data):
    if isinstance(data, str):
        data = data.encode()
    with open(name, "wb") as f:
        f.write(data)

def crlf(s):
    return s.replace("\r\n", "\n").replace("\n", "\r\n")

for n in ["01-rfc9990-full.xml", "02-rfc7489-namespace.xml", "06-unknown-enums.xml",
          "07-missing-optional.xml", "08-multi-day.xml", "09-null-report.xml"]:
    shutil.copy("src/" + n, n)
write("03-google-style.zip", zipped([("google.com!example.com!1764892800!1764979199.xml", read("03-google-style.xml"))]))
write("04-microsoft-style.xml.gz", gz(read("04-microsoft-style.xml")))
write("10-yahoo-unused.xml.gz", gz(read("10-yahoo-unused.txt")))

head = """From: DMARC Reporter <dmarc@{sub}>
To: dmarc-rua@example.com
Subject: Report Domain: example.com Submitter: {sub} Report-ID: <{rid}>
Date: Sat, 06 Dec 2025 01:02:03 +0000
Message-ID: <{rid}@{sub}>
MIME-Version: 1.0
"""

yahoo_name = "yahoo.com!example.com!1764892800!1764979199.xml.gz"
write("11-message-gzip.eml", crlf(head.format(sub="yahoo.com", rid="1764980000.123456") + f"""Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain; charset=us-ascii

This is an aggregate report from Yahoo.
--b1
Content-Type: application/gzip; name="{yahoo_name}"
Content-Disposition: attachment; filename="{yahoo_name}"
Content-Transfer-Encoding: base64

""" + b64(gz(read("05-yahoo-style.xml"))) + """
--b1--
"""))

legacy_name = "legacy.example!example.org!1764892800!1764979199.zip"
write("12-message-zip.eml", crlf(head.format(sub="legacy.example", rid="legacy-4711") + f"""Content-Type: multipart/mixed;
 boundary="----=_Part_0"

------=_Part_0
Content-Type: application/x-zip-compressed; name="{legacy_name}"
Content-Transfer-Encoding: base64

""" + b64(zipped([("legacy.example!example.org!1764892800!1764979199.xml", read("02-rfc7489-namespace.xml"))])) + """
------=_Part_0--
"""))

write("13-message-inline.eml", crlf(head.format(sub="minimal.example", rid="m1") + """Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

""").encode() + quopri.encodestring(read("07-missing-optional.xml")).replace(b"\n", b"\r\n"))

weekly_name = "weekly.example!example.com!1764590400!1764806400!w49.xml.gz"
write("14-message-octet-nested.eml", crlf(head.format(sub="weekly.example", rid="w49") + f"""Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/alternative; boundary="inner"

--inner
Content-Type: text/plain; charset=us-ascii

Weekly report.
--inner
Content-Type: text/html; charset=us-ascii

<p>Weekly report.</p>
--inner--
--outer
Content-Type: application/octet-stream
Content-Disposition: attachment; filename*=UTF-8''{weekly_name}
Content-Transfer-Encoding: base64

""" + b64(gz(read("08-multi-day.xml"))) + """
--outer--
"""))

write("15-message-yahoo-unused.eml", crlf(head.format(sub="yahoo.com", rid="1764980001.1") + f"""Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: application/gzip; name="{yahoo_name}"
Content-Transfer-Encoding: base64

""" + b64(gz(read("10-yahoo-unused.txt"))) + """
--b1--
"""))
