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
