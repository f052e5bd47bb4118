use super::*;

const SAMPLE: &str = r#"
format = 1
name = "web1"
uuid = "0f8fad5b-d9cb-469f-a165-70867728950e"
cpus = 2
memory = 536870912
undo_disks = true

[cpu]
weight = 300
reserve = 25
max = 150

[[disk]]
path = "/var/lib/vine/disks/web1.vhd"
bus = "ide"

[[disk]]
path = "/iso/debian.iso"
bus = "ide"
cdrom = true

[[nic]]
network = "lan"
mac = "52:54:00:12:34:56"

[kernel]
kernel = "/kit/vmlinuz"
initrd = "/kit/initrd.img"
append = "console=ttyS0"

[[serial]]
to = "console"

[[serial]]
to = "file"
path = "/tmp/com2.log"
"#;

#[test]
fn sample_file_parses_and_round_trips() {
    let d = VmDefinition::parse(SAMPLE).unwrap();
    assert_eq!(d.cpu.weight, 300);
    assert!(d.disks[1].cdrom);
    assert_eq!(d.serial[1], SerialPort::File { path: "/tmp/com2.log".into() });
    assert_eq!(VmDefinition::parse(&d.to_toml().unwrap()).unwrap(), d);
    assert_eq!(d.console, ConsoleDevice::Uart);
    assert!(!d.to_toml().unwrap().contains("console ="));
}

#[test]
fn a_virtio_console_round_trips_and_a_wrong_one_is_named() {
    let mut d = VmDefinition::parse(SAMPLE).unwrap();
    d.console = ConsoleDevice::Virtio;
    let text = d.to_toml().unwrap();
    assert!(text.contains("console = \"virtio\""), "{text}");
    assert_eq!(VmDefinition::parse(&text).unwrap(), d);
    let e = err(&SAMPLE.replace("memory = ", "console = \"hvc\"\nmemory = "));
    assert!(e.contains("console") && e.contains("hvc"), "{e}");
}

fn err(text: &str) -> String {
    VmDefinition::parse(text).unwrap_err().to_string()
}

#[test]
fn unknown_field_is_named_with_its_line() {
    let e = err(&SAMPLE.replace("cpus = 2", "cpus = 2\ncpuz = 4"));
    assert!(e.contains("cpuz") && e.contains("line"), "{e}");
}

#[test]
fn wrong_type_is_named() {
    let e = err(&SAMPLE.replace("memory = 536870912", "memory = \"lots\""));
    assert!(e.contains("memory"), "{e}");
}

#[test]
fn bad_values_name_the_field() {
    let cases = [
        ("cpus = 2", "cpus = 0", "field `cpus`"),
        ("memory = 536870912", "memory = 1000", "field `memory`"),
        ("weight = 300", "weight = 20000", "field `cpu.weight`"),
        ("reserve = 25", "reserve = 300", "field `cpu.reserve`"),
        ("max = 150", "max = 10", "field `cpu.max`"),
        ("mac = \"52:54:00:12:34:56\"", "mac = \"53:54:00:12:34:56\"", "field `nic[0].mac`"),
        ("mac = \"52:54:00:12:34:56\"", "mac = \"nope\"", "field `nic[0].mac`"),
        ("name = \"web1\"", "name = \"-bad name\"", "field `name`"),
        ("uuid = \"0f8fad5b-d9cb-469f-a165-70867728950e\"", "uuid = \"xyz\"", "field `uuid`"),
        ("format = 1", "format = 2", "field `format`"),
    ];
    for (from, to, want) in cases {
        let e = err(&SAMPLE.replace(from, to));
        assert!(e.contains(want), "{to}: {e}");
    }
}

#[test]
fn more_than_four_ide_devices_are_refused() {
    let mut d = VmDefinition::parse(SAMPLE).unwrap();
    for i in 0..3 {
        d.disks.push(Disk {
            path: format!("/d{i}.vhd"),
            bus: Bus::Ide,
            cdrom: false,
            shared: false,
            read_only: false,
        });
    }
    assert!(d.validate().unwrap_err().to_string().contains("at most 4"));
}

#[test]
fn diskless_vm_needs_a_kernel() {
    let mut d = VmDefinition::new("k", 1, 64 << 20);
    assert!(d.validate().unwrap_err().to_string().contains("field `disk`"));
    d.kernel = Some(KernelBoot { kernel: "/k".into(), initrd: None, append: String::new() });
    d.validate().unwrap();
}

proptest::proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        let _ = VmDefinition::parse(&text);
    }
}

#[test]
fn volume_references_name_a_pool_and_a_volume_and_nothing_else() {
    assert_eq!(volume_ref("p1/web1.vhd"), Some(("p1", "web1.vhd")));
    for not in ["/etc/shadow", "p1", "p1/", "/p1/x", "p1/../x", "p1/.x", "../x", "p1/a/b", "p 1/x", ""] {
        assert_eq!(volume_ref(not), None, "{not:?}");
    }
    assert!(!is_volume_name(&"a".repeat(MAX_VOLUME_NAME + 1)));
    let e = err(&SAMPLE.replace("/var/lib/vine/disks/web1.vhd", "disks/../../etc/shadow"));
    assert!(e.contains("field `disk[0].path`") && e.contains("neither a volume"), "{e}");
    let d = VmDefinition::parse(&SAMPLE.replace("/var/lib/vine/disks/web1.vhd", "p1/web1.vhd")).unwrap();
    assert_eq!(d.disks[0].path, "p1/web1.vhd");
    let e = err(&SAMPLE.replace("/tmp/com2.log", "p1/com2.log"));
    assert!(e.contains("field `serial[1].path`: must be an absolute path"), "{e}");
}

#[test]
fn every_size_and_length_has_an_upper_bound() {
    let cases = [
        ("memory = 536870912", "memory = 9223372036854775807".to_string(), "field `memory`"),
        ("memory = 536870912", format!("memory = {}", MAX_MEMORY + (1 << 20)), "field `memory`"),
        (
            "append = \"console=ttyS0\"",
            format!("append = \"{}\"", "x".repeat(MAX_APPEND + 1)),
            "field `kernel.append`",
        ),
        ("/kit/vmlinuz", format!("/{}", "k".repeat(MAX_PATH)), "field `kernel.kernel`"),
        (
            "undo_disks = true",
            "undo_disks = true\nshutdown_timeout = 86401".to_string(),
            "field `shutdown_timeout`",
        ),
        ("undo_disks = true", "undo_disks = true\nboot = [\"disk\", \"disk\"]".to_string(), "field `boot`"),
        ("max = 150", "max = 201".to_string(), "field `cpu.max`"),
    ];
    for (from, to, field) in cases {
        let e = err(&SAMPLE.replace(from, &to));
        assert!(e.contains(field), "{field}: {e}");
    }
    let mut d = VmDefinition::parse(SAMPLE).unwrap();
    d.memory = u64::MAX;
    let e = d.to_toml().unwrap_err();
    assert!(e.to_string().contains("field `memory`"), "{e}");
    d.memory = MAX_MEMORY;
    d.disks = (0..=MAX_DISKS).map(|i| Disk { path: format!("/d{i}"), ..d.disks[0].clone() }).collect();
    d.disks.iter_mut().for_each(|x| x.bus = Bus::Virtio);
    assert!(d.validate().unwrap_err().to_string().contains("33 disks; at most 32"));
    d.disks.truncate(MAX_DISKS);
    VmDefinition::parse(&d.to_toml().unwrap()).unwrap();
}

#[test]
fn cloud_init_data_is_checked_and_round_trips() {
    let mut d = VmDefinition::new("ci", 1, 256 << 20);
    d.disks.push(Disk {
        path: "p1/ci.vhd".into(),
        bus: Bus::Virtio,
        cdrom: false,
        shared: false,
        read_only: false,
    });
    d.cloud_init = Some(CloudInit {
        hostname: Some("web-1.example".into()),
        ssh_keys: vec!["ssh-ed25519 AAAAC3Nza me@host".into()],
        user_data: Some("#cloud-config\nruncmd:\n  - [echo, hi]\n".into()),
        network_config: None,
    });
    let text = d.to_toml().unwrap();
    assert_eq!(VmDefinition::parse(&text).unwrap(), d);
    let field = |c: CloudInit| {
        let mut x = d.clone();
        x.cloud_init = Some(c);
        match x.validate() {
            Err(DefinitionError::Field { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    };
    let ok = d.cloud_init.clone().unwrap();
    assert_eq!(field(CloudInit { hostname: Some("-bad".into()), ..ok.clone() }), "cloud_init.hostname");
    assert_eq!(field(CloudInit { hostname: Some("a..b".into()), ..ok.clone() }), "cloud_init.hostname");
    assert_eq!(
        field(CloudInit { ssh_keys: vec!["ssh-rsa AAAA\nssh-rsa BBBB".into()], ..ok.clone() }),
        "cloud_init.ssh_keys[0]"
    );
    assert_eq!(
        field(CloudInit { ssh_keys: vec!["not a key".into()], ..ok.clone() }),
        "cloud_init.ssh_keys[0]"
    );
    assert_eq!(
        field(CloudInit { user_data: Some("x".repeat(MAX_CLOUD_INIT_DATA + 1)), ..ok.clone() }),
        "cloud_init.user_data"
    );
    // The seed takes an IDE slot: four IDE devices leave none.
    let mut full = d.clone();
    for i in 0..4 {
        full.disks.push(Disk {
            path: format!("p1/d{i}.vhd"),
            bus: Bus::Ide,
            cdrom: false,
            shared: false,
            read_only: false,
        });
    }
    assert!(matches!(full.validate(), Err(DefinitionError::Field { field, .. }) if field == "cloud_init"));
}

#[test]
fn a_container_s_definition_round_trips_and_refuses_a_vm_s_settings() {
    let c = VmDefinition::new_container(
        "ct1",
        1,
        256 << 20,
        Container::new("p1/busybox.tar.gz", 2_000_000_000, "SIGUSR2"),
    );
    let text = c.to_toml().unwrap();
    assert!(text.contains("kind = \"container\""), "{text}");
    let back = VmDefinition::parse(&text).unwrap();
    assert_eq!(back, c);
    assert!(back.is_container());
    let field = |d: &VmDefinition| match d.validate() {
        Err(DefinitionError::Field { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    let mut d = c.clone();
    d.disks.push(Disk {
        path: "p1/a.vhd".into(),
        bus: Bus::Virtio,
        cdrom: false,
        shared: false,
        read_only: false,
    });
    assert_eq!(field(&d), "disk");
    let mut d = c.clone();
    d.container = None;
    assert_eq!(field(&d), "container");
    for (bad, f) in [
        (Container { id_base: 5, ..Container::new("p1/i", 0, "SIGPWR") }, "container.id_base"),
        (Container::new("/etc/passwd", 2_000_000_000, "SIGPWR"), "container.image"),
        (Container::new("p1/i", 2_000_000_000, "KILL; rm"), "container.halt_signal"),
        (
            Container { init: vec!["sbin/init".into()], ..Container::new("p1/i", 2_000_000_000, "SIGPWR") },
            "container.init",
        ),
    ] {
        let mut d = c.clone();
        d.container = Some(bad);
        assert_eq!(field(&d), f);
    }
    // A VM with container settings is refused too.
    let mut vm = VmDefinition::new("v", 1, 64 << 20);
    vm.disks.push(Disk {
        path: "p1/a.vhd".into(),
        bus: Bus::Virtio,
        cdrom: false,
        shared: false,
        read_only: false,
    });
    vm.container = c.container.clone();
    assert_eq!(field(&vm), "container");
}
