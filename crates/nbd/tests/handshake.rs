//! The handshake, driven byte by byte over a socketpair against an in-memory disk.

mod support;

use std::sync::Arc;

use nbd::proto::*;
use nbd::{ConnectionError, Export, HandshakeError};
use support::{go_data, meta_data, pair, server, MemDisk, RawClient};

fn disk(name: &str, size: usize) -> Export {
    let mut export = Export::new(name, Arc::new(MemDisk::new(size)));
    export.description = format!("{name} for tests");
    export
}

#[test]
fn go_on_the_default_export_reports_size_flags_and_block_sizes() {
    let conn = pair(&server(vec![disk("first", 1 << 20), disk("second", 4096)]));
    let mut client = RawClient::connect(conn.client);
    let replies = client.option(OPT_GO, &go_data("", &[INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE]));
    let infos: Vec<&[u8]> = replies.iter().filter(|r| r.kind == REP_INFO).map(|r| &r.payload[..]).collect();
    let expected_flags = TFLAG_HAS_FLAGS
        | TFLAG_SEND_FLUSH
        | TFLAG_SEND_FUA
        | TFLAG_SEND_TRIM
        | TFLAG_SEND_WRITE_ZEROES
        | TFLAG_SEND_CACHE;
    assert_eq!(infos[0], info_export(1 << 20, expected_flags));
    assert!(infos.contains(&&info_name("first")[..]), "{infos:?}");
    assert!(infos.contains(&&info_description("first for tests")[..]), "{infos:?}");
    let sizes = BlockSizes { minimum: 1, preferred: 4096, maximum: MAX_PAYLOAD };
    assert!(infos.contains(&&info_block_size(sizes)[..]), "{infos:?}");
    assert_eq!(replies.last().unwrap().kind, REP_ACK);
}

#[test]
fn list_reports_every_export_with_its_description() {
    let conn = pair(&server(vec![disk("a", 512), disk("b", 512)]));
    let mut client = RawClient::connect(conn.client);
    let replies = client.option(OPT_LIST, &[]);
    let servers: Vec<Vec<u8>> =
        replies.iter().filter(|r| r.kind == REP_SERVER).map(|r| r.payload.clone()).collect();
    assert_eq!(servers, vec![rep_server("a", "a for tests"), rep_server("b", "b for tests")]);
    assert_eq!(replies.last().unwrap().kind, REP_ACK);
}

#[test]
fn unknown_export_gets_err_unknown_and_the_client_may_try_again() {
    let conn = pair(&server(vec![disk("a", 512)]));
    let mut client = RawClient::connect(conn.client);
    let err = client.go("nope").unwrap_err();
    assert_eq!(err.kind, REP_ERR_UNKNOWN);
    assert_eq!(err.text(), "no export named \"nope\"");
    assert_eq!(client.go("a").expect("known export").0, 512);
}

#[test]
fn starttls_and_unknown_options_get_err_unsup() {
    let conn = pair(&server(vec![disk("a", 512)]));
    let mut client = RawClient::connect(conn.client);
    assert_eq!(client.option(OPT_STARTTLS, &[])[0].kind, REP_ERR_UNSUP);
    assert_eq!(client.option(42, b"whatever")[0].kind, REP_ERR_UNSUP);
    client.go("a").expect("still negotiating");
}

#[test]
fn malformed_option_gets_err_invalid_naming_the_field() {
    let conn = pair(&server(vec![disk("a", 512)]));
    let mut client = RawClient::connect(conn.client);
    let mut data = go_data("a", &[]);
    data[3] = 99; // name length beyond the data
    let reply = client.option(OPT_GO, &data).pop().unwrap();
    assert_eq!(reply.kind, REP_ERR_INVALID);
    assert_eq!(reply.text(), "NBD_OPT_GO: export name needs 99 bytes but only 3 remain");
}

#[test]
fn option_longer_than_the_limit_is_skipped_and_refused() {
    let conn = pair(&server(vec![disk("a", 512)]));
    let mut client = RawClient::connect(conn.client);
    let huge = vec![7u8; MAX_OPTION_LEN as usize + 1];
    let reply = client.option(OPT_GO, &huge).pop().unwrap();
    assert_eq!(reply.kind, REP_ERR_INVALID);
    client.go("a").expect("the stream stayed in sync");
}

#[test]
fn abort_is_acknowledged_and_ends_the_session() {
    let conn = pair(&server(vec![disk("a", 512)]));
    let mut client = RawClient::connect(conn.client);
    assert_eq!(client.option(OPT_ABORT, &[])[0].kind, REP_ACK);
    assert!(client.at_eof());
    conn.thread.join().unwrap().expect("abort is a clean end");
}

#[test]
fn unknown_client_flags_drop_the_connection() {
    let conn = pair(&server(vec![disk("a", 512)]));
    let mut client = RawClient::handshake(conn.client, CLIENT_FLAG_FIXED_NEWSTYLE | 1 << 7);
    assert!(client.at_eof());
    let err = conn.thread.join().unwrap().unwrap_err();
    assert!(
        matches!(err, ConnectionError::Handshake(HandshakeError::UnknownClientFlags { unknown: 0x80, .. })),
        "{err:?}"
    );
}

#[test]
fn bad_option_magic_closes_the_connection() {
    let conn = pair(&server(vec![disk("a", 512)]));
    let mut client = RawClient::connect(conn.client);
    std::io::Write::write_all(&mut client.stream, &[0u8; 16]).unwrap();
    assert!(client.at_eof());
    let err = conn.thread.join().unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            ConnectionError::Handshake(HandshakeError::Option(nbd::OptionError::BadMagic { found: 0 }))
        ),
        "{err:?}"
    );
}

#[test]
fn export_name_enters_transmission_with_zero_padding_unless_declined() {
    for (client_flags, reply_len) in
        [(CLIENT_FLAG_FIXED_NEWSTYLE, 134), (CLIENT_FLAG_FIXED_NEWSTYLE | CLIENT_FLAG_NO_ZEROES, 10)]
    {
        let conn = pair(&server(vec![disk("a", 4096)]));
        let mut client = RawClient::handshake(conn.client, client_flags);
        client.send_option(OPT_EXPORT_NAME, b"a");
        let reply = client.read(reply_len);
        assert_eq!(
            &reply[..10],
            &export_name_reply(4096, u16::from_be_bytes([reply[8], reply[9]]), false)[..]
        );
        assert_eq!(u64::from_be_bytes(reply[..8].try_into().unwrap()), 4096);
        client.request(0, CMD_READ, 1, 0, 16, &[]);
        assert_eq!(client.simple_reply(), (0, 1));
    }
}

#[test]
fn export_name_for_unknown_export_ends_the_session() {
    let conn = pair(&server(vec![disk("a", 512)]));
    let mut client = RawClient::connect(conn.client);
    client.send_option(OPT_EXPORT_NAME, b"missing");
    assert!(client.at_eof());
    let err = conn.thread.join().unwrap().unwrap_err();
    assert!(matches!(err, ConnectionError::Handshake(HandshakeError::UnknownExport { .. })), "{err:?}");
}

#[test]
fn second_writer_is_refused_with_policy_until_the_first_leaves() {
    let server = server(vec![disk("vm1", 4096)]);
    let first = pair(&server);
    let mut writer = RawClient::connect(first.client);
    writer.go("vm1").expect("first writer");

    let second = pair(&server);
    let mut late = RawClient::connect(second.client);
    let expected = "export 'vm1' already has a writer; serve it with --shared to allow several";
    let refused = late.option(OPT_INFO, &go_data("vm1", &[])).pop().unwrap();
    assert_eq!((refused.kind, refused.text()), (REP_ERR_POLICY, expected.to_owned()));
    let refused = late.go("vm1").unwrap_err();
    assert_eq!((refused.kind, refused.text()), (REP_ERR_POLICY, expected.to_owned()));

    writer.request(0, CMD_DISC, 0, 0, 0, &[]);
    first.thread.join().unwrap().expect("clean disconnect");
    late.go("vm1").expect("the export is free again");
}

#[test]
fn shared_and_read_only_exports_take_several_connections_and_allow_multi_conn() {
    let mut shared = disk("shared", 4096);
    shared.shared = true;
    let mut read_only = disk("ro", 4096);
    read_only.read_only = true;
    let server = server(vec![shared, read_only]);
    for name in ["shared", "ro"] {
        let mut first = RawClient::connect(pair(&server).client);
        let mut second = RawClient::connect(pair(&server).client);
        let (_, flags) = first.go(name).expect("first");
        second.go(name).expect("second");
        assert_ne!(flags & TFLAG_CAN_MULTI_CONN, 0, "{name}");
        assert_eq!(flags & TFLAG_READ_ONLY != 0, name == "ro");
    }
}

#[test]
fn meta_contexts_need_structured_replies_and_offer_base_allocation() {
    let conn = pair(&server(vec![disk("a", 4096)]));
    let mut client = RawClient::connect(conn.client);
    let refused = client.option(OPT_SET_META_CONTEXT, &meta_data("a", &[BASE_ALLOCATION])).pop().unwrap();
    assert_eq!(refused.kind, REP_ERR_INVALID);

    assert_eq!(client.option(OPT_STRUCTURED_REPLY, &[])[0].kind, REP_ACK);
    for queries in [&[][..], &["base:"], &["base:allocation", "qemu:dirty-bitmap:x"]] {
        let listed = client.option(OPT_LIST_META_CONTEXT, &meta_data("a", queries));
        assert_eq!(listed[0].kind, REP_META_CONTEXT, "{queries:?}");
        assert_eq!(&listed[0].payload[4..], BASE_ALLOCATION.as_bytes());
        assert_eq!(listed.len(), 2);
    }
    let none = client.option(OPT_LIST_META_CONTEXT, &meta_data("a", &["qemu:allocation-depth"]));
    assert_eq!(none.iter().map(|r| r.kind).collect::<Vec<_>>(), [REP_ACK]);

    let set = client.option(OPT_SET_META_CONTEXT, &meta_data("a", &["base:", "base:allocation"]));
    assert_eq!(set.iter().map(|r| r.kind).collect::<Vec<_>>(), [REP_META_CONTEXT, REP_ACK]);
    assert_eq!(&set[0].payload[4..], BASE_ALLOCATION.as_bytes());
}
