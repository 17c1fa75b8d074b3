#!/usr/bin/env python3
"""Loopback fakes for scripts/package-test.sh: a Wawp overview and a webhook receiver.

GET  /v2/chats/overview?instance_id=ID&access_token=T&limit=&offset=
     Every instance has one customer who wrote 3 hours ago (past a 2h SLA); a wrong
     token is answered 401, as Wawp does. Each poll is logged as "poll ID".
POST /hook   A webhook channel: the JSON document is logged as "hook STATUS CHATS".
Usage: package-test-fake.py TOKEN PORTFILE LOGFILE   (binds 127.0.0.1:0, writes the port)
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

TOKEN, PORTFILE, LOGFILE = sys.argv[1:4]
STARTED = int(time.time())


def log(line):
    with open(LOGFILE, "a", encoding="utf-8") as f:
        f.write(line + "\n")


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path != "/v2/chats/overview":
            return self.reply(404, {"error": "not found"})
        if q.get("access_token") != TOKEN:
            return self.reply(401, {"error": "Unauthorized"})
        instance = q.get("instance_id", "")
        log("poll " + instance)
        if int(q.get("offset", "0")) > 0:
            return self.reply(200, [])
        chat = "2010%07d@c.us" % (abs(hash(instance)) % 10**7)
        ts = STARTED - 3 * 3600
        return self.reply(200, [{
            "id": chat, "name": "Customer of " + instance, "unreadCount": 1,
            "lastMessage": {"id": "M-" + chat, "body": "hello? anyone?", "timestamp": ts,
                            "fromMe": False, "hasMedia": False},
        }])

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        doc = json.loads(self.rfile.read(length) or b"{}")
        chats = ",".join(c.get("id", "?") for c in doc.get("chats", []))
        log("hook %s %s %s" % (doc.get("status"), doc.get("instance", "?"), chats))
        self.reply(200, {"ok": True})

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORTFILE, "w", encoding="utf-8") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
