#!/usr/bin/env python3
"""Validate FHIR bundles with whichever `fhir.resources` is installed.

* fhir.resources 8.x (pydantic 2): the R4B models, `fhir.resources.R4B`.
* fhir.resources 6.4 (pydantic 1): the R4 models (FHIR 4.0.1), `fhir.resources`.

Each file is parsed as a Bundle, and each entry's resource again with the
model of its own resourceType, so an entry that the Bundle model accepted
loosely is still checked in full. Both model sets forbid unknown elements.
These models check structure and most primitive formats, not coded values
(the Rust tests check every code against the FHIR value sets). Two rules of
FHIR JSON they let through are checked here too: no empty (or null) arrays,
objects or strings (R4 "JSON representation", 2.6.2), and base64Binary
values must be base64.

Usage: validate.py BUNDLE.json...    Exit status 0 only if every file passes.
"""

import base64
import binascii
import json
import sys
from importlib.metadata import version


def load_models():
    """(label, Bundle model, model lookup, validate function) for the installed package."""
    installed = version("fhir.resources")
    major = int(installed.split(".")[0])
    if major >= 8:
        from fhir.resources import R4B
        from fhir.resources.R4B.bundle import Bundle

        return (
            f"R4B {R4B.__fhir_version__} (fhir.resources {installed})",
            Bundle,
            R4B.get_fhir_model_class,
            lambda model, obj: model.model_validate(obj),
        )
    if major == 6:
        import fhir.resources as R4
        from fhir.resources.bundle import Bundle

        return (
            f"R4 {R4.__fhir_version__} (fhir.resources {installed})",
            Bundle,
            R4.get_fhir_model_class,
            lambda model, obj: model.parse_obj(obj),
        )
    raise SystemExit(f"fhir-validate: unsupported fhir.resources {installed}; install 8.x or 6.4")


def json_rules(value, path, problems):
    """The FHIR JSON rules the models do not enforce, for our base64 elements."""
    if value is None or value == "" or value == [] or value == {}:
        problems.append(f"{path}: empty values are not allowed in FHIR JSON")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            json_rules(item, f"{path}[{i}]", problems)
    elif isinstance(value, dict):
        for key, item in value.items():
            json_rules(item, f"{path}.{key}", problems)
            if key == "valueBase64Binary" or (key == "data" and ".signature[" in path):
                try:
                    base64.b64decode(item, validate=True)
                except (binascii.Error, TypeError, ValueError):
                    problems.append(f"{path}.{key}: not base64")


def check_file(path, bundle_model, model_for, validate):
    """A list of problems with one file; empty when it is valid."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        return [f"cannot read JSON: {e}"]
    return check_bundle(data, bundle_model, model_for, validate)


def check_bundle(data, bundle_model, model_for, validate):
    """A list of problems with a parsed bundle; empty when it is valid.
    (Also used by endpoint.py on what it receives.)"""
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        return ["resourceType is not Bundle"]
    problems = []
    json_rules(data, "Bundle", problems)
    try:
        validate(bundle_model, data)
    except Exception as e:  # pydantic's ValidationError differs between v1 and v2
        problems.append(f"Bundle: {e}")
    entries = data.get("entry") or []
    if not isinstance(entries, list):
        return problems + ["Bundle.entry is not an array"]
    if not entries:
        problems.append("the bundle has no entries")
    for i, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            problems.append(f"entry[{i}] has no resource")
            continue
        kind = resource.get("resourceType")
        try:
            validate(model_for(kind), resource)
        except Exception as e:
            problems.append(f"entry[{i}] {kind}: {e}")
    return problems


def main(paths):
    if not paths:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    label, bundle_model, model_for, validate = load_models()
    failed = 0
    for path in paths:
        problems = check_file(path, bundle_model, model_for, validate)
        if problems:
            failed += 1
            print(f"FAIL {path} [{label}]")
            for p in problems:
                print("  " + p.replace("\n", "\n  "))
        else:
            print(f"ok   {path} [{label}]")
    print(f"fhir-validate: {label}: {len(paths) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
