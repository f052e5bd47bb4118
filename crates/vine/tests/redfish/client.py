"""Drives vine's Redfish service with OpenStack's sushy, as crates/vine/tests/redfish.rs asks,
and prints what it saw as one JSON object (the Rust test asserts on it).

    client.py URL USER PASSWORD systems          every system, manager and chassis, via a session
    client.py URL USER PASSWORD reset ID TYPE    ComputerSystem.Reset, then the refreshed PowerState
    client.py URL USER PASSWORD invalid ID       a ResetType outside the allowable values
    client.py URL USER PASSWORD denied ID        what a user without rights on ID sees and may do
    client.py URL USER PASSWORD anonymous        what needs no credentials, and what 401s

The lab's certificates are self-signed, so TLS is not verified (the test runs on the lab's own
network namespaces).
"""

import json
import sys

import requests
import sushy
from sushy import exceptions
from sushy.resources.constants import ResetType

VERIFY = False


def connect(url, user, password):
    return sushy.Sushy(url, username=user, password=password, verify=VERIFY)


def system_path(ident):
    return f"/redfish/v1/Systems/{ident}"


def close(root):
    """Logs the session out (DELETE of the session); returns the status a request with the old
    token then gets."""
    key = root._auth.get_session_key()
    root._auth.close()
    if key is None:
        return None
    r = requests.get(root._base_url + "/redfish/v1/Systems", headers={"X-Auth-Token": key}, verify=VERIFY)
    return r.status_code


def systems(url, user, password):
    root = connect(url, user, password)
    session = root._auth.get_session_key() is not None
    out = {"redfish_version": root.redfish_version, "session": session, "systems": []}
    for s in root.get_system_collection().get_members():
        out["systems"].append({
            "id": s.identity,
            "name": s.name,
            "uuid": s.uuid,
            "power_state": s.power_state.value if s.power_state else None,
            "memory_gib": s.memory_summary.size_gib if s.memory_summary else None,
            "processor_count": s.processors.summary.count,
            "summary_count": s.json.get("ProcessorSummary", {}).get("Count"),
            "resets": sorted(v.value for v in s.get_allowed_reset_system_values()),
            "managers": [m.identity for m in s.managers],
            "chassis": [c.identity for c in s.chassis],
        })
    out["systems"].sort(key=lambda s: s["id"])
    out["managers"] = sorted(m.identity for m in root.get_manager_collection().get_members())
    out["chassis"] = sorted(c.identity for c in root.get_chassis_collection().get_members())
    out["after_logout"] = close(root)
    return out


def reset(url, user, password, ident, kind):
    root = connect(url, user, password)
    s = root.get_system(system_path(ident))
    s.reset_system(ResetType(kind))
    s.refresh()
    out = {"power_state": s.power_state.value if s.power_state else None}
    close(root)
    return out


def error_of(e):
    return {"status": e.status_code, "code": e.code}


def invalid(url, user, password, ident):
    root = connect(url, user, password)
    try:
        root._conn.post(system_path(ident) + "/Actions/ComputerSystem.Reset", data={"ResetType": "Explode"})
        out = {"status": 200}
    except exceptions.HTTPError as e:
        out = error_of(e)
        out["message"] = e.detail
    close(root)
    return out


def denied(url, user, password, ident):
    root = connect(url, user, password)
    out = {"members": list(root.get_system_collection().members_identities)}
    try:
        root.get_system(system_path(ident))
        out["get"] = {"status": 200}
    except exceptions.HTTPError as e:
        out["get"] = error_of(e)
    try:
        root._conn.post(system_path(ident) + "/Actions/ComputerSystem.Reset", data={"ResetType": "On"})
        out["reset"] = {"status": 204}
    except exceptions.HTTPError as e:
        out["reset"] = error_of(e)
    out["manager_servers"] = sorted(
        link["@odata.id"] for m in root.get_manager_collection().get_members()
        for link in m.json.get("Links", {}).get("ManagerForServers", []))
    close(root)
    return out


def anonymous(url, user, password):
    def get(path, **kw):
        return requests.get(url + path, verify=VERIFY, **kw)

    out = {}
    r = get("/redfish/v1/")
    out["root"] = {"status": r.status_code, "version": r.json().get("RedfishVersion"),
                   "odata_version": r.headers.get("OData-Version")}
    out["versions"] = get("/redfish").json()
    r = get("/redfish/v1/Systems")
    out["systems"] = {"status": r.status_code, "code": r.json()["error"]["code"]}
    r = get("/redfish/v1/Systems", auth=(user, password + "-wrong"))
    out["wrong_basic"] = {"status": r.status_code, "code": r.json()["error"]["code"]}
    r = get("/redfish/v1/Systems", auth=(user, password))
    out["basic"] = {"status": r.status_code, "count": r.json().get("Members@odata.count")}
    r = get("/redfish/v1/NoSuchThing", auth=(user, password))
    out["missing"] = {"status": r.status_code, "code": r.json()["error"]["code"]}
    return out


def main(argv):
    url, user, password, command, *args = argv[1:]
    commands = {"systems": systems, "reset": reset, "invalid": invalid, "denied": denied, "anonymous": anonymous}
    print(json.dumps(commands[command](url, user, password, *args)))


if __name__ == "__main__":
    main(sys.argv)
