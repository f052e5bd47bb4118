use super::*;

fn pools() -> (tempfile::TempDir, Pools) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(store::SqliteStore::open(&dir.path().join("db")).unwrap());
    let p = Pools::open(store, &dir.path().join("data")).unwrap();
    (dir, p)
}

#[test]
fn pools_are_named_directories_that_never_overlap() {
    let (dir, p) = pools();
    let d1 = dir.path().join("p1");
    let info = p.create("p1", d1.to_str().unwrap()).unwrap();
    assert_eq!((info.name.as_str(), info.volumes), ("p1", 0));
    assert!(d1.is_dir() && info.total_bytes > 0);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&d1).unwrap().permissions().mode() & 0o777,
        0o700,
        "a new pool is root's alone"
    );
    let inner = d1.join("sub");
    let e = p.create("p2", inner.to_str().unwrap()).unwrap_err();
    assert!(matches!(&e, Failure::Refused(m) if m.contains("pool 'p1' is at")), "{e}");
    let e = p.create("p3", dir.path().to_str().unwrap()).unwrap_err();
    assert!(matches!(e, Failure::Refused(_)), "{e}");
    for bad in ["", "../x", "a/b", ".hidden"] {
        let e = p.create(bad, dir.path().join("q").to_str().unwrap()).unwrap_err();
        assert!(matches!(&e, Failure::Invalid(m) if m.starts_with("name:")), "{bad:?}: {e}");
    }
    assert!(matches!(p.create("q", "relative/dir").unwrap_err(), Failure::Invalid(_)));
    for overlapping in [dir.path().join("data"), dir.path().join("data/vms")] {
        let e = p.create("q", overlapping.to_str().unwrap()).unwrap_err();
        assert!(matches!(&e, Failure::Refused(m) if m.contains("overlaps vine's data directory")), "{e}");
    }
    assert!(matches!(
        p.create("p1", dir.path().join("other").to_str().unwrap()).unwrap_err(),
        Failure::Refused(_)
    ));
    p.delete("p1", &["web1".into()]).unwrap_err();
    p.delete("p1", &[]).unwrap();
    assert!(matches!(p.dir("p1").unwrap_err(), Failure::NotFound(_)));
    assert!(d1.is_dir(), "deleting a pool keeps its files");
}

#[test]
fn references_resolve_only_to_regular_files_inside_their_pool() {
    let (dir, p) = pools();
    let d1 = dir.path().join("p1");
    p.create("p1", d1.to_str().unwrap()).unwrap();
    std::fs::write(d1.join("kernel"), b"k").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", d1.join("passwd")).unwrap();
    assert_eq!(p.resolve("p1/kernel").unwrap(), d1.join("kernel"));
    assert!(matches!(p.resolve("p1/passwd").unwrap_err(), Failure::NotFound(_)), "a symlink is no volume");
    assert!(matches!(p.resolve("p1/../etc").unwrap_err(), Failure::Invalid(_)));
    assert!(
        matches!(p.resolve("p9/kernel").unwrap_err(), Failure::NotFound(m) if m.contains("no storage pool named 'p9'"))
    );
    assert_eq!(p.volume_at(&d1.join("kernel")).as_deref(), Some("p1/kernel"));
    assert_eq!(p.volume_at(Path::new("/etc/passwd")), None);
    let names: Vec<String> = p.volumes("p1").unwrap().into_iter().map(|v| v.volume).collect();
    assert_eq!(names, ["p1/kernel"]);
}

#[test]
fn disk_volumes_their_chains_and_what_may_be_deleted() {
    let (dir, p) = pools();
    let d1 = dir.path().join("p1");
    p.create("p1", d1.to_str().unwrap()).unwrap();
    let base = p.create_volume("p1/base.vhd", Some(64 << 20), None).unwrap();
    assert_eq!(
        (base.format, base.virtual_bytes.map(|b| b >= 64 << 20)),
        (VolumeFormat::VhdDynamic, Some(true))
    );
    let child = p.create_volume("p1/child.vhd", None, Some("p1/base.vhd")).unwrap();
    assert_eq!((child.format, child.parent.as_deref()), (VolumeFormat::VhdDifferencing, Some("p1/base.vhd")));
    assert_eq!(p.chain(&d1.join("child.vhd")), vec![Link::Volume("p1/base.vhd".into())]);
    assert!(p.chain(&d1.join("base.vhd")).is_empty());
    // A child over a file outside every pool has a host link.
    let outside = dir.path().join("outside.vhd");
    vhd::create::create(&outside, vhd::create::NewImage { size: 1 << 20, ..Default::default() }).unwrap();
    vhd::create::create_differencing(&d1.join("sneaky.vhd"), &outside).unwrap();
    assert_eq!(p.chain(&d1.join("sneaky.vhd")), vec![Link::Host(outside.canonicalize().unwrap())]);

    assert!(matches!(p.create_volume("p1/base.vhd", Some(1 << 20), None).unwrap_err(), Failure::Refused(_)));
    assert!(matches!(p.create_volume("p1/x.vhd", Some(0), None).unwrap_err(), Failure::Invalid(_)));
    assert!(matches!(
        p.create_volume("p1/x.vhd", Some(MAX_VOLUME_SIZE + 1), None).unwrap_err(),
        Failure::Invalid(_)
    ));
    assert!(matches!(p.create_volume("p1/x.img", Some(1 << 20), None).unwrap_err(), Failure::Invalid(_)));
    let e = p.delete_volume("p1/base.vhd", &[]).unwrap_err();
    assert!(matches!(&e, Failure::Refused(m) if m.contains("is the parent of p1/child.vhd")), "{e}");
    let e = p.delete_volume("p1/child.vhd", &["web1 (rw)".into()]).unwrap_err();
    assert!(matches!(&e, Failure::Refused(m) if m.contains("attached to VM(s) web1 (rw)")), "{e}");
    p.delete_volume("p1/child.vhd", &[]).unwrap();
    p.delete_volume("p1/base.vhd", &[]).unwrap();
}

#[test]
fn an_upload_appears_whole_or_not_at_all() {
    let (dir, p) = pools();
    let d1 = dir.path().join("p1");
    p.create("p1", d1.to_str().unwrap()).unwrap();
    let mut u = p.upload("p1/initrd").unwrap();
    u.write(b"half").unwrap();
    drop(u);
    assert_eq!(std::fs::read_dir(&d1).unwrap().count(), 0, "an unfinished upload leaves nothing");
    let mut u = p.upload("p1/initrd").unwrap();
    u.write(b"whole").unwrap();
    assert!(p.resolve("p1/initrd").is_err(), "not visible before it is finished");
    assert_eq!(u.finish().unwrap(), "p1/initrd");
    assert_eq!(std::fs::read(d1.join("initrd")).unwrap(), b"whole");
    assert!(matches!(p.upload("p1/initrd").err().unwrap(), Failure::Refused(_)));
    assert_eq!(p.volume("p1/initrd").unwrap().format, VolumeFormat::Raw);
}

#[test]
fn low_space_is_a_share_or_a_gibibyte() {
    assert!(is_low(100 << 30, 9 << 30));
    assert!(!is_low(100 << 30, 11 << 30));
    assert!(is_low(4 << 30, (1 << 30) - 1), "under 1 GiB on a small file system");
    assert!(!is_low(1 << 30, 600 << 20), "a tiny file system is low only below half");
}
