#!/usr/bin/env python3
"""A small FHIR server that checks what `wardline export --post` sends.

It takes a transaction Bundle POSTed to its base URL and checks it with the
code of validate.py (the installed fhir.resources models: the bundle, then
each entry's resource with its own model, and the FHIR JSON rules) and of
verify_export.py (each entry's signature and text), and checks that it is a
transaction as docs/HEALTH-RECORD.md describes: every entry a conditional
create (`POST` to its resource type, `ifNoneExist` on the message's
identifier) whose condition names the resource it creates, so a repeated
export cannot duplicate anything.

A valid transaction is applied to an in-memory store, all or nothing: each
entry is created ("201 Created", with a location) unless its condition
matches what the store already holds ("200 OK"), and references to the
bundle's urn:uuid fullUrls are rewritten to the assigned ids. The answer is
a `transaction-response` Bundle with one entry per request entry. Anything
else gets an OperationOutcome: 401 without the right bearer token, 400 for
a bundle that is not valid (one issue per problem), 404, 405, 411, 413 or
415 for the wrong request. Every answer is checked with the same models
before it is sent.

Each request is recorded in the --record directory before it is answered:
NNN-request.body (the body exactly as received) and NNN-verdict.json (the
status, the problems, the entry counts, the answer). The token is never
recorded.

Run it with the Python of the R4B environment that run.sh makes (it needs
fhir.resources 8.x and cryptography):

    WARDLINE_FHIR_TOKEN=TOKEN endpoint.py --record DIR [--port N]
        [--path /fhir/r4] [--cert CERT.pem --key KEY.pem] [--until-stdin-closes]

The expected bearer token is read from WARDLINE_FHIR_TOKEN, the variable
the client sends it from, never from the command line. It listens on
127.0.0.1 only: plain HTTP, or HTTPS with --cert/--key. Once listening it
prints one line,

    fhir-endpoint: ready port=PORT url=URL

and then one line per request, on standard output.
"""

import argparse
import hmac
import json
import os
import ssl
import sys
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

# This directory's validators, imported rather than copied (and no
# __pycache__ left in the source tree).
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import validate  # noqa: E402

try:
    import verify_export  # noqa: E402
except ImportError as e:  # cryptography is only in the R4B environment
    raise SystemExit(f"fhir-endpoint: {e}; run me with the R4B environment's Python (run.sh makes it)")

TOKEN_ENV = "WARDLINE_FHIR_TOKEN"
MAX_BODY = 32 * 1024 * 1024
MAX_ISSUES = 50
# The two conditions docs/HEALTH-RECORD.md ("Transaction bundles") uses.
CONDITIONS = {
    "Communication": "identifier=",
    "Provenance": "target:Communication.identifier=",
}


def now():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def outcome(code, problems):
    """An OperationOutcome with one error issue per problem."""
    issues = [{"severity": "error", "code": code, "diagnostics": p[:2000]} for p in problems[:MAX_ISSUES]]
    if len(problems) > MAX_ISSUES:
        issues.append({"severity": "error", "code": code,
                       "diagnostics": f"and {len(problems) - MAX_ISSUES} more problems"})
    return {"resourceType": "OperationOutcome", "issue": issues}


class Rejected(Exception):
    """An answer other than 200: the HTTP status and an OperationOutcome."""

    def __init__(self, status, code, problems):
        super().__init__(problems[0])
        self.status = status
        self.answer = outcome(code, problems)


def identifier_token(resource):
    """The `system|value` of each identifier of a resource."""
    ids = resource.get("identifier") or []
    return {f"{i.get('system')}|{i.get('value')}" for i in ids if isinstance(i, dict)}


def transaction_problems(data):
    """Why a bundle (already valid FHIR) is not a transaction this server
    can apply without risk of duplicates; empty when it is one."""
    if data.get("type") != "transaction":
        return [f"Bundle.type is {data.get('type')!r}; POST a transaction Bundle to the base URL"]
    problems = []
    entries = data["entry"]
    by_url = {e.get("fullUrl"): e["resource"] for e in entries}
    seen = set()
    for i, entry in enumerate(entries):
        resource, request = entry["resource"], entry.get("request") or {}
        kind = resource.get("resourceType")
        where = f"entry[{i}] {kind}"
        full_url = entry.get("fullUrl") or ""
        try:
            uuid.UUID(full_url.removeprefix("urn:uuid:"))
            if not full_url.startswith("urn:uuid:"):
                raise ValueError
        except ValueError:
            problems.append(f"{where}: fullUrl {full_url!r} is not a urn:uuid")
        if request.get("method") != "POST" or request.get("url") != kind:
            problems.append(f"{where}: request must be POST {kind}, not "
                            f"{request.get('method')} {request.get('url')}")
        prefix = CONDITIONS.get(kind)
        condition = request.get("ifNoneExist") or ""
        if prefix is None:
            problems.append(f"{where}: this server takes only Communication and Provenance")
            continue
        if not condition.startswith(prefix):
            problems.append(f"{where}: ifNoneExist must be a conditional create {prefix}SYSTEM|VALUE, "
                            f"not {condition!r}")
            continue
        if condition in seen:
            problems.append(f"{where}: ifNoneExist {condition!r} is repeated in the bundle")
        seen.add(condition)
        token = condition.removeprefix(prefix)
        # The condition must name what is created, or a repeat would duplicate it.
        if kind == "Communication":
            named = identifier_token(resource)
        else:
            targets = [by_url.get((t or {}).get("reference")) for t in resource.get("target") or []]
            named = set().union(*(identifier_token(t) for t in targets if t is not None))
        if token not in named:
            problems.append(f"{where}: ifNoneExist {condition!r} does not match the "
                            f"{'identifier' if kind == 'Communication' else 'target Communication'} "
                            "of the resource, so posting it again would duplicate it")
    return problems


def signature_problems(data):
    """Each Communication's signature and text, as verify_export.py checks them."""
    try:
        results = verify_export.verify_bundle(data)
    except (KeyError, IndexError, StopIteration, TypeError, ValueError, AttributeError) as e:
        return [f"the entries could not be verified ({type(e).__name__}: {e})"], 0
    problems = [f"{url}: does not verify: {', '.join(f)}" for url, f in results if f]
    if not results:
        problems.append("the bundle holds no Communication")
    return problems, len(results) - len([1 for _, f in results if f])


class Store:
    """What this server holds: resources by (type, id)."""

    def __init__(self):
        self.resources = {}
        self.last_id = 0

    def counts(self):
        out = {}
        for kind, _ in self.resources:
            out[kind] = out.get(kind, 0) + 1
        return out

    def search(self, kind, condition):
        """Ids of stored resources of `kind` matching `condition` (one of CONDITIONS)."""
        token = condition.removeprefix(CONDITIONS[kind])
        comms = [rid for (k, rid), r in self.resources.items()
                 if k == "Communication" and token in identifier_token(r)]
        if kind == "Communication":
            return comms
        refs = {f"Communication/{c}" for c in comms}
        return [rid for (k, rid), r in self.resources.items()
                if k == "Provenance" and any((t or {}).get("reference") in refs for t in r.get("target") or [])]

    def plan(self, data):
        """What a checked transaction does: its response entries, and the
        resources to create (by `commit`). Conditions are evaluated against
        the store as it was before the transaction."""
        stamp = now()
        located, created, answers = {}, {}, []
        for entry in data["entry"]:
            resource = entry["resource"]
            kind = resource["resourceType"]
            matches = self.search(kind, entry["request"]["ifNoneExist"])
            if len(matches) > 1:
                raise Rejected(412, "multiple-matches",
                               [f"ifNoneExist {entry['request']['ifNoneExist']!r} matches {len(matches)} {kind}s"])
            if matches:
                rid, status = matches[0], "200 OK"
            else:
                self.last_id += 1
                rid, status = str(self.last_id), "201 Created"
                created[(kind, rid)] = json.loads(json.dumps(resource))
            located[entry["fullUrl"]] = f"{kind}/{rid}"
            answers.append({"response": {"status": status, "location": f"{kind}/{rid}/_history/1",
                                         "etag": 'W/"1"', "lastModified": stamp}})

        def rewrite(value):
            if isinstance(value, list):
                return [rewrite(v) for v in value]
            if isinstance(value, dict):
                return {k: (located.get(v, v) if k == "reference" else rewrite(v)) for k, v in value.items()}
            return value

        for (kind, rid), resource in created.items():
            resource = rewrite(resource)
            resource["id"] = rid
            resource.setdefault("meta", {}).update({"versionId": "1", "lastUpdated": stamp})
            created[(kind, rid)] = resource
        return answers, created

    def commit(self, created):
        """Stores what `plan` made: all of a transaction at once."""
        self.resources.update(created)


class Endpoint:
    def __init__(self, base, token, record):
        self.base = "/" + base.strip("/")
        self.token = token
        self.record = record
        self.label, self.bundle_model, self.model_for, self.validate = validate.load_models()
        self.store = Store()
        self.requests = 0
        self.lock = threading.Lock()

    def answer(self, handler):
        with self.lock:
            self.requests += 1
            n = self.requests
            verdict = {"request": n, "method": handler.command, "path": handler.path,
                       "validator": self.label}
            handler.body = b""
            try:
                try:
                    status, answer = self.judge(handler, verdict)
                except Rejected as r:
                    status, answer = r.status, r.answer
                self.check_answer(answer)
            except Exception as e:  # a fault here must show in the test, not hang the client
                status, answer = 500, outcome("exception", [f"endpoint fault: {type(e).__name__}: {e}"])
            verdict.update(status=status, accepted=status == 200, store=self.store.counts(), response=answer)
            if status != 200:
                verdict["problems"] = [i["diagnostics"] for i in answer["issue"]]
            self.write(f"{n:03d}-request.body", handler.body)
            self.write(f"{n:03d}-verdict.json", json.dumps(verdict, indent=2).encode())
            handler.send(status, answer)
            summary = (f"{verdict['created']} created, {verdict['existing']} already present"
                       if status == 200 else " ".join(verdict["problems"][0].split())[:200])
            print(f"fhir-endpoint: request {n}: {handler.command} {handler.path} -> {status} ({summary})",
                  flush=True)

    def judge(self, handler, verdict):
        """(200, the transaction-response), or raises Rejected. The body
        read is left in handler.body, to be recorded."""
        headers = handler.headers
        verdict.update(content_type=headers.get("Content-Type"), accept=headers.get("Accept"),
                       prefer=headers.get("Prefer"))
        if handler.command != "POST":
            raise Rejected(405, "not-supported", ["only POST of a transaction Bundle to the base URL"])
        # Read the whole body before any answer: closing on unread data
        # resets the connection, and the client would never see the answer.
        length = headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise Rejected(411, "structure", ["a Content-Length is required"])
        if int(length) > MAX_BODY:
            handler.close_connection = True
            raise Rejected(413, "too-costly", [f"the body is larger than {MAX_BODY} bytes"])
        body = handler.body = handler.read_body(int(length))
        verdict["bytes"] = len(body)
        authorization = headers.get("Authorization") or ""
        verdict["authorized"] = hmac.compare_digest(authorization.encode(), f"Bearer {self.token}".encode())
        if handler.path.split("?")[0].rstrip("/") != self.base.rstrip("/"):
            raise Rejected(404, "not-found", [f"POST a transaction Bundle to {self.base}, not {handler.path}"])
        if not verdict["authorized"]:
            raise Rejected(401, "login", ["the Authorization header must carry the bearer token"])
        media = (verdict["content_type"] or "").split(";")[0].strip().lower()
        if media != "application/fhir+json":
            raise Rejected(415, "not-supported", [f"Content-Type must be application/fhir+json, not {media!r}"])
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise Rejected(400, "structure", [f"the body is not JSON: {e}"])
        problems = validate.check_bundle(data, self.bundle_model, self.model_for, self.validate)
        verdict["fhir_valid"] = not problems
        if not problems:
            verdict.update(bundle_type=data.get("type"), entries=len(data["entry"]))
            problems = transaction_problems(data)
        if not problems:
            problems, verdict["signatures_verified"] = signature_problems(data)
        if problems:
            raise Rejected(400, "invalid", problems)
        answers, created = self.store.plan(data)
        response = {"resourceType": "Bundle", "id": str(uuid.uuid4()),
                    "type": "transaction-response", "timestamp": now(), "entry": answers}
        self.check_answer(response)
        self.store.commit(created)
        verdict.update(created=len(created), existing=len(answers) - len(created))
        return 200, response

    def check_answer(self, answer):
        """Every answer must itself be valid FHIR, by the same models."""
        problems = []
        validate.json_rules(answer, answer["resourceType"], problems)
        self.validate(self.model_for(answer["resourceType"]), answer)
        if problems:
            raise AssertionError(f"the endpoint's own answer is not valid FHIR: {problems}")

    def write(self, name, data):
        tmp = self.record / (name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.record / name)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "wardline-fhir-endpoint"
    timeout = 30

    def do_POST(self):
        self.server.endpoint.answer(self)

    do_GET = do_PUT = do_DELETE = do_PATCH = do_POST

    def read_body(self, length):
        chunks, left = [], length
        while left > 0:
            chunk = self.rfile.read(left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def send(self, status, answer):
        data = json.dumps(answer, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", "Bearer")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass  # one line per request is printed by Endpoint.answer


class Server(HTTPServer):
    def __init__(self, port, endpoint, tls):
        self.endpoint = endpoint
        self.tls = tls
        super().__init__(("127.0.0.1", port), Handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        sock.settimeout(Handler.timeout)
        if self.tls is None:
            return sock, addr
        try:
            return self.tls.wrap_socket(sock, server_side=True), addr
        except (OSError, ssl.SSLError) as e:
            print(f"fhir-endpoint: TLS handshake failed: {e}", file=sys.stderr, flush=True)
            sock.close()
            raise


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--record", required=True, type=Path, help="directory for what is received")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    parser.add_argument("--path", default="/fhir/r4", help="the base URL's path (default: /fhir/r4)")
    parser.add_argument("--cert", type=Path, help="PEM certificate: serve HTTPS")
    parser.add_argument("--key", type=Path, help="PEM private key of --cert")
    parser.add_argument("--until-stdin-closes", action="store_true",
                        help="stop when standard input ends (so a test's endpoint dies with the test)")
    args = parser.parse_args()
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        parser.error(f"set {TOKEN_ENV} to the bearer token to require")
    if (args.cert is None) != (args.key is None):
        parser.error("--cert and --key go together")
    tls = None
    if args.cert is not None:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(args.cert, args.key)
    args.record.mkdir(parents=True, exist_ok=True)
    server = Server(args.port, Endpoint(args.path, token, args.record), tls)
    port = server.server_address[1]
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/{args.path.strip('/')}"
    if args.until_stdin_closes:
        def watch():
            sys.stdin.buffer.read()
            server.shutdown()
        threading.Thread(target=watch, daemon=True).start()
    print(f"fhir-endpoint: ready port={port} url={url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
