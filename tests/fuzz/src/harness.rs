//! The fuzz harnesses: one function per decoder that reads bytes from a
//! network port or from disk. Each takes arbitrary bytes and must return
//! without panicking whatever they are: an `Err` is the expected answer to
//! garbage. Each returns whether its decoder accepted the input (the replay
//! test checks that every seed is accepted, so the seeds keep up with the
//! formats). Where the format allows, a harness also checks that what decoded
//! encodes back to something that decodes to the same value (and that the
//! second encoding equals the first: encoding is canonical).
//!
//! This file is compiled twice: by the cargo-fuzz targets in
//! `tests/fuzz/fuzz_targets/` (nightly, libFuzzer) and by the replay test
//! `tests/tests/fuzz_replay.rs` (stable, plain `cargo test`), which runs
//! every committed corpus file through the same function. [`TARGETS`] names
//! the corpus directory of each harness. It uses nothing but the Strata
//! crates and their dependencies, so it builds without libFuzzer.
//!
//! Checksums defeat a mutation fuzzer: a flipped bit almost always fails the
//! CRC and the scan stops there. The disk harnesses therefore take a flags
//! byte first; with bit 0 set they recompute every frame's CRC-32C before
//! writing the file, so the fuzzer reaches the field checks behind the CRC.

use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_segment_log::fs::{Fs, OpenMode};

/// A harness: whether its decoder accepted the input.
pub type Harness = fn(&[u8]) -> bool;

/// `(corpus directory under tests/fuzz/corpus/, harness)` for every target.
pub const TARGETS: &[(&str, Harness)] = &[
    ("wire_request", wire_request),
    ("record_batch", record_batch),
    ("peer_message", peer_message),
    ("raft_command", raft_command),
    ("manifest", manifest),
    ("snapshot", snapshot),
    ("edge_buffer_frame", edge_buffer_frame),
    ("core_log_segment", core_log_segment),
];

/// Reads fixed-size fields off the front of the fuzzer's input; a field
/// past the end reads as zero, so every input is usable.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.u8();
        }
        u64::from_le_bytes(b)
    }

    /// The first `n` bytes (fewer if the input is shorter).
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    fn rest(self) -> &'a [u8] {
        self.0
    }
}

// ---------------------------------------------------------------------------
// The client API: frames, envelopes, record batches.
// ---------------------------------------------------------------------------

/// The client API as the edge, the core and the SDK read it: the frame
/// reader (`strata_runtime::frame::read_frame`: a 4-byte length checked
/// against the limit, then that many bytes), the `Request` and `Response`
/// envelopes, the record batches nested in them, the core's access check
/// (which operation on which stream a request needs), and the SDK's
/// conversions of every reply it reads into its own types.
pub fn wire_request(data: &[u8]) -> bool {
    use strata_schema::{frame, wire};
    let mut accepted = false;
    // The frame reader: prefix, bound, body. The body is what the server
    // hands to the envelope decoder.
    if let Some((prefix, body)) = data.split_first_chunk::<{ frame::FRAME_HEADER_BYTES }>() {
        if let Ok(len) = frame::parse_header(*prefix, frame::FRAME_BYTES_MAX) {
            assert!(len > 0 && len <= frame::FRAME_BYTES_MAX);
            if let Some(body) = body.get(..len) {
                accepted |= envelope(body);
            }
        }
    }
    // The whole input as an envelope (what the fuzzer mutates best).
    accepted |= envelope(data);
    if let Ok(resp) = wire::decode_response(data) {
        // An error reply re-encodes to itself.
        if let Some(e) = wire::error_of(&resp) {
            let again = e.encode();
            let back = wire::decode_response(&again).expect("an encoded error decodes");
            assert_eq!(wire::error_of(&back).as_ref(), Some(&e));
            let _ = (e.to_string(), e.is_retryable());
        }
    }
    accepted
}

/// Decodes `body` as a request and as a response; whether either decoded.
fn envelope(body: &[u8]) -> bool {
    use strata_schema::{batch, wire};
    let limits = batch::Limits::default();
    let mut accepted = false;
    if let Ok(req) = wire::decode_request(body) {
        accepted = true;
        let _ = strata_core::api::access::needs(&req);
        if let Some(p) = req.body_as_produce_request() {
            let _ = strata_schema::validate_name("stream", p.stream());
            if let Ok(summary) = batch::verify(p.batch().bytes(), &limits) {
                check_verified_batch(p.batch().bytes(), &summary);
            }
        }
        if let Some(f) = req.body_as_forward_request() {
            for p in f.pieces() {
                let deltas: Option<Vec<u32>> = p.seq_deltas().map(|d| d.iter().collect());
                let _ = deltas;
                if let Ok(summary) = batch::verify(p.batch().bytes(), &limits) {
                    check_verified_batch(p.batch().bytes(), &summary);
                }
            }
        }
    }
    if let Ok(resp) = wire::decode_response(body) {
        accepted = true;
        sdk_reads(&resp);
    }
    accepted
}

/// What the SDK does with each kind of reply.
fn sdk_reads(resp: &strata_schema::fb::Response<'_>) {
    use strata_protocol::{acl, NodeView, StreamInfo};
    use strata_schema::{batch, wire};
    let _ = wire::error_of(resp).map(|e| e.to_string());
    if let Some(f) = resp.body_as_fetch_response() {
        for b in f.batches() {
            if let Ok(rb) = batch::open(b.batch().bytes()) {
                walk_records(&rb);
            }
        }
    }
    let stream_info = |s: &strata_schema::fb::StreamDescription<'_>| {
        let info = StreamInfo::from_fb(s);
        let _ = (info.records(), info.ranges(), info.open_shards().count());
        let _ = info.addr_of(0);
        for g in &info.groups {
            let _ = g.lag(&info);
        }
    };
    if let Some(s) = resp.body_as_stream_description() {
        stream_info(&s);
    }
    if let Some(list) = resp.body_as_stream_list() {
        for s in list.streams() {
            stream_info(&s);
        }
    }
    if let Some(s) = resp.body_as_cluster_status() {
        let _ = NodeView::from_fb(&s);
    }
    if let Some(l) = resp.body_as_acl_list() {
        for r in l.rules().into_iter().flatten() {
            let rule = acl::rule_from_fb(&r);
            let _ = (rule.validate(), rule.prefix_for("device-1"));
        }
    }
}

/// A producer's `RecordBatch`: the verifier every batch from the network
/// passes, then the record accessors the edge and core use on a batch it
/// accepted, then a copy record by record (as the edge's batcher and the
/// core's fetch re-encode batches) that must verify and read the same.
pub fn record_batch(data: &[u8]) -> bool {
    use strata_schema::batch;
    let limits = batch::Limits::default();
    let Ok(summary) = batch::verify(data, &limits) else {
        return false;
    };
    check_verified_batch(data, &summary);
    true
}

fn check_verified_batch(bytes: &[u8], summary: &strata_schema::batch::Summary) {
    use strata_schema::batch;
    let rb = batch::open(bytes).expect("a verified batch opens");
    assert_eq!(rb.records().len(), summary.records);
    walk_records(&rb);
    // Copy every record into a new batch: it verifies (the copy may be
    // bigger than the original, which may share strings between records,
    // so without the size limit) and holds the same records.
    let mut builder = batch::Builder::default();
    for r in rb.records() {
        builder.push_from(&r);
    }
    assert_eq!(builder.payload_bytes(), summary.payload_bytes);
    let copy = builder.finish();
    let unbounded = batch::Limits {
        batch_bytes_max: usize::MAX,
        ..batch::Limits::default()
    };
    let again = batch::verify(&copy, &unbounded).expect("a copied batch verifies");
    assert_eq!(&again, summary);
    let copied = batch::open(&copy).expect("a copied batch opens");
    for (a, b) in rb.records().iter().zip(copied.records().iter()) {
        assert_eq!(record_fields(&a), record_fields(&b));
    }
}

type RecordFields<'a> = (Option<&'a str>, &'a [u8], i64, Vec<(&'a str, &'a [u8])>);

/// A record's content; an absent value reads as empty, as everywhere else.
fn record_fields<'a>(r: &strata_schema::fb::Record<'a>) -> RecordFields<'a> {
    let headers = r
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| (h.key(), h.value().map_or(&[][..], |v| v.bytes())))
                .collect()
        })
        .unwrap_or_default();
    (
        r.key(),
        r.value().map_or(&[][..], |v| v.bytes()),
        r.timestamp_ms(),
        headers,
    )
}

fn walk_records(rb: &strata_schema::fb::RecordBatch<'_>) {
    for r in rb.records() {
        let _ = (strata_schema::batch::record_len(&r), record_fields(&r));
    }
}

// ---------------------------------------------------------------------------
// Between core nodes: the peer wire and the Raft log's commands.
// ---------------------------------------------------------------------------

/// The peer protocol between core nodes: a request frame body (kind, group
/// id, Raft RPC) and a reply body of each type the Raft network decodes.
/// A request that decodes re-encodes canonically: encoding it, decoding
/// that and encoding again gives the same bytes.
pub fn peer_message(data: &[u8]) -> bool {
    use openraft::error::{ClientWriteError, InstallSnapshotError, RaftError};
    use openraft::raft::{
        AppendEntriesResponse, ClientWriteResponse, InstallSnapshotResponse, VoteResponse,
    };
    use openraft::BasicNode;
    use strata_core::raft::peer::{decode_reply, decode_request, encode_request, GroupRequest};
    use strata_core::raft::types::{MetaTypes, NodeId};

    let request = decode_request(Bytes::copy_from_slice(data));
    let accepted = request.is_ok();
    if let Ok((group, req)) = request {
        let first = match &req {
            GroupRequest::Meta(r) => encode_request(&group, r),
            GroupRequest::Shard(r) => encode_request(&group, r),
        }
        .expect("a decoded request encodes");
        let body = Bytes::copy_from_slice(&first[strata_schema::frame::FRAME_HEADER_BYTES..]);
        let (group2, req2) = decode_request(body).expect("an encoded request decodes");
        assert_eq!(group2, group);
        let second = match &req2 {
            GroupRequest::Meta(r) => encode_request(&group2, r),
            GroupRequest::Shard(r) => encode_request(&group2, r),
        }
        .expect("a decoded request encodes");
        assert_eq!(first, second, "peer request encoding is canonical");
    }
    // The first byte picks the reply type; the rest is the reply body.
    let Some((&which, body)) = data.split_first() else {
        return accepted;
    };
    let reply = match which % 5 {
        0 => decode_reply::<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>>(body).is_ok(),
        1 => decode_reply::<Result<VoteResponse<NodeId>, RaftError<NodeId>>>(body).is_ok(),
        2 => decode_reply::<
            Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
        >(body)
        .is_ok(),
        3 => decode_reply::<
            Result<
                ClientWriteResponse<MetaTypes>,
                RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
            >,
        >(body)
        .is_ok(),
        _ => decode_reply::<Result<(), String>>(body).is_ok(),
    };
    accepted || reply
}

/// A Raft log entry: the commands of both kinds of group, alone and as the
/// entry record the log and the peer wire carry (header, kind, payload).
/// Whatever decodes re-encodes to a value that decodes equal.
pub fn raft_command(data: &[u8]) -> bool {
    use strata_core::catalog::MetaCommand;
    use strata_core::raft::command::{GroupCommand, ShardCommand};
    use strata_core::raft::types::{MetaTypes, ShardTypes};

    let bytes = Bytes::copy_from_slice(data);
    let mut accepted = false;
    if let Ok(cmd) = MetaCommand::decode(bytes.clone()) {
        accepted = true;
        assert_eq!(reencode(&cmd), cmd);
    }
    if let Ok(cmd) = ShardCommand::decode(bytes.clone()) {
        accepted = true;
        if let ShardCommand::Append(a) = &cmd {
            // Every record of a decoded append has a position, and the
            // positions the shard computes when it applies it fit u64.
            if let Some(d) = &a.seq_deltas {
                assert_eq!(d.len(), a.records as usize);
                assert!(d.windows(2).all(|w| w[0] < w[1]), "deltas increase");
            }
            assert!(a.seq(0) <= a.last_seq());
            assert!(a.last_seq() < u64::MAX, "a position follows the last one");
            let _ = strata_schema::batch::open(&a.batch);
        }
        assert_eq!(reencode(&cmd), cmd);
    }
    accepted |= entry_record::<MetaTypes>(bytes.clone());
    accepted |= entry_record::<ShardTypes>(bytes);
    accepted
}

fn reencode<C: strata_core::raft::command::GroupCommand>(cmd: &C) -> C {
    let mut out = Vec::new();
    cmd.encode(&mut out);
    C::decode(Bytes::from(out)).unwrap_or_else(|e| panic!("a decoded command re-decodes: {e}"))
}

/// Decodes an entry record; if it decodes, its encoding is canonical.
fn entry_record<C: strata_core::raft::types::GroupConfig>(bytes: Bytes) -> bool {
    use strata_core::raft::log_store::{decode_entry_record, encode_entry_record};
    let Ok(entry) = decode_entry_record::<C>(bytes) else {
        return false;
    };
    let mut first = Vec::new();
    encode_entry_record(&entry, &mut first).expect("a decoded entry encodes");
    let again = decode_entry_record::<C>(Bytes::from(first.clone())).expect("re-decodes");
    let mut second = Vec::new();
    encode_entry_record(&again, &mut second).expect("a decoded entry encodes");
    assert_eq!(first, second, "entry record encoding is canonical");
    true
}

// ---------------------------------------------------------------------------
// Documents: the archive manifest, the state-machine snapshots.
// ---------------------------------------------------------------------------

/// The archive manifest (JSON next to the Parquet objects); a manifest that
/// loads is valid, so it re-encodes to itself and can be searched.
pub fn manifest(data: &[u8]) -> bool {
    use strata_archive::manifest::Manifest;
    let Ok(m) = Manifest::from_json(data) else {
        return false;
    };
    let again = Manifest::from_json(&m.to_json()).expect("a loaded manifest re-encodes");
    assert_eq!(again, m);
    for o in &m.objects {
        assert!(m.locate(o.first_offset).is_some());
        let _ = o.path();
        if let Some(c) = &o.checksums {
            let _ = c.covers(o.bytes);
        }
    }
    let _ = (m.tiered_to(), m.first_offset(), m.locate(u64::MAX));
    true
}

/// The state-machine snapshots: `snapshot.json` read back from disk by
/// `GroupSm::open_in` (the file a node restarts from), which is also the
/// body of an InstallSnapshot from a peer. A shard's state and the metadata
/// catalog; the read-only lookups a restored shard state serves; and a
/// snapshot that loads saves and loads again to the same document.
pub fn snapshot(data: &[u8]) -> bool {
    use strata_core::catalog::Catalog;
    use strata_core::raft::shard::ShardState;

    let mut accepted = false;
    if let Some(s) = load_snapshot::<ShardState>(data) {
        accepted = true;
        s.check_stored()
            .expect("a loaded shard state is consistent");
        let probes = [0, s.first_offset, s.next_offset, s.tiered_to(), u64::MAX];
        for offset in probes {
            let _ = (s.locate(offset), s.tiered_object(offset));
        }
        let _ = (
            s.newest_timestamp_ms(),
            s.locate_time(i64::MIN),
            s.locate_time(0),
        );
        for &producer in s.producers.keys().take(16) {
            let _ = s.producer_next_seq(producer);
        }
    }
    if let Some(c) = load_snapshot::<Catalog>(data) {
        accepted = true;
        let _ = (c.default_replication(), c.zones());
        for &node in c.nodes.keys().take(16) {
            let _ = c.replica_count(node);
        }
    }
    accepted
}

/// Writes `data` as `snapshot.json` and opens a state machine on it.
fn load_snapshot<S: strata_core::raft::sm::GroupState>(data: &[u8]) -> Option<S> {
    use strata_core::raft::sm::{Applied, GroupSm};
    let fs = strata_segment_log::sim::SimFs::new();
    let dir = PathBuf::from("/sm");
    write_file(&*fs.shared(), &dir, "snapshot.json", data);
    let sm = GroupSm::<S>::open_in(fs.shared(), &dir).ok()?;
    let state = sm.read(S::clone);
    // The same document, as `Applied`, saves and loads to itself.
    let applied: Applied<S> = serde_json::from_slice(data).expect("it loaded once");
    let first = serde_json::to_value(&applied).expect("a state serializes");
    let again: Applied<S> = serde_json::from_value(first.clone()).expect("a saved state loads");
    assert_eq!(serde_json::to_value(&again).expect("serializes"), first);
    Some(state)
}

// ---------------------------------------------------------------------------
// Disk: the edge buffer's and the core log's segment files.
// ---------------------------------------------------------------------------

/// Creates `dir/name` on `fs` holding `bytes`, durably.
fn write_file(fs: &dyn Fs, dir: &Path, name: &str, bytes: &[u8]) {
    fs.create_dir_all(dir).expect("mkdir on the simulated disk");
    let file = fs
        .open(&dir.join(name), OpenMode::CreateTruncate)
        .expect("create on the simulated disk");
    file.write_all_at(bytes, 0)
        .expect("write to the simulated disk");
    file.sync_data().expect("sync on the simulated disk");
    fs.sync_dir(dir).expect("sync dir on the simulated disk");
}

/// Rewrites the CRC of every whole frame (`[u32 LE len][u32 LE crc][body]`).
fn fix_crcs(bytes: &mut [u8]) {
    use strata_segment_log::frame::{body_crc, FRAME_HEADER_BYTES};
    let mut pos = 0;
    while pos + FRAME_HEADER_BYTES <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let start = pos + FRAME_HEADER_BYTES;
        let Some(end) = start.checked_add(len).filter(|&e| e <= bytes.len()) else {
            return;
        };
        let crc = body_crc(&[&bytes[start..end]]);
        bytes[pos + 4..start].copy_from_slice(&crc.to_le_bytes());
        pos = end;
    }
}

/// A log directory of one or two segment files, from fuzzer input:
///
/// ```text
/// flags u8: bit 0 recompute CRCs, bit 1 a second segment, bit 2 an
///           `acked` file, bit 3 encrypted segments (`.ebuf`, opened with
///           [`edge_test_keys`]) (bits 2 and 3: edge buffer only)
/// first u64        name of the first segment (its first seq / index)
/// if bit 1: split u16, second u64: the first `split` bytes of the rest
///           are the first segment, the others the second one (named second)
/// if bit 2: acked u64 (edge buffer only; read by the caller)
/// rest             segment bytes
/// ```
struct LogDir {
    fs: strata_segment_log::sim::SimFs,
    dir: PathBuf,
}

impl LogDir {
    fn new(input: &mut Input<'_>, flags: u8, extension: &str) -> Self {
        let first = input.u64();
        let second = (flags & 2 == 2).then(|| (input.u16(), input.u64()));
        let fs = strata_segment_log::sim::SimFs::new();
        let dir = PathBuf::from("/log");
        fs.shared().create_dir_all(&dir).expect("mkdir");
        let mut segments = Vec::new();
        let mut rest = std::mem::replace(input, Input(&[]));
        match second {
            None => segments.push((first, rest.0.to_vec())),
            Some((split, name)) => {
                segments.push((first, rest.take(usize::from(split)).to_vec()));
                segments.push((name, rest.rest().to_vec()));
            }
        }
        for (name, bytes) in &mut segments {
            if flags & 1 == 1 {
                fix_crcs(bytes);
            }
            let file = strata_segment_log::names::segment_file_name(*name, extension);
            write_file(&*fs.shared(), &dir, &file, bytes);
        }
        Self { fs, dir }
    }

    fn shared(&self) -> Arc<dyn Fs> {
        self.fs.shared()
    }
}

/// The key the edge harness opens encrypted segments with (the seeds'
/// encrypted segment is written with it).
pub fn edge_test_keys() -> strata_edge::buffer::Keyring {
    strata_edge::buffer::Keyring {
        current: Some(strata_edge::buffer::BufferKey::from_bytes(
            &[7; 32],
            PathBuf::from("/keys/fuzz.key"),
        )),
        previous: Vec::new(),
    }
}

/// The edge agent's buffer recovery: one or two segment files, plaintext
/// or encrypted (and an `acked` file), read back from disk (layout:
/// [`LogDir`]), then every durable batch read (and decrypted). What
/// recovery keeps is a contiguous run of batches from the acked position to
/// the durable one.
pub fn edge_buffer_frame(data: &[u8]) -> bool {
    use strata_edge::buffer::{BufferOptions, StreamBuffer};
    let mut input = Input(data);
    let flags = input.u8();
    let acked = (flags & 4 == 4).then(|| input.u64());
    let encrypted = flags & 8 == 8;
    let disk = LogDir::new(&mut input, flags, if encrypted { "ebuf" } else { "buf" });
    if let Some(seq) = acked {
        // acked = [u64 LE seq][u32 LE crc32c of the 8 bytes]
        let mut file = seq.to_le_bytes().to_vec();
        file.extend_from_slice(&crc32c::crc32c(&seq.to_le_bytes()).to_le_bytes());
        write_file(&*disk.shared(), &disk.dir, "acked", &file);
    }
    let opts = BufferOptions {
        batch_bytes_max: 64 * 1024,
        ..BufferOptions::default()
    };
    let keys = encrypted.then(|| Arc::new(edge_test_keys()));
    let Ok((buffer, _recovery)) =
        StreamBuffer::open_with_keys(disk.shared(), &disk.dir, opts, keys)
    else {
        return false;
    };
    assert!(buffer.acked_seq() <= buffer.durable_seq());
    assert_eq!(buffer.durable_seq(), buffer.next_seq());
    let read = buffer.read_durable(0, usize::MAX);
    let accepted = matches!(&read, Ok(batches) if !batches.is_empty());
    if let Ok(batches) = read {
        let mut next = None;
        for b in &batches {
            assert!(b.records > 0);
            if let Some(n) = next {
                assert_eq!(b.first_seq, n, "durable batches are contiguous");
            }
            let end = b.first_seq.checked_add(u64::from(b.records));
            let end = end.expect("a recovered batch's seqs fit u64");
            assert!(end > buffer.acked_seq() && end <= buffer.durable_seq());
            next = Some(end);
        }
    }
    let _ = buffer.read_durable(buffer.acked_seq(), 1);
    let _ = buffer.stats();
    accepted
}

/// The core's Raft log recovery: one or two segment files read back from
/// disk (layout: [`LogDir`]), then every record read and decoded as an
/// entry of each kind of group, as the log store does.
pub fn core_log_segment(data: &[u8]) -> bool {
    use strata_core::log::segment::{SegmentLog, SegmentLogOptions};
    use strata_core::raft::types::{MetaTypes, ShardTypes};
    let mut input = Input(data);
    let flags = input.u8();
    let disk = LogDir::new(&mut input, flags, "log");
    let opts = SegmentLogOptions {
        record_bytes_max: 64 * 1024,
        ..SegmentLogOptions::default()
    };
    let Ok((log, recovery)) = SegmentLog::open_in(disk.shared(), &disk.dir, opts) else {
        return false;
    };
    log.check_invariants();
    assert_eq!(recovery.segments, log.segment_count());
    if let (Some(first), Some(last)) = (log.first_index(), log.last_index()) {
        for index in first..=last {
            let rec = log.read(index).expect("a recovered record reads back");
            let rec = rec.expect("every index up to the last is in the log");
            assert_eq!(rec.index, index);
            assert_eq!(log.term_of(index), Some(rec.term));
            let mut body = Vec::with_capacity(25 + rec.payload.len());
            body.extend_from_slice(&rec.term.to_le_bytes());
            body.extend_from_slice(&rec.node_id.to_le_bytes());
            body.extend_from_slice(&rec.index.to_le_bytes());
            body.push(rec.kind);
            body.extend_from_slice(&rec.payload);
            let body = Bytes::from(body);
            entry_record::<MetaTypes>(body.clone());
            entry_record::<ShardTypes>(body);
        }
    }
    let _ = (log.last_record_id(), log.term_of(0), log.read(u64::MAX));
    recovery.records > 0
}

/// Every file of a corpus directory, sorted by name.
pub fn corpus_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.is_file());
    files.sort();
    Ok(files)
}
