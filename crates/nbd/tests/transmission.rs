//! Transmission requests over a socketpair against an in-memory disk.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use nbd::proto::*;
use nbd::{ConnectionError, Export, RequestError, TransmissionError, MAX_IN_FLIGHT};
use support::{meta_data, pair, server, MemDisk, PairConnection, RawClient};

const SIZE: usize = 1 << 20;

/// A connection past `NBD_OPT_GO` on export "disk" backed by `disk`.
fn attach(disk: &Arc<MemDisk>, read_only: bool, structured: bool) -> (RawClient, PairConnection) {
    let mut export = Export::new("disk", Arc::clone(disk) as Arc<dyn block::BlockDevice>);
    export.read_only = read_only;
    let conn = pair(&server(vec![export]));
    let mut client = RawClient::connect(conn.client.try_clone().unwrap());
    if structured {
        assert_eq!(client.option(OPT_STRUCTURED_REPLY, &[])[0].kind, REP_ACK);
        let set = client.option(OPT_SET_META_CONTEXT, &meta_data("disk", &[BASE_ALLOCATION]));
        assert_eq!(set[0].kind, REP_META_CONTEXT);
    }
    client.go("disk").expect("GO");
    (client, conn)
}

fn disk() -> Arc<MemDisk> {
    Arc::new(MemDisk::with_pattern(SIZE))
}

#[test]
fn written_data_reads_back_with_simple_replies() {
    let disk = disk();
    let (mut client, _conn) = attach(&disk, false, false);
    let data: Vec<u8> = (0..8192u32).map(|i| (i * 7) as u8).collect();
    client.request(0, CMD_WRITE, 1, 4096, 8192, &data);
    assert_eq!(client.simple_reply(), (0, 1));
    client.request(0, CMD_READ, 2, 4096, 8192, &[]);
    assert_eq!(client.simple_reply(), (0, 2));
    assert_eq!(client.read(8192), data);
    assert_eq!(disk.bytes(4096, 8192), data);
}

#[test]
fn read_past_the_end_is_einval_and_write_past_the_end_is_enospc() {
    let disk = disk();
    let (mut client, _conn) = attach(&disk, false, false);
    client.request(0, CMD_READ, 1, SIZE as u64 - 512, 1024, &[]);
    assert_eq!(client.simple_reply(), (EINVAL, 1));
    client.request(0, CMD_WRITE, 2, SIZE as u64 - 512, 1024, &[0xaa; 1024]);
    assert_eq!(client.simple_reply(), (ENOSPC, 2));
    client.request(0, CMD_READ, 3, u64::MAX - 10, 512, &[]);
    assert_eq!(client.simple_reply(), (EINVAL, 3));
    assert_eq!(disk.bytes(SIZE - 512, 512), MemDisk::with_pattern(SIZE).bytes(SIZE - 512, 512));
}

#[test]
fn writes_trims_and_zeroes_on_a_read_only_export_are_eperm() {
    let disk = disk();
    let (mut client, _conn) = attach(&disk, true, false);
    client.request(0, CMD_WRITE, 1, 0, 512, &[1; 512]);
    client.request(0, CMD_TRIM, 2, 0, 512, &[]);
    client.request(0, CMD_WRITE_ZEROES, 3, 0, 512, &[]);
    let mut replies: Vec<_> = (0..3).map(|_| client.simple_reply()).collect();
    replies.sort_by_key(|&(_, cookie)| cookie);
    assert_eq!(replies, [(EPERM, 1), (EPERM, 2), (EPERM, 3)]);
    assert_eq!(disk.writes.load(Ordering::SeqCst), 0);
}

#[test]
fn fua_write_and_flush_reach_the_device() {
    let disk = disk();
    let (mut client, _conn) = attach(&disk, false, false);
    client.request(CMD_FLAG_FUA, CMD_WRITE, 1, 0, 512, &[3; 512]);
    assert_eq!(client.simple_reply(), (0, 1));
    assert_eq!(disk.flushes.load(Ordering::SeqCst), 1);
    client.request(0, CMD_FLUSH, 2, 0, 0, &[]);
    assert_eq!(client.simple_reply(), (0, 2));
    assert_eq!(disk.flushes.load(Ordering::SeqCst), 2);
}

#[test]
fn write_zeroes_deallocates_unless_no_hole_is_set() {
    let disk = disk();
    let (mut client, _conn) = attach(&disk, false, false);
    client.request(0, CMD_WRITE_ZEROES, 1, 0, 4096, &[]);
    assert_eq!(client.simple_reply(), (0, 1));
    assert_eq!(disk.write_zeroes_calls.load(Ordering::SeqCst), 1);

    client.request(CMD_FLAG_NO_HOLE, CMD_WRITE_ZEROES, 2, 8192, 4096, &[]);
    assert_eq!(client.simple_reply(), (0, 2));
    assert_eq!(disk.write_zeroes_calls.load(Ordering::SeqCst), 1, "NO_HOLE must not use write_zeroes");
    assert_eq!(disk.writes.load(Ordering::SeqCst), 1);
    assert_eq!(disk.bytes(0, 4096), vec![0; 4096]);
    assert_eq!(disk.bytes(8192, 4096), vec![0; 4096]);

    client.request(CMD_FLAG_FAST_ZERO, CMD_WRITE_ZEROES, 3, 0, 4096, &[]);
    assert_eq!(client.simple_reply(), (EINVAL, 3), "fast zero was never advertised");
}

#[test]
fn trim_and_cache_succeed_within_range() {
    let disk = disk();
    let (mut client, _conn) = attach(&disk, false, false);
    client.request(0, CMD_TRIM, 1, 0, 65536, &[]);
    assert_eq!(client.simple_reply(), (0, 1));
    assert_eq!(disk.trims.load(Ordering::SeqCst), 1);
    client.request(0, CMD_CACHE, 2, 0, 65536, &[]);
    assert_eq!(client.simple_reply(), (0, 2));
    client.request(0, CMD_CACHE, 3, SIZE as u64, 1, &[]);
    assert_eq!(client.simple_reply(), (EINVAL, 3));
}

#[test]
fn write_larger_than_the_maximum_is_refused_and_its_payload_skipped() {
    let disk = disk();
    let (mut client, _conn) = attach(&disk, false, false);
    let too_big = MAX_PAYLOAD + 1;
    client.request(0, CMD_WRITE, 1, 0, too_big, &vec![0xee; too_big as usize]);
    assert_eq!(client.simple_reply(), (EINVAL, 1));
    client.request(0, CMD_READ, 2, 0, 16, &[]);
    assert_eq!(client.simple_reply(), (0, 2), "the stream stayed in sync");
    assert_eq!(client.read(16), MemDisk::with_pattern(SIZE).bytes(0, 16));
    assert_eq!(disk.writes.load(Ordering::SeqCst), 0);
}

#[test]
fn read_larger_than_the_maximum_is_einval() {
    let disk = Arc::new(MemDisk::new(64 << 20));
    let (mut client, _conn) = attach(&disk, false, false);
    client.request(0, CMD_READ, 1, 0, MAX_PAYLOAD + 512, &[]);
    assert_eq!(client.simple_reply(), (EINVAL, 1));
}

#[test]
fn write_with_undefined_flags_is_einval_and_its_payload_skipped() {
    let disk = disk();
    let (mut client, _conn) = attach(&disk, false, false);
    client.request(CMD_FLAG_REQ_ONE, CMD_WRITE, 1, 0, 512, &[9; 512]);
    assert_eq!(client.simple_reply(), (EINVAL, 1));
    client.request(0, 77, 2, 0, 0, &[]);
    assert_eq!(client.simple_reply(), (EINVAL, 2), "unknown command");
    client.request(0, CMD_READ, 3, 0, 512, &[]);
    assert_eq!(client.simple_reply(), (0, 3));
    assert_eq!(client.read(512), MemDisk::with_pattern(SIZE).bytes(0, 512));
}

#[test]
fn request_with_bad_magic_closes_the_connection() {
    let disk = disk();
    let (mut client, conn) = attach(&disk, false, false);
    std::io::Write::write_all(&mut client.stream, &[0x42; 28]).unwrap();
    assert!(client.at_eof());
    let err = conn.thread.join().unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            ConnectionError::Transmission(TransmissionError::Request(RequestError::BadMagic {
                found: 0x4242_4242
            }))
        ),
        "{err:?}"
    );
}

#[test]
fn disconnect_answers_nothing_and_ends_cleanly() {
    let disk = disk();
    let (mut client, conn) = attach(&disk, false, false);
    client.request(0, CMD_WRITE, 1, 0, 512, &[5; 512]);
    client.request(0, CMD_DISC, 2, 0, 0, &[]);
    assert_eq!(client.simple_reply(), (0, 1), "requests before NBD_CMD_DISC are answered");
    assert!(client.at_eof());
    conn.thread.join().unwrap().expect("clean end");
}

#[test]
fn structured_read_is_one_offset_data_chunk() {
    let disk = disk();
    let (mut client, _conn) = attach(&disk, false, true);
    client.request(CMD_FLAG_DF, CMD_READ, 7, 1000, 3000, &[]);
    let chunk = client.chunk();
    assert_eq!((chunk.flags, chunk.kind, chunk.cookie), (REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, 7));
    assert_eq!(&chunk.payload[..8], &1000u64.to_be_bytes());
    assert_eq!(&chunk.payload[8..], &disk.bytes(1000, 3000)[..]);

    client.request(0, CMD_READ, 8, 0, 0, &[]);
    let chunk = client.chunk();
    assert_eq!((chunk.flags, chunk.kind, chunk.payload.len()), (REPLY_FLAG_DONE, REPLY_TYPE_NONE, 0));
}

#[test]
fn structured_errors_carry_a_message() {
    let disk = disk();
    let (mut client, _conn) = attach(&disk, false, true);
    client.request(0, CMD_READ, 9, SIZE as u64, 512, &[]);
    let chunk = client.chunk();
    assert_eq!((chunk.flags, chunk.kind, chunk.cookie), (REPLY_FLAG_DONE, REPLY_TYPE_ERROR, 9));
    assert_eq!(u32::from_be_bytes(chunk.payload[..4].try_into().unwrap()), EINVAL);
    let message = String::from_utf8(chunk.payload[6..].to_vec()).unwrap();
    assert_eq!(message, format!("range {SIZE}+512 lies beyond the end of the device ({SIZE} bytes)"));
}

#[test]
fn block_status_reports_the_range_as_allocated_data() {
    let disk = disk();
    let (mut client, _conn) = attach(&disk, false, true);
    client.request(CMD_FLAG_REQ_ONE, CMD_BLOCK_STATUS, 4, 65536, 131072, &[]);
    let chunk = client.chunk();
    assert_eq!((chunk.flags, chunk.kind, chunk.cookie), (REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, 4));
    let context = u32::from_be_bytes(chunk.payload[..4].try_into().unwrap());
    assert_ne!(context, 0);
    assert_eq!(&chunk.payload[4..], [&131072u32.to_be_bytes()[..], &0u32.to_be_bytes()].concat());
}

#[test]
fn block_status_without_a_meta_context_is_einval() {
    let disk = disk();
    let (mut client, _conn) = attach(&disk, false, false);
    client.request(0, CMD_BLOCK_STATUS, 4, 0, 4096, &[]);
    assert_eq!(client.simple_reply(), (EINVAL, 4));
}

#[test]
fn sixteen_reads_run_in_parallel_on_one_connection() {
    let mut disk = MemDisk::with_pattern(SIZE);
    disk.read_rendezvous = MAX_IN_FLIGHT;
    let disk = Arc::new(disk);
    let (mut client, _conn) = attach(&disk, false, false);
    for cookie in 0..MAX_IN_FLIGHT as u64 {
        client.request(0, CMD_READ, cookie, cookie * 4096, 4096, &[]);
    }
    let mut cookies = Vec::new();
    for _ in 0..MAX_IN_FLIGHT {
        let (error, cookie) = client.simple_reply();
        assert_eq!(error, 0);
        assert_eq!(client.read(4096), disk.bytes(cookie as usize * 4096, 4096), "data of cookie {cookie}");
        cookies.push(cookie);
    }
    cookies.sort_unstable();
    assert_eq!(cookies, (0..MAX_IN_FLIGHT as u64).collect::<Vec<_>>());
    assert_eq!(disk.max_parallel_reads.load(Ordering::SeqCst), MAX_IN_FLIGHT);
}
