"""Unit tests for airlock_proof against the shared vectors.

    python3 -m unittest discover -s clients/python -p 'test_airlock_proof.py' -v
"""

import base64
import json
import os
import re
import unittest
from unittest import mock

import airlock_proof

VECTORS_FILE = os.path.join(os.path.dirname(__file__), "..", "test-vectors", "proof.json")
with open(VECTORS_FILE, encoding="utf-8") as f:
    VECTORS = json.load(f)["vectors"]


def inputs(v):
    kw = dict(proof_key=v["proof_key"], session_id=v["session_id"], method=v["method"],
              path=v["path"], body=base64.b64decode(v["body_b64"]), ts=v["ts"], nonce=v["nonce"])
    if "query" in v:
        kw["query"] = v["query"]
    return kw


class Vectors(unittest.TestCase):
    def test_there_are_vectors(self):
        self.assertGreaterEqual(len(VECTORS), 4)

    def test_signed_string(self):
        for v in VECTORS:
            with self.subTest(v["name"]):
                kw = inputs(v)
                kw.pop("proof_key")
                kw.setdefault("query", "")
                self.assertEqual(airlock_proof.signed_string(**kw), v["signed_string"])

    def test_header(self):
        for v in VECTORS:
            with self.subTest(v["name"]):
                self.assertEqual(airlock_proof.sign(**inputs(v)), v["header"])

    def test_signed_headers(self):
        v = VECTORS[1]
        self.assertEqual(airlock_proof.signed_headers(**inputs(v)), {"x-airlock-proof": v["header"]})

    def test_str_body_is_utf8(self):
        v = next(v for v in VECTORS if "non-ASCII" in v["name"])
        kw = inputs(v)
        text = "naïve café ✓\n"
        kw["body"] = text
        self.assertNotEqual(airlock_proof.sign(**kw), v["header"])  # vector also has non-UTF-8 bytes
        kw["body"] = text.encode("utf-8") + b"\x00\xff\xfe"
        self.assertEqual(airlock_proof.sign(**kw), v["header"])

    def test_method_is_upper_cased(self):
        v = VECTORS[1]
        self.assertEqual(airlock_proof.sign(**{**inputs(v), "method": "post"}), v["header"])

    def test_padded_key_accepted(self):
        v = VECTORS[0]
        self.assertEqual(airlock_proof.sign(**{**inputs(v), "proof_key": v["proof_key"] + "="}),
                         v["header"])

    def test_every_input_changes_the_signature(self):
        v = VECTORS[1]
        base = inputs(v)
        changes = dict(session_id="1" * 32, method="PUT", path="/t/echo/items/neW",
                       query="mode=createX", body=b'{"name":"widget","n":43}', ts=v["ts"] + 1,
                       nonce=v["nonce"] + "x", proof_key=VECTORS[2]["proof_key"])
        for name, value in changes.items():
            with self.subTest(name):
                self.assertNotEqual(airlock_proof.sign(**{**base, name: value}), v["header"])


class Defaults(unittest.TestCase):
    def test_fresh_nonce_and_current_time(self):
        v = VECTORS[0]
        kw = inputs(v)
        del kw["ts"], kw["nonce"]
        with mock.patch("time.time", return_value=1767225600.9):
            a = airlock_proof.sign(**kw)
            b = airlock_proof.sign(**kw)
        m = re.fullmatch(r"v1;ts=(\d+);nonce=([A-Za-z0-9_-]{22});sig=[A-Za-z0-9_-]{43}", a)
        self.assertIsNotNone(m, a)
        self.assertEqual(m.group(1), "1767225600")
        self.assertNotEqual(a, b, "two calls must not reuse a nonce")
        self.assertEqual(airlock_proof.sign(**{**kw, "ts": 1767225600, "nonce": m.group(2)}), a)


class Validation(unittest.TestCase):
    def test_bad_inputs_are_refused(self):
        base = inputs(VECTORS[0])
        bad = dict(nonce=["short", "x" * 65, "has space here!!", "dots.are.not.allowed"],
                   path=["t/echo", "/t/echo?x=1", "/t/echo#f", "/t/\necho"],
                   session_id=["a\nb"], query=["a=1\n"], ts=[-1, 1.5, True],
                   proof_key=["not base64!", "a+b/"])
        for name, values in bad.items():
            for value in values:
                with self.subTest(f"{name}={value!r}"), self.assertRaises(ValueError):
                    airlock_proof.sign(**{**base, name: value})


class WireTarget(unittest.TestCase):
    def test_split_target_keeps_the_raw_form(self):
        cases = {
            "http://h:1/t/echo/a%20b/%E2%9C%93?q=two%20words&x=a+b#frag":
                ("/t/echo/a%20b/%E2%9C%93", "q=two%20words&x=a+b"),
            "http://h/t/echo/items/7?": ("/t/echo/items/7", ""),
            "http://h/t/echo/items/7": ("/t/echo/items/7", ""),
            "http://h": ("/", ""),
            "http://h/a?b?c": ("/a", "b?c"),
        }
        for url, want in cases.items():
            with self.subTest(url):
                self.assertEqual(airlock_proof.split_target(url), want)

    def test_urls_the_receiver_would_rewrite_are_refused(self):
        for url in ["http://h/t/x/a b", "http://h/t/x/caf\u00e9", "http://h/t/x/a{b}",
                    "http://h/t/x/a\\b", "http://h/t/x/../y", "http://h/t/x/%2E%2e/y",
                    "http://h/t/x/./y", "http://h/t/x?name=o'brien", "http://h/t/x?a=<b>"]:
            with self.subTest(url), self.assertRaises(ValueError):
                airlock_proof.split_target(url)
        # The percent-encoded forms are fine, and kept as they are.
        self.assertEqual(airlock_proof.split_target("http://h/t/x/a%7Bb%7D/..a?name=o%27brien&a[]=1"),
                         ("/t/x/a%7Bb%7D/..a", "name=o%27brien&a[]=1"))


if __name__ == "__main__":
    unittest.main()
