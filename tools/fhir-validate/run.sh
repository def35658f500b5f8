#!/usr/bin/env bash
# Checks Wardline's health-record export with independent tools:
#   * fhir.resources 8.x, R4B models (pydantic 2)
#   * fhir.resources 6.4, R4 models, FHIR 4.0.1 (pydantic 1)
#   * verify_export.py: the documented signature check, in Python
# on sample bundles written by `cargo test -p wardline-protocol --test record`.
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

echo "fhir-validate: $passed passed, $failed failed"
exit "$status"
