#!/usr/bin/env bash
# Checks Wardline's health-record export with independent tools:
#   * fhir.resources 8.x, R4B models (pydantic 2)
#   * fhir.resources 6.4, R4 models, FHIR 4.0.1 (pydantic 1)
#   * verify_export.py: the documented signature check, in Python
# on sample bundles written by `cargo test -p wardline-protocol --test record`;
# then `wardline export --post` against endpoint.py, a FHIR endpoint that
# checks what it receives with the same validators (check_endpoint.py first
# checks the endpoint itself; then the client test export_post, which must run).
# The virtual environments live under the cargo target directory and are
# reused while their requirements file is unchanged.
#
# Environment: CARGO_TARGET_DIR (default: target), PYTHON (default: python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$repo/$target" ;; esac
python="${PYTHON:-python3}"
samples="$target/fhir-samples"

# venv DIR REQUIREMENTS: create DIR and install into it, unless a previous run
# installed the same requirements there.
venv() {
    local dir="$1" req="$2" stamp="$1/.wardline-requirements"
    if [[ -x "$dir/bin/python" ]] && cmp -s "$req" "$stamp"; then
        return
    fi
    echo "fhir-validate: preparing $dir" >&2
    "$python" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$stamp"
}

venv "$target/fhir-venv-r4b" "$here/requirements-r4b.txt"
venv "$target/fhir-venv-r4" "$here/requirements-r4.txt"

rm -rf "$samples"
mkdir -p "$samples"
(cd "$repo" && WARDLINE_FHIR_SAMPLES_DIR="$samples" cargo test --quiet -p wardline-protocol --test record >&2)
shopt -s nullglob
files=("$samples"/*.json)
if ((${#files[@]} == 0)); then
    echo "fhir-validate: the tests wrote no samples to $samples" >&2
    exit 1
fi

passed=0
failed=0
status=0
run() {
    local out
    out="$("$@")" || status=1
    printf '%s\n' "$out"
    local last="${out##*$'\n'}"
    if [[ "$last" =~ :\ ([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        passed=$((passed + BASH_REMATCH[1]))
        failed=$((failed + BASH_REMATCH[2]))
    else
        failed=$((failed + ${#files[@]}))
        status=1
    fi
}
run "$target/fhir-venv-r4b/bin/python" "$here/validate.py" "${files[@]}"
run "$target/fhir-venv-r4/bin/python" "$here/validate.py" "${files[@]}"
run "$target/fhir-venv-r4b/bin/python" "$here/verify_export.py" "${files[@]}"

# Each tool must also reject a broken bundle, or "passed" above means nothing.
broken="$target/fhir-samples-broken"
rm -rf "$broken"
mkdir -p "$broken"
"$python" - "${files[0]}" "$broken" <<'PY'
import json, sys
bundle = json.load(open(sys.argv[1], encoding="utf-8"))
comm = bundle["entry"][0]["resource"]
comm["sentAt"] = comm.pop("sent")  # not a FHIR element
json.dump(bundle, open(sys.argv[2] + "/not-fhir.json", "w", encoding="utf-8"))
comm["sent"] = comm.pop("sentAt")
comm["payload"][0]["contentString"] += "."  # valid FHIR, but not what was signed
json.dump(bundle, open(sys.argv[2] + "/tampered.json", "w", encoding="utf-8"))
PY
rejected=0
expect_reject() {
    if "$@" >/dev/null; then
        echo "fhir-validate: FAIL: accepted a broken bundle: ${*: -1}" >&2
        failed=$((failed + 1))
        status=1
    else
        passed=$((passed + 1))
        rejected=$((rejected + 1))
    fi
}
expect_reject "$target/fhir-venv-r4b/bin/python" "$here/validate.py" "$broken/not-fhir.json"
expect_reject "$target/fhir-venv-r4/bin/python" "$here/validate.py" "$broken/not-fhir.json"
expect_reject "$target/fhir-venv-r4b/bin/python" "$here/verify_export.py" "$broken/tampered.json"
echo "fhir-validate: broken bundles: $rejected of 3 rejected as they should be"

# The endpoint for `export --post`: first on its own (it must accept a valid
# transaction, find it again, and refuse broken bundles and bad tokens) ...
# (run counts a tool that prints no summary as failing each file it was given.)
files=("$samples/transaction.json")
run "$target/fhir-venv-r4b/bin/python" "$here/check_endpoint.py" "$samples/transaction.json"
# ... then with the client: the test skips itself when WARDLINE_FHIR_PYTHON is
# unset, so it is told the validators are required, and must say it ran.
if out="$(cd "$repo" && WARDLINE_FHIR_PYTHON="$target/fhir-venv-r4b/bin/python" WARDLINE_FHIR_REQUIRED=1 \
    cargo test --quiet -p wardline-cli --test export_post 2>&1)"; then
    test_ok=1
else
    test_ok=0
fi
printf '%s\n' "$out" >&2
if ((test_ok)) && grep -q '^export_post: endpoint.py .* validated and accepted' <<<"$out"; then
    echo "fhir-validate: wardline export --post to endpoint.py: passed"
    passed=$((passed + 1))
else
    echo "fhir-validate: FAIL: wardline export --post to endpoint.py (cargo test -p wardline-cli --test export_post) failed or did not run" >&2
    failed=$((failed + 1))
    status=1
fi

echo "fhir-validate: $passed passed, $failed failed"
exit "$status"
