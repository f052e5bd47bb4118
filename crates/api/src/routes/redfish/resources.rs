//! The Redfish resources this service serves, as typed structures serialised with Redfish's
//! property names (DMTF DSP8010 schemas; each `@odata.type` names the version followed), and the
//! URIs they live at.

use serde::Serialize;

use super::power::{host_status, power_state, vm_status, PowerState, ResetType, Status};

/// The Redfish specification (DSP0266) version the service root reports.
pub const REDFISH_VERSION: &str = "1.15.0";
/// The service root.
pub const ROOT: &str = "/redfish/v1";
/// The VMs.
pub const SYSTEMS: &str = "/redfish/v1/Systems";
/// The hosts, as the managers of their VMs.
pub const MANAGERS: &str = "/redfish/v1/Managers";
/// The hosts, as the enclosures their VMs run in.
pub const CHASSIS: &str = "/redfish/v1/Chassis";
/// The session service.
pub const SESSION_SERVICE: &str = "/redfish/v1/SessionService";
/// The sessions (vine login sessions).
pub const SESSIONS: &str = "/redfish/v1/SessionService/Sessions";
/// The name of the one action a system has.
pub const RESET_ACTION: &str = "ComputerSystem.Reset";
/// The id of a system's one processor and one memory resource.
pub const CPU_ID: &str = "CPU0";
/// See [`CPU_ID`].
pub const MEMORY_ID: &str = "DIMM0";

/// A reference to another resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// Its URI.
    #[serde(rename = "@odata.id")]
    pub id: String,
}

impl Link {
    /// A link to `uri`.
    pub fn to(uri: impl Into<String>) -> Link {
        Link { id: uri.into() }
    }
}

/// A collection of resources.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Collection {
    /// Its URI.
    #[serde(rename = "@odata.id")]
    pub odata_id: String,
    /// Its type (`#ComputerSystemCollection.ComputerSystemCollection`, …).
    #[serde(rename = "@odata.type")]
    pub odata_type: &'static str,
    /// Its name.
    pub name: &'static str,
    /// Its members.
    pub members: Vec<Link>,
    /// How many.
    #[serde(rename = "Members@odata.count")]
    pub count: usize,
}

impl Collection {
    /// A collection at `uri` of `members`.
    pub fn new(
        uri: impl Into<String>,
        odata_type: &'static str,
        name: &'static str,
        members: Vec<Link>,
    ) -> Self {
        Collection { odata_id: uri.into(), odata_type, name, count: members.len(), members }
    }
}

/// `/redfish`: the versions served.
#[derive(Debug, Serialize)]
pub struct Versions {
    /// Version 1's root.
    pub v1: &'static str,
}

/// `Links` of the service root.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RootLinks {
    /// Where sessions are made.
    pub sessions: Link,
}

/// The service root (ServiceRoot.v1_5_0).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceRoot {
    #[serde(rename = "@odata.id")]
    pub(crate) odata_id: &'static str,
    #[serde(rename = "@odata.type")]
    pub(crate) odata_type: &'static str,
    pub(crate) id: &'static str,
    pub(crate) name: &'static str,
    pub(crate) redfish_version: &'static str,
    pub(crate) product: &'static str,
    pub(crate) vendor: &'static str,
    pub(crate) systems: Link,
    pub(crate) managers: Link,
    pub(crate) chassis: Link,
    pub(crate) session_service: Link,
    pub(crate) links: RootLinks,
}

impl ServiceRoot {
    /// The one service root.
    pub fn new() -> ServiceRoot {
        ServiceRoot {
            odata_id: ROOT,
            odata_type: "#ServiceRoot.v1_5_0.ServiceRoot",
            id: "RootService",
            name: "vine Redfish service",
            redfish_version: REDFISH_VERSION,
            product: "vine",
            vendor: "vine",
            systems: Link::to(SYSTEMS),
            managers: Link::to(MANAGERS),
            chassis: Link::to(CHASSIS),
            session_service: Link::to(SESSION_SERVICE),
            links: RootLinks { sessions: Link::to(SESSIONS) },
        }
    }
}

/// One OData service document entry.
#[derive(Debug, Serialize)]
pub struct ODataEntry {
    /// Its name.
    pub name: &'static str,
    /// `Singleton` or `EntitySet`.
    pub kind: &'static str,
    /// Its URI.
    pub url: &'static str,
}

/// `/redfish/v1/odata`: the OData service document.
#[derive(Debug, Serialize)]
pub struct OData {
    #[serde(rename = "@odata.context")]
    pub(crate) context: &'static str,
    pub(crate) value: Vec<ODataEntry>,
}

impl OData {
    /// The service document of this service's top-level resources.
    pub fn new() -> OData {
        let e = |name, kind, url| ODataEntry { name, kind, url };
        OData {
            context: "/redfish/v1/$metadata",
            value: vec![
                e("Service", "Singleton", ROOT),
                e("Systems", "Singleton", SYSTEMS),
                e("Managers", "Singleton", MANAGERS),
                e("Chassis", "Singleton", CHASSIS),
                e("SessionService", "Singleton", SESSION_SERVICE),
            ],
        }
    }
}

/// `/redfish/v1/$metadata`: the CSDL document naming the schemas the resources use.
pub const METADATA: &str = include_str!("metadata.xml");

/// `ProcessorSummary`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessorSummary {
    /// The VM's vCPUs.
    pub count: u32,
    /// The same.
    pub logical_processor_count: u32,
    /// Its status.
    pub status: Status,
}

/// `MemorySummary`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MemorySummary {
    /// The VM's memory in GiB (a fraction for less than a GiB).
    #[serde(rename = "TotalSystemMemoryGiB")]
    pub total_gib: f64,
    /// Its status.
    pub status: Status,
}

/// `#ComputerSystem.Reset`.
#[derive(Debug, Serialize)]
pub struct ResetAction {
    /// Where to POST it.
    pub target: String,
    /// The reset types accepted.
    #[serde(rename = "ResetType@Redfish.AllowableValues")]
    pub allowable: Vec<ResetType>,
}

/// A system's actions.
#[derive(Debug, Serialize)]
pub struct SystemActions {
    /// The reset.
    #[serde(rename = "#ComputerSystem.Reset")]
    pub reset: ResetAction,
}

/// A system's links: the host it runs on.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SystemLinks {
    /// The host as a manager.
    pub managed_by: Vec<Link>,
    /// The host as a chassis.
    pub chassis: Vec<Link>,
}

/// A VM (ComputerSystem.v1_17_0).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ComputerSystem {
    #[serde(rename = "@odata.id")]
    pub(crate) odata_id: String,
    #[serde(rename = "@odata.type")]
    pub(crate) odata_type: &'static str,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) description: String,
    #[serde(rename = "UUID")]
    pub(crate) uuid: String,
    pub(crate) system_type: &'static str,
    pub(crate) manufacturer: &'static str,
    pub(crate) model: &'static str,
    pub(crate) power_state: Option<PowerState>,
    pub(crate) status: Status,
    pub(crate) processor_summary: ProcessorSummary,
    pub(crate) memory_summary: MemorySummary,
    pub(crate) processors: Link,
    pub(crate) memory: Link,
    pub(crate) links: SystemLinks,
    pub(crate) actions: SystemActions,
}

/// Bytes in a GiB and a MiB.
const GIB: f64 = (1u64 << 30) as f64;
const MIB: u64 = 1 << 20;

/// The URI of VM `name`.
pub fn system_uri(name: &str) -> String {
    format!("{SYSTEMS}/{name}")
}

impl ComputerSystem {
    /// VM `vm`, on host `host`.
    pub fn of(vm: &daemon::protocol::VmInfo, host: &str) -> ComputerSystem {
        let uri = system_uri(&vm.name);
        let status = vm_status(vm.state, vm.last_error.is_some());
        ComputerSystem {
            odata_type: "#ComputerSystem.v1_17_0.ComputerSystem",
            id: vm.name.clone(),
            name: vm.name.clone(),
            description: format!("vine virtual machine '{}' on host '{host}'", vm.name),
            uuid: vm.uuid.clone(),
            system_type: "Virtual",
            manufacturer: "vine",
            model: "QEMU virtual machine",
            power_state: power_state(vm.state),
            status,
            processor_summary: ProcessorSummary { count: vm.cpus, logical_processor_count: vm.cpus, status },
            memory_summary: MemorySummary { total_gib: vm.memory as f64 / GIB, status },
            processors: Link::to(format!("{uri}/Processors")),
            memory: Link::to(format!("{uri}/Memory")),
            links: SystemLinks {
                managed_by: vec![Link::to(format!("{MANAGERS}/{host}"))],
                chassis: vec![Link::to(format!("{CHASSIS}/{host}"))],
            },
            actions: SystemActions {
                reset: ResetAction {
                    target: format!("{uri}/Actions/{RESET_ACTION}"),
                    allowable: ResetType::ALL.to_vec(),
                },
            },
            odata_id: uri,
        }
    }
}

/// A VM's vCPUs, as one processor (Processor.v1_10_0).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Processor {
    #[serde(rename = "@odata.id")]
    pub(crate) odata_id: String,
    #[serde(rename = "@odata.type")]
    pub(crate) odata_type: &'static str,
    pub(crate) id: &'static str,
    pub(crate) name: &'static str,
    pub(crate) socket: &'static str,
    pub(crate) processor_type: &'static str,
    pub(crate) processor_architecture: &'static str,
    pub(crate) instruction_set: &'static str,
    pub(crate) total_cores: u32,
    pub(crate) total_threads: u32,
    pub(crate) status: Status,
}

impl Processor {
    /// The vCPUs of `vm`.
    pub fn of(vm: &daemon::protocol::VmInfo) -> Processor {
        Processor {
            odata_id: format!("{}/Processors/{CPU_ID}", system_uri(&vm.name)),
            odata_type: "#Processor.v1_10_0.Processor",
            id: CPU_ID,
            name: "Virtual processor",
            socket: "CPU 0",
            processor_type: "CPU",
            processor_architecture: "x86",
            instruction_set: "x86-64",
            total_cores: vm.cpus,
            total_threads: vm.cpus,
            status: vm_status(vm.state, false),
        }
    }
}

/// A VM's memory, as one device (Memory.v1_10_0).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Memory {
    #[serde(rename = "@odata.id")]
    pub(crate) odata_id: String,
    #[serde(rename = "@odata.type")]
    pub(crate) odata_type: &'static str,
    pub(crate) id: &'static str,
    pub(crate) name: &'static str,
    pub(crate) memory_type: &'static str,
    #[serde(rename = "CapacityMiB")]
    pub(crate) capacity_mib: u64,
    pub(crate) status: Status,
}

impl Memory {
    /// The memory of `vm`.
    pub fn of(vm: &daemon::protocol::VmInfo) -> Memory {
        Memory {
            odata_id: format!("{}/Memory/{MEMORY_ID}", system_uri(&vm.name)),
            odata_type: "#Memory.v1_10_0.Memory",
            id: MEMORY_ID,
            name: "Virtual memory",
            memory_type: "DRAM",
            capacity_mib: vm.memory / MIB,
            status: vm_status(vm.state, false),
        }
    }
}

/// A manager's links.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManagerLinks {
    /// The VMs on the host that the caller may see.
    pub manager_for_servers: Vec<Link>,
    /// The host as a chassis.
    pub manager_for_chassis: Vec<Link>,
    /// The same.
    pub manager_in_chassis: Link,
}

/// A host, as the manager of its VMs (Manager.v1_10_0; `ManagerType` `Service`: software).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Manager {
    #[serde(rename = "@odata.id")]
    pub(crate) odata_id: String,
    #[serde(rename = "@odata.type")]
    pub(crate) odata_type: &'static str,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) manager_type: &'static str,
    pub(crate) firmware_version: String,
    pub(crate) status: Status,
    pub(crate) links: ManagerLinks,
}

impl Manager {
    /// Host `h`, which runs `vms` (those the caller may see).
    pub fn of(h: &cluster::HostStatus, vms: Vec<Link>) -> Manager {
        let name = h.record.name.clone();
        Manager {
            odata_id: format!("{MANAGERS}/{name}"),
            odata_type: "#Manager.v1_10_0.Manager",
            description: format!("vine on host '{name}' ({}), {}", h.record.url, h.state.as_str()),
            manager_type: "Service",
            firmware_version: h.record.version.clone(),
            status: host_status(h.state),
            links: ManagerLinks {
                manager_for_servers: vms,
                manager_for_chassis: vec![Link::to(format!("{CHASSIS}/{name}"))],
                manager_in_chassis: Link::to(format!("{CHASSIS}/{name}")),
            },
            id: name.clone(),
            name,
        }
    }
}

/// A chassis's links.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChassisLinks {
    /// The VMs in it that the caller may see.
    pub computer_systems: Vec<Link>,
    /// The host as a manager.
    pub managed_by: Vec<Link>,
}

/// A host, as the machine its VMs run in (Chassis.v1_14_0).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Chassis {
    #[serde(rename = "@odata.id")]
    pub(crate) odata_id: String,
    #[serde(rename = "@odata.type")]
    pub(crate) odata_type: &'static str,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) chassis_type: &'static str,
    pub(crate) status: Status,
    pub(crate) links: ChassisLinks,
}

impl Chassis {
    /// Host `h`, which runs `vms` (those the caller may see).
    pub fn of(h: &cluster::HostStatus, vms: Vec<Link>) -> Chassis {
        let name = h.record.name.clone();
        Chassis {
            odata_id: format!("{CHASSIS}/{name}"),
            odata_type: "#Chassis.v1_14_0.Chassis",
            description: format!(
                "host '{name}': {} CPUs, {} MiB of memory, {}",
                h.record.cpus,
                h.record.memory_bytes / MIB,
                h.record.accelerator
            ),
            chassis_type: "Other",
            status: host_status(h.state),
            links: ChassisLinks {
                computer_systems: vms,
                managed_by: vec![Link::to(format!("{MANAGERS}/{name}"))],
            },
            id: name.clone(),
            name,
        }
    }
}

/// The session service (SessionService.v1_1_8).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SessionService {
    #[serde(rename = "@odata.id")]
    pub(crate) odata_id: &'static str,
    #[serde(rename = "@odata.type")]
    pub(crate) odata_type: &'static str,
    pub(crate) id: &'static str,
    pub(crate) name: &'static str,
    pub(crate) service_enabled: bool,
    /// Seconds a session lasts.
    pub(crate) session_timeout: i64,
    pub(crate) sessions: Link,
}

impl SessionService {
    /// vine's sessions, which last `timeout_s`.
    pub fn new(timeout_s: i64) -> SessionService {
        SessionService {
            odata_id: SESSION_SERVICE,
            odata_type: "#SessionService.v1_1_8.SessionService",
            id: "SessionService",
            name: "Session Service",
            service_enabled: true,
            session_timeout: timeout_s,
            sessions: Link::to(SESSIONS),
        }
    }
}

/// A session: a vine login session (Session.v1_3_0). Its id is the token's id.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Session {
    #[serde(rename = "@odata.id")]
    pub(crate) odata_id: String,
    #[serde(rename = "@odata.type")]
    pub(crate) odata_type: &'static str,
    pub(crate) id: String,
    pub(crate) name: &'static str,
    pub(crate) user_name: String,
}

impl Session {
    /// Session `id` of `user`.
    pub fn new(id: &str, user: &str) -> Session {
        Session {
            odata_id: format!("{SESSIONS}/{id}"),
            odata_type: "#Session.v1_3_0.Session",
            id: id.to_string(),
            name: "User Session",
            user_name: user.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_system_carries_the_fields_clients_read() {
        let vm: daemon::protocol::VmInfo = serde_json::from_value(serde_json::json!({
            "name": "web1", "uuid": "5b0e6c3e-0000-4000-8000-000000000001", "state": "paused", "pid": 42,
            "cpus": 2, "memory": 1610612736u64,
            "cpu": {"weight": 100, "reserve": 0, "max": null},
            "disks": [], "undo_disks": false, "definition_file": "/d", "console_log": "/c",
            "saved_state": false, "cpu_time_ns": null, "last_error": null
        }))
        .expect("a VmInfo");
        let v = serde_json::to_value(ComputerSystem::of(&vm, "h2")).unwrap();
        assert_eq!(v["@odata.id"], "/redfish/v1/Systems/web1");
        assert_eq!(v["PowerState"], "Paused");
        assert_eq!(v["UUID"], "5b0e6c3e-0000-4000-8000-000000000001");
        assert_eq!(v["ProcessorSummary"]["Count"], 2);
        assert_eq!(v["MemorySummary"]["TotalSystemMemoryGiB"], 1.5);
        assert_eq!(v["Links"]["ManagedBy"][0]["@odata.id"], "/redfish/v1/Managers/h2");
        let reset = &v["Actions"]["#ComputerSystem.Reset"];
        assert_eq!(reset["target"], "/redfish/v1/Systems/web1/Actions/ComputerSystem.Reset");
        assert_eq!(
            reset["ResetType@Redfish.AllowableValues"].as_array().unwrap().len(),
            ResetType::ALL.len()
        );
        assert_eq!(serde_json::to_value(Memory::of(&vm)).unwrap()["CapacityMiB"], 1536);
        assert_eq!(serde_json::to_value(Processor::of(&vm)).unwrap()["TotalThreads"], 2);
    }
}
