#!/usr/bin/python3
# dkimpy_arc.py: seals and validates ARC chains with dkimpy (Debian's
# python3-dkim), for pkg/verify's differential test (arcdiff_test.go).
# Written for this project.
#
# Usage: /usr/bin/python3 dkimpy_arc.py DNS_HOST DNS_PORT
# Reads one JSON request per line on stdin, writes one JSON answer per line:
#   {"op": "sign", "message": b64, "selector": s, "domain": d, "key": PEM,
#    "srv_id": id, "headers": [names] or null, "t": unix time}
#     -> {"fields": [b64 of each new header field line]}
#   {"op": "verify", "message": b64}
#     -> {"cv": "pass"|"fail"|"none"|"", "reason": text}
# Keys are read from the DNS server given (the test's internal/dnstest
# server on loopback), so that dkimpy and our verifier see the same zone.
import base64
import json
import sys

import dkim
import dns.flags
import dns.message
import dns.query
import dns.rdatatype

HOST, PORT = sys.argv[1], int(sys.argv[2])


def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode("ascii")
    q = dns.message.make_query(name, dns.rdatatype.TXT)
    r = dns.query.udp(q, HOST, port=PORT, timeout=timeout)
    if r.flags & dns.flags.TC:
        r = dns.query.tcp(q, HOST, port=PORT, timeout=timeout)
    for rrset in r.answer:
        if rrset.rdtype == dns.rdatatype.TXT:
            return b"".join(rrset[0].strings)
    return None


def handle(req):
    msg = base64.b64decode(req["message"])
    if req["op"] == "sign":
        headers = req.get("headers")
        if headers is not None:
            headers = [h.encode() for h in headers]
        fields = dkim.arc_sign(msg, req["selector"].encode(), req["domain"].encode(),
                               req["key"].encode(), req["srv_id"].encode(),
                               include_headers=headers, timestamp=req["t"])
        return {"fields": [base64.b64encode(f).decode() for f in fields]}
    if req["op"] == "verify":
        cv, _, reason = dkim.arc_verify(msg, dnsfunc=dnsfunc)
        return {"cv": cv.decode() if cv else "", "reason": str(reason)}
    return {"error": "unknown op"}


for line in sys.stdin:
    try:
        out = handle(json.loads(line))
    except Exception as e:  # the test reports it with the request
        out = {"error": "%s: %s" % (type(e).__name__, e)}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
