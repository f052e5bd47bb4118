#!/usr/bin/env python3
"""Saves the state of every running VM through vine's REST API (HTTPS with an API token).

    VINE_URL=https://host:8443 VINE_TOKEN=$(vine token create) VINE_CA=/var/lib/vine/tls/cert.pem \\
        python3 save_all_running.py
"""
import json
import os
import ssl
import urllib.request

url, token = os.environ["VINE_URL"], os.environ["VINE_TOKEN"]
tls = ssl.create_default_context(cafile=os.environ.get("VINE_CA", "/var/lib/vine/tls/cert.pem"))


def api(method, path):
    req = urllib.request.Request(url + path, method=method, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, context=tls) as r:
        return json.load(r)


for vm in api("GET", "/api/vms"):
    if vm["state"] == "running":
        api("POST", f"/api/vms/{vm['name']}/actions/save")
        print(f"saved {vm['name']}")
