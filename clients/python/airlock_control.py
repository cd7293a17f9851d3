"""Airlock control-plane client: Python standard library only (urllib).

Mint, list, inspect and revoke sessions, read and verify a session's audit
trail, and list and decide approvals, with the admin key:

    from airlock_control import Airlock
    api = Airlock("https://airlock.example.workers.dev", admin_key)   # or Airlock.from_env()
    s = api.mint(agent="coder-7", user="alice@example.com", tools={"github": "read"}, ttl_seconds=600)
    for row in api.sessions(agent="coder-7", status="active"):      # follows the cursors
        print(row["session_id"], row["status"])
    api.revoke_agent("coder-7")
    trail = api.audit(s["session_id"])      # {"records": [...], "head": ...}
    verify_chain(trail["records"])          # the head, or raises ChainBroken(index)

Errors are raised as AirlockError with the HTTP status and Airlock's stable
error code. The admin key never appears in a message.

CLI (for scripts and tests; the admin key from AIRLOCK_ADMIN_KEY):
    python3 airlock_control.py --url URL mint AGENT USER TOOL=LEVEL... [--ttl S]
    python3 airlock_control.py --url URL list [--agent A] [--user U] [--status S]
    python3 airlock_control.py --url URL revoke SESSION_ID | revoke-agent AGENT
    python3 airlock_control.py --url URL audit SESSION_ID
    python3 airlock_control.py --url URL approve|deny APPROVAL_ID APPROVER
Each prints one JSON document.
"""

import argparse
import hashlib
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

GENESIS = "0" * 64


class AirlockError(Exception):
    def __init__(self, status, code, message):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ChainBroken(Exception):
    def __init__(self, index):
        super().__init__(f"audit chain broken at record {index}")
        self.index = index


def verify_chain(records):
    """Verifies a trail's hash chain (as Airlock's audit::verify_chain does).

    Returns the head (hex SHA-256 of the last record, None for no records);
    raises ChainBroken with the index of the first record whose link fails.
    """
    last = None
    for i, stored in enumerate(records):
        try:
            fields = json.loads(stored)
            seq, prev = fields["seq"], fields["prev"]
        except (ValueError, TypeError, KeyError):
            raise ChainBroken(i) from None
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ChainBroken(i)
        if last is None:
            linked = seq > 0 or prev == GENESIS
        else:
            linked = seq == last[0] + 1 and prev == last[1]
        if not linked:
            raise ChainBroken(i)
        last = (seq, hashlib.sha256(stored.encode("utf-8")).hexdigest())
    return None if last is None else last[1]


class Airlock:
    def __init__(self, url, admin_key, timeout=30):
        if not admin_key:
            raise ValueError("an admin key is required")
        self.url = url.rstrip("/")
        self._key = admin_key
        self.timeout = timeout

    @classmethod
    def from_env(cls, url=None):
        return cls(url or os.environ["AIRLOCK_URL"], os.environ["AIRLOCK_ADMIN_KEY"])

    def __repr__(self):
        return f"Airlock({self.url!r})"

    def _call(self, method, path, body=None, query=None):
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("authorization", f"Bearer {self._key}")
        if data is not None:
            req.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            text = e.read().decode("utf-8", "replace")
            try:
                err = json.loads(text)["error"]
                raise AirlockError(e.code, err.get("code"), err.get("message")) from None
            except (ValueError, KeyError, TypeError):
                raise AirlockError(e.code, None, text[:200]) from None

    def mint(self, agent, user, tools, ttl_seconds=600, egress=False):
        body = {"agent": agent, "user": user, "tools": tools, "ttl_seconds": ttl_seconds}
        if egress:
            body["egress"] = True
        return self._call("POST", "/v1/sessions", body)

    def list_page(self, agent=None, user=None, status=None, cursor=None, limit=None):
        return self._call("GET", "/v1/sessions", query={"agent": agent, "user": user, "status": status, "cursor": cursor, "limit": limit})

    def sessions(self, agent=None, user=None, status=None, limit=None):
        """Every matching session, following the cursors."""
        cursor = None
        while True:
            page = self.list_page(agent, user, status, cursor, limit)
            yield from page["sessions"]
            cursor = page.get("next_cursor")
            if cursor is None:
                return

    def session(self, session_id):
        return self._call("GET", f"/v1/sessions/{urllib.parse.quote(session_id, safe='')}")

    def revoke(self, session_id):
        return self._call("DELETE", f"/v1/sessions/{urllib.parse.quote(session_id, safe='')}")

    def revoke_agent(self, agent):
        """Revokes all of an agent's sessions; returns how many."""
        total = 0
        while True:
            answer = self._call("DELETE", "/v1/sessions", query={"agent": agent})
            total += answer["revoked"]
            if not answer.get("more"):
                return total

    def audit(self, session_id):
        return self._call("GET", f"/v1/sessions/{urllib.parse.quote(session_id, safe='')}/audit")

    def approvals(self):
        return self._call("GET", "/v1/approvals")["approvals"]

    def approval(self, approval_id):
        return self._call("GET", f"/v1/approvals/{urllib.parse.quote(approval_id, safe='')}")

    def approve(self, approval_id, approver):
        return self._call("POST", f"/v1/approvals/{urllib.parse.quote(approval_id, safe='')}/approve", {"approver": approver})

    def deny(self, approval_id, approver):
        return self._call("POST", f"/v1/approvals/{urllib.parse.quote(approval_id, safe='')}/deny", {"approver": approver})


def main(argv=None):
    p = argparse.ArgumentParser(description="Airlock control plane (admin key from AIRLOCK_ADMIN_KEY)")
    p.add_argument("--url", default=os.environ.get("AIRLOCK_URL"))
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("mint")
    m.add_argument("agent")
    m.add_argument("user")
    m.add_argument("tools", nargs="+", metavar="TOOL=LEVEL")
    m.add_argument("--ttl", type=int, default=600)
    ls = sub.add_parser("list")
    for f in ("agent", "user", "status"):
        ls.add_argument(f"--{f}")
    ls.add_argument("--limit", type=int)
    sub.add_parser("revoke").add_argument("session_id")
    sub.add_parser("revoke-agent").add_argument("agent")
    sub.add_parser("audit").add_argument("session_id")
    for verb in ("approve", "deny"):
        d = sub.add_parser(verb)
        d.add_argument("approval_id")
        d.add_argument("approver")
    a = p.parse_args(argv)
    if not a.url:
        p.error("--url or AIRLOCK_URL is required")
    api = Airlock.from_env(a.url)
    try:
        if a.cmd == "mint":
            out = api.mint(a.agent, a.user, dict(t.split("=", 1) for t in a.tools), a.ttl)
        elif a.cmd == "list":
            out = {"sessions": list(api.sessions(a.agent, a.user, a.status, a.limit))}
        elif a.cmd == "revoke":
            out = api.revoke(a.session_id)
        elif a.cmd == "revoke-agent":
            out = {"revoked": api.revoke_agent(a.agent)}
        elif a.cmd == "audit":
            out = api.audit(a.session_id)
            try:
                head = verify_chain(out["records"])
                out["verified"] = head == out["head"]
            except ChainBroken as e:
                out["verified"] = False
                out["broken_at"] = e.index
        else:
            out = getattr(api, a.cmd)(a.approval_id, a.approver)
    except AirlockError as e:
        print(json.dumps({"error": {"status": e.status, "code": e.code, "message": e.message}}))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
