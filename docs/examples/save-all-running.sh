#!/bin/sh
# Saves the state of every running VM — the scripting example of the original product, against
# vine's REST API.
#   locally, as root:  sh save-all-running.sh                      (the daemon's Unix socket)
#   remotely:          VINE_URL=https://host:8443 VINE_TOKEN=… VINE_CA=cert.pem sh save-all-running.sh
set -eu
if [ -n "${VINE_URL:-}" ]; then
    api() { curl -fsS --cacert "${VINE_CA:-/var/lib/vine/tls/cert.pem}" -H "Authorization: Bearer $VINE_TOKEN" -X "$1" "$VINE_URL$2"; }
else
    api() { curl -fsS --unix-socket "${VINE_SOCKET:-/run/vine/vine.sock}" -X "$1" "http://localhost$2"; }
fi
api GET /api/vms |
    python3 -c 'import json, sys; print("\n".join(v["name"] for v in json.load(sys.stdin) if v["state"] == "running"))' |
    while read -r vm; do
        [ -n "$vm" ] || continue
        api POST "/api/vms/$vm/actions/save" >/dev/null && echo "saved $vm"
    done
