#!/usr/bin/env python3
"""Check a Wardline health-record export with nothing but Python and the
`cryptography` package: an implementation independent of the Rust code, and
the procedure docs/HEALTH-RECORD.md describes ("Verifying an entry yourself").

For every Communication, the Provenance that targets it discloses the signed
envelope header, nonce, ciphertext, content key and the sender device's
Ed25519 public key. We rebuild the header bytes (PROTOCOL.md, "Envelope"),
check the signature, decrypt, and compare the text, patient, priority, sent
time and sender with the Communication.

Usage: verify_export.py BUNDLE.json...    Exit status 0 only if every entry verifies.
"""

import base64
import hashlib
import json
import struct
import sys
from datetime import datetime

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ENVELOPE = "https://wardline.nhs.example/fhir/StructureDefinition/signed-envelope"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
AUTHOR = "1.2.840.10065.1.12.1.1"
HEADER_FIELDS = ["msg_id", "conv_id", "sender_user", "sender_device", "sent_at", "priority", "residency"]


def header_bytes(f):
    """The AEAD associated data: a label, then each field as u32 BE length + UTF-8."""
    out = b"wardline/v1/header"
    for name in HEADER_FIELDS:
        value = f[name].encode("utf-8")
        out += struct.pack(">I", len(value)) + value
    return out


def check(communication, provenance):
    """The list of checks that fail for one entry (empty: verified)."""
    ext = next(e for e in provenance["extension"] if e["url"] == ENVELOPE)
    f = {e["url"]: next(v for k, v in e.items() if k.startswith("value")) for e in ext["extension"]}
    b64 = base64.b64decode
    header = header_bytes(f)
    nonce, ciphertext = b64(f["nonce"]), b64(f["ciphertext"])
    signature = next(s for s in provenance["signature"] if s["type"][0]["code"] == AUTHOR)

    # 1. The signature: Ed25519 over label || SHA-256(header) || SHA-256(nonce || ciphertext).
    signed = (b"wardline/v1/signature" + hashlib.sha256(header).digest()
              + hashlib.sha256(nonce + ciphertext).digest())
    failures = []
    try:
        Ed25519PublicKey.from_public_bytes(b64(f["sender_sig_pk"])).verify(b64(signature["data"]), signed)
    except InvalidSignature:
        failures.append("signature")
    # 2. Decrypt with the disclosed content key; the header is the associated data.
    try:
        body = json.loads(AESGCM(b64(f["content_key"])).decrypt(nonce, ciphertext, header))
    except InvalidTag:
        return failures + ["decrypt"]
    # 3. The Communication must say what was signed.
    instant = lambda t: datetime.fromisoformat(t.replace("Z", "+00:00"))
    if [p.get("contentString") for p in communication["payload"]] != [body["text"]]:
        failures.append("text")
    if communication.get("priority") != f["priority"]:
        failures.append("priority")
    if instant(communication["sent"]) != instant(f["sent_at"]):
        failures.append("sent")
    subject = communication["subject"]["identifier"]
    signed_patient = (body.get("patient") or {}).get("nhs_number")
    if subject["system"] != NHS or (
        subject["value"] != signed_patient if f["patient_source"] == "message"
        else signed_patient is not None):
        failures.append("patient")
    author = next(a for a in provenance["agent"] if a["type"]["coding"][0]["code"] == "author")
    if (communication["sender"]["identifier"] != author["who"]["identifier"]
            or signature["who"]["identifier"]["value"] != f["sender_device"]):
        failures.append("sender")
    return failures


def verify_file(path):
    with open(path, encoding="utf-8") as fh:
        return verify_bundle(json.load(fh))


def verify_bundle(bundle):
    """(Communication fullUrl, failed checks) for each Communication of a
    parsed bundle. (Also used by endpoint.py on what it receives.)"""
    entries = [(e.get("fullUrl"), e["resource"]) for e in bundle.get("entry", [])]
    results = []
    for url, comm in entries:
        if comm["resourceType"] != "Communication":
            continue
        provs = [r for _, r in entries if r["resourceType"] == "Provenance"
                 and any(t.get("reference") == url for t in r.get("target", []))]
        try:
            failures = check(comm, provs[0]) if len(provs) == 1 else ["provenance"]
        except (KeyError, IndexError, StopIteration, TypeError, ValueError) as e:
            failures = [f"malformed ({type(e).__name__}: {e})"]
        results.append((url, failures))
    return results


def main(paths):
    passed = failed = 0
    for path in paths:
        results = verify_file(path)
        bad = [(msg, f) for msg, f in results if f]
        for msg, f in bad:
            print(f"FAIL {path}: {msg}: {', '.join(f)}")
        if results and not bad:
            print(f"ok   {path}: {len(results)} entries verified")
            passed += 1
        else:
            failed += 1
    print(f"fhir-validate: signatures (python cryptography): {passed} passed, {failed} failed")
    return 1 if failed or not paths else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
