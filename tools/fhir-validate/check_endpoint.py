#!/usr/bin/env python3
"""Checks endpoint.py itself, without the Wardline client: it must create
every entry of a valid transaction bundle, find them all when the same
bundle comes again, and refuse what it should refuse (a collection, a bundle
that is not FHIR, a changed text, a wrong or missing token), storing nothing
it refused. Otherwise "the endpoint accepted it" would mean nothing.

Usage: check_endpoint.py TRANSACTION.json    (run with the R4B environment's
Python). The last line is `fhir-validate: endpoint.py: N passed, M failed`.
"""

import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOKEN = "check-endpoint-token"


def main(path):
    bundle_text = Path(path).read_bytes()
    bundle = json.loads(bundle_text)
    entries = len(bundle["entry"])
    comms = sum(1 for e in bundle["entry"] if e["resource"]["resourceType"] == "Communication")

    def changed(change):
        b = json.loads(bundle_text)
        change(b)
        return json.dumps(b).encode()

    def rename_sent(b):
        comm = b["entry"][0]["resource"]
        comm["sentAt"] = comm.pop("sent")  # not a FHIR element

    def add_a_dot(b):
        b["entry"][0]["resource"]["payload"][0]["contentString"] += "."  # not what was signed

    def as_collection(b):
        b["type"] = "collection"
        for e in b["entry"]:
            del e["request"]

    def unconditional(b):
        del b["entry"][0]["request"]["ifNoneExist"]  # a repeat would duplicate it

    with tempfile.TemporaryDirectory() as record:
        env = dict(os.environ, WARDLINE_FHIR_TOKEN=TOKEN)
        endpoint = subprocess.Popen(
            [sys.executable, str(HERE / "endpoint.py"), "--record", record, "--until-stdin-closes"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        try:
            ready = endpoint.stdout.readline()
            if "ready port=" not in ready:
                print(f"FAIL endpoint.py did not start: {ready!r}")
                print("fhir-validate: endpoint.py: 0 passed, 1 failed")
                return 1
            url = ready.split("url=", 1)[1].strip()

            def post(body, token=TOKEN):
                headers = {"Content-Type": "application/fhir+json"}
                if token is not None:
                    headers["Authorization"] = f"Bearer {token}"
                request = urllib.request.Request(url, data=body, method="POST", headers=headers)
                try:
                    with urllib.request.urlopen(request, timeout=60) as r:
                        return r.status, json.load(r)
                except urllib.error.HTTPError as e:
                    return e.code, json.load(e)

            def statuses(answer):
                return [e["response"]["status"] for e in answer.get("entry", [])]

            def refused(status, why):
                """Answered `status` with an OperationOutcome saying `why`."""
                return lambda s, a: s == status and any(
                    why in i.get("diagnostics", "") for i in a.get("issue", []))

            cases = [
                ("a valid transaction: every entry created", bundle_text, TOKEN,
                 lambda s, a: s == 200 and statuses(a) == ["201 Created"] * entries),
                ("the same again: every entry already there", bundle_text, TOKEN,
                 lambda s, a: s == 200 and statuses(a) == ["200 OK"] * entries),
                ("a collection", changed(as_collection), TOKEN, refused(400, "Bundle.type")),
                ("an element that is not FHIR", changed(rename_sent), TOKEN, refused(400, "sentAt")),
                ("a text that is not what was signed", changed(add_a_dot), TOKEN,
                 refused(400, "does not verify: text")),
                ("a create that is not conditional", changed(unconditional), TOKEN, refused(400, "ifNoneExist")),
                ("a wrong token", bundle_text, "wrong", refused(401, "bearer token")),
                ("no token", bundle_text, None, refused(401, "bearer token")),
            ]
            passed = failed = 0
            for name, body, token, expected in cases:
                status, answer = post(body, token)
                if expected(status, answer):
                    passed += 1
                    print(f"ok   endpoint.py: {name}: HTTP {status}")
                else:
                    failed += 1
                    print(f"FAIL endpoint.py: {name}: HTTP {status} {json.dumps(answer)[:500]}")
            # What was refused left nothing behind.
            last = json.loads((Path(record) / f"{len(cases):03d}-verdict.json").read_text())
            if last["store"] == {"Communication": comms, "Provenance": comms}:
                passed += 1
                print(f"ok   endpoint.py: holds {comms} Communications and {comms} Provenances, nothing more")
            else:
                failed += 1
                print(f"FAIL endpoint.py: holds {last['store']}, not {comms} of each")
        finally:
            endpoint.stdin.close()
            try:
                endpoint.wait(timeout=30)
            except subprocess.TimeoutExpired:
                endpoint.kill()
    print(f"fhir-validate: endpoint.py: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-2])
    sys.exit(main(sys.argv[1]))
