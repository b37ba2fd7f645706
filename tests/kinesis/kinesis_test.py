"""Real Kinesis clients (boto3, the AWS CLI, aws-kinesis-agg) against a Strata
edge agent's Kinesis API. Driven by tests/tests/kinesis.rs, one phase per run:

  main      create a 4-shard stream, put_records RECORDS records in batches of
            500 over 200 partition keys with a split during the writes, read
            every shard from TRIM_HORIZON following ChildShards (each record
            once, per-key order, bytes equal), ExplicitHashKey, AT_TIMESTAMP /
            AT_ / AFTER_SEQUENCE_NUMBER, refused requests (wrong signature,
            unknown key, no produce right, oversized) writing nothing, a KPL
            aggregate, SubscribeToShard, the AWS CLI; prepares the `outage`
            stream
  put_down  put 100 records to `outage` while the core is down
  read_up   read `outage` back once the core is up again: all 101 records
  limits    the endpoint's limits (the edge runs with request_read_timeout_ms
            = READ_TIMEOUT_MS and connections_per_address_max = 4): a fifth
            connection from one address is refused, a silent connection is
            closed within the read timeout, a body over 8 MiB is refused
  bench     put RECORDS records (batches of 500 over 200 keys, the payloads
            of `main`) to the existing stream `bench` from one client, one
            request at a time; prints {"put_records_per_s": ...}

Environment: KINESIS_ENDPOINT, KINESIS_CA, AWS key pairs KINESIS_ADMIN_KEY /
KINESIS_ADMIN_SECRET and KINESIS_VIEWER_KEY / KINESIS_VIEWER_SECRET (a
principal with no produce right), RECORDS, AWS_CLI (path of `aws`).
Prints one JSON line of figures at the end of `main`.
"""

import base64
import hashlib
import json
import os
import subprocess
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

EP = os.environ["KINESIS_ENDPOINT"]
CA = os.environ["KINESIS_CA"]
DEADLINE_S = 90


def client(key, secret):
    return boto3.client(
        "kinesis",
        endpoint_url=EP,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        verify=CA,
        config=Config(retries={"max_attempts": 8, "mode": "standard"}, read_timeout=60),
    )


ADMIN = client(os.environ["KINESIS_ADMIN_KEY"], os.environ["KINESIS_ADMIN_SECRET"])


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def eventually(read, want, what):
    """Waits (up to DEADLINE_S) until read() == want. Stream metadata read
    through another core node may trail a change for a moment (its metadata
    replica applies it a little later), as Kinesis's own describe does
    while a stream is UPDATING."""
    end = time.time() + DEADLINE_S
    while (got := read()) != want:
        check(time.time() < end, f"{what}: want {want}, got {got}")
        time.sleep(0.05)


def error_code(fn):
    try:
        fn()
    except ClientError as e:
        return e.response["Error"]["Code"]
    return None


def payload(key, i):
    return f"{key}|{i}|".encode() + hashlib.sha256(f"{key}/{i}".encode()).digest()[:16]


def shards_of(stream):
    out, token = [], None
    while True:
        r = ADMIN.list_shards(NextToken=token) if token else ADMIN.list_shards(StreamName=stream)
        out += r["Shards"]
        token = r.get("NextToken")
        if not token:
            return out


def read_all(stream, want, deadline_s=DEADLINE_S):
    """Reads every shard from TRIM_HORIZON, children after all their parents
    are read to their end (NextShardIterator null, ChildShards), until `want`
    records arrived and every open shard answered empty once after that.
    Returns {shard id: [records]} and the ChildShards seen per parent."""
    shards = {s["ShardId"]: s for s in shards_of(stream)}
    parents = {
        sid: [p for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p and p in shards]
        for sid, s in shards.items()
    }
    done, children_seen, got = set(), {}, {sid: [] for sid in shards}
    its, total, quiet = {}, 0, set()
    end = time.time() + deadline_s
    while True:
        for sid in shards:
            if sid not in its and sid not in done and all(p in done for p in parents[sid]):
                its[sid] = ADMIN.get_shard_iterator(
                    StreamName=stream, ShardId=sid, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
        progressed = False
        for sid in list(its):
            r = ADMIN.get_records(ShardIterator=its[sid], Limit=10000)
            got[sid] += r["Records"]
            total += len(r["Records"])
            progressed |= bool(r["Records"])
            if r["Records"]:
                quiet.discard(sid)
            elif total >= want:
                quiet.add(sid)
            if r.get("NextShardIterator") is None:
                children_seen[sid] = [c["ShardId"] for c in r.get("ChildShards", [])]
                done.add(sid)
                del its[sid]
            else:
                its[sid] = r["NextShardIterator"]
        if total >= want and all(sid in quiet for sid in its) and all(
            sid in done or sid in its for sid in shards
        ):
            return got, children_seen
        check(time.time() < end, f"read {total} of {want} records of {stream} within {deadline_s}s")
        if not progressed:
            time.sleep(0.05)


def put_batches(stream, n, keys, split_at_batch=None):
    """Puts n records over `keys` partition keys; returns seconds spent in put_records."""
    counters = [0] * keys
    batch, spent, sent = [], 0.0, 0
    batches = 0
    for j in range(n):
        k = j % keys
        key = f"key-{k:03d}"
        batch.append({"Data": payload(key, counters[k]), "PartitionKey": key})
        counters[k] += 1
        if len(batch) == 500 or j == n - 1:
            t = time.perf_counter()
            r = ADMIN.put_records(StreamName=stream, Records=batch)
            spent += time.perf_counter() - t
            check(r["FailedRecordCount"] == 0, f"a batch failed: {r['Records'][:2]}")
            check(len(r["Records"]) == len(batch), "one result per record")
            seqs = [x["SequenceNumber"] for x in r["Records"]]
            check(seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "increasing sequence numbers")
            sent += len(batch)
            batch = []
            batches += 1
            if split_at_batch is not None and batches == split_at_batch:
                s0 = [s for s in shards_of(stream) if s["ShardId"] == "shardId-000000000000"][0]
                lo = int(s0["HashKeyRange"]["StartingHashKey"])
                hi = int(s0["HashKeyRange"]["EndingHashKey"])
                ADMIN.split_shard(
                    StreamName=stream, ShardToSplit="shardId-000000000000", NewStartingHashKey=str((lo + hi) // 2 + 1)
                )
    return spent


def main_phase():
    n = int(os.environ.get("RECORDS", "100000"))
    figures = {"records": n}
    ADMIN.create_stream(StreamName="kin", ShardCount=4)
    check("kin" in ADMIN.list_streams()["StreamNames"], "list_streams names the new stream")
    check(ADMIN.describe_stream_summary(StreamName="kin")["StreamDescriptionSummary"]["OpenShardCount"] == 4, "4 shards")
    check(error_code(lambda: ADMIN.create_stream(StreamName="kin", ShardCount=1)) == "ResourceInUseException", "exists")
    check(error_code(lambda: ADMIN.describe_stream(StreamName="nope")) == "ResourceNotFoundException", "unknown stream")

    spent = put_batches("kin", n, 200, split_at_batch=max(1, n // 1000))
    figures["put_records_per_s"] = round(n / spent)
    t = time.perf_counter()
    got, children = read_all("kin", n)
    figures["read_s"] = round(time.perf_counter() - t, 2)

    # Each record once, per-key order, bytes equal.
    seen = {}
    for sid, recs in got.items():
        seqs = [r["SequenceNumber"] for r in recs]
        check(seqs == sorted(seqs) and all(len(s) == len(seqs[0]) for s in seqs), f"{sid}: sequence numbers increase")
    for sid in sorted(got, key=lambda s: int(s.split("-")[1])):
        for r in got[sid]:
            key, i, _ = r["Data"].split(b"|", 2)
            key, i = key.decode(), int(i)
            check(r["PartitionKey"] == key, "PartitionKey comes back")
            check(r["Data"] == payload(key, i), "bytes equal")
            check((key, i) not in seen, f"({key}, {i}) read twice")
            seen[(key, i)] = sid
    check(len(seen) == n, f"read {len(seen)} distinct records of {n}")
    check(children.get("shardId-000000000000") == ["shardId-000000000004", "shardId-000000000005"],
          f"the split parent names its ChildShards: {children}")
    keys_in_parent_and_child = check_per_key_order(got)
    figures["keys_across_split"] = keys_in_parent_and_child

    explicit_hash_key()
    positions(got)
    refusals()
    kpl()
    subscribe()
    reshards_and_delete()
    aws_cli()
    ADMIN.create_stream(StreamName="outage", ShardCount=1)
    ADMIN.put_record(StreamName="outage", Data=b"before", PartitionKey="o")
    print(json.dumps(figures))


def check_per_key_order(got):
    """A key's records, parent shard first then child, are in put order."""
    by_key = {}
    for sid in sorted(got, key=lambda s: int(s.split("-")[1])):
        for r in got[sid]:
            key, i = r["PartitionKey"], int(r["Data"].split(b"|")[1])
            by_key.setdefault(key, []).append((sid, i))
    across = 0
    for key, xs in by_key.items():
        idx = [i for _, i in xs]
        check(idx == list(range(len(idx))), f"{key}: records in put order, none missing: {idx[:10]}...")
        across += len({sid for sid, _ in xs}) > 1
    return across


def explicit_hash_key():
    shards = [s for s in shards_of("kin") if "EndingSequenceNumber" not in s["SequenceNumberRange"]]
    target = shards[-1]
    lo, hi = int(target["HashKeyRange"]["StartingHashKey"]), int(target["HashKeyRange"]["EndingHashKey"])
    it = ADMIN.get_shard_iterator(StreamName="kin", ShardId=target["ShardId"], ShardIteratorType="LATEST")["ShardIterator"]
    # "a" hashes far away from the last shard's range.
    r = ADMIN.put_record(StreamName="kin", Data=b"explicit", PartitionKey="a", ExplicitHashKey=str(lo + (hi - lo) // 3))
    check(r["ShardId"] == target["ShardId"], f"ExplicitHashKey answered {r['ShardId']}, owner {target['ShardId']}")
    end = time.time() + DEADLINE_S
    while True:
        g = ADMIN.get_records(ShardIterator=it)
        if g["Records"]:
            check([x["Data"] for x in g["Records"]] == [b"explicit"], f"the owning shard holds it: {g['Records']}")
            check(g["Records"][0]["PartitionKey"] == "a", "the partition key comes back")
            return
        it = g["NextShardIterator"]
        check(time.time() < end, "the explicit-hash-key record arrives")
        time.sleep(0.05)


def positions(got):
    sid = max(got, key=lambda s: len(got[s]))
    recs = got[sid]
    tenth = recs[10]
    def first(kind, **kw):
        it = ADMIN.get_shard_iterator(StreamName="kin", ShardId=sid, ShardIteratorType=kind, **kw)["ShardIterator"]
        return ADMIN.get_records(ShardIterator=it, Limit=1)["Records"][0]
    check(first("AT_SEQUENCE_NUMBER", StartingSequenceNumber=tenth["SequenceNumber"])["Data"] == tenth["Data"], "AT_SEQUENCE_NUMBER")
    check(first("AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=tenth["SequenceNumber"])["Data"] == recs[11]["Data"], "AFTER_SEQUENCE_NUMBER")
    # AT_TIMESTAMP: the first record at or after a record's arrival time.
    later = next(r for r in recs if r["ApproximateArrivalTimestamp"] > recs[0]["ApproximateArrivalTimestamp"])
    want = next(r for r in recs if r["ApproximateArrivalTimestamp"] >= later["ApproximateArrivalTimestamp"])
    check(first("AT_TIMESTAMP", Timestamp=later["ApproximateArrivalTimestamp"])["Data"] == want["Data"], "AT_TIMESTAMP")
    check(first("TRIM_HORIZON")["Data"] == recs[0]["Data"], "TRIM_HORIZON")
    bad = error_code(lambda: ADMIN.get_records(ShardIterator="AAAA" + tenth["SequenceNumber"]))
    check(bad == "InvalidArgumentException", f"a forged iterator: {bad}")


def count(stream):
    got, _ = read_all(stream, 0, deadline_s=30)
    return sum(len(v) for v in got.values())


def refusals():
    ADMIN.create_stream(StreamName="guard", ShardCount=1)
    wrong = client(os.environ["KINESIS_ADMIN_KEY"], "x" * 40)
    unknown = client("SKUNKNOWNKEY00000000", "x" * 40)
    viewer = client(os.environ["KINESIS_VIEWER_KEY"], os.environ["KINESIS_VIEWER_SECRET"])
    put = lambda c: (lambda: c.put_record(StreamName="guard", Data=b"bad", PartitionKey="k"))
    check(error_code(put(wrong)) == "InvalidSignatureException", "wrong signature")
    check(error_code(put(unknown)) == "UnrecognizedClientException", "unknown key")
    check(error_code(put(viewer)) == "AccessDeniedException", "no produce right")
    check(error_code(lambda: viewer.put_records(StreamName="guard", Records=[{"Data": b"x", "PartitionKey": "k"}])) == "AccessDeniedException", "no produce right (PutRecords)")
    big = b"x" * (1024 * 1024)
    check(error_code(lambda: ADMIN.put_record(StreamName="guard", Data=big, PartitionKey="k")) == "InvalidArgumentException", "record over 1 MiB")
    many = [{"Data": b"x", "PartitionKey": "k"}] * 501
    check(error_code(lambda: ADMIN.put_records(StreamName="guard", Records=many)) == "InvalidArgumentException", "501 records")
    heavy = [{"Data": b"y" * (1000 * 1024), "PartitionKey": "k"}] * 6
    check(error_code(lambda: ADMIN.put_records(StreamName="guard", Records=heavy)) == "InvalidArgumentException", "request over 5 MiB")
    check(error_code(lambda: ADMIN.describe_limits()) == "UnknownOperationException", "unsupported operation named")
    ADMIN.put_record(StreamName="guard", Data=b"marker", PartitionKey="k")
    got, _ = read_all("guard", 1, deadline_s=30)
    data = [r["Data"] for v in got.values() for r in v]
    check(data == [b"marker"], f"refused requests wrote nothing: {data[:5]}")


def kpl():
    from aws_kinesis_agg.aggregator import RecordAggregator
    ADMIN.create_stream(StreamName="kpl", ShardCount=2)
    agg = RecordAggregator()
    users = [(f"user-{i}", f"payload-{i}".encode()) for i in range(50)]
    for pk, data in users:
        check(agg.add_user_record(pk, data) is None, "one aggregate holds them all")
    pk, ehk, data = agg.clear_and_get().get_contents()
    check(data[:4] == b"\xf3\x89\x9a\xc2", "an aggregate")
    extra = {"ExplicitHashKey": ehk} if ehk else {}
    ADMIN.put_record(StreamName="kpl", Data=data, PartitionKey=pk, **extra)
    got, _ = read_all("kpl", len(users))
    read = sorted((r["PartitionKey"], r["Data"]) for v in got.values() for r in v)
    check(read == sorted(users), f"de-aggregated into the user records: {read[:3]}")


def subscribe():
    """SubscribeToShard (enhanced fan-out) pushes the records as events."""
    ADMIN.create_stream(StreamName="push", ShardCount=1)
    arn = ADMIN.describe_stream_summary(StreamName="push")["StreamDescriptionSummary"]["StreamARN"]
    consumer = ADMIN.register_stream_consumer(StreamARN=arn, ConsumerName="app")["Consumer"]
    check(consumer["ConsumerStatus"] == "ACTIVE", "the consumer is active")
    described = ADMIN.describe_stream_consumer(ConsumerARN=consumer["ConsumerARN"])["ConsumerDescription"]
    check(described["ConsumerName"] == "app", "the consumer reads back from its ARN")
    want = [f"push-{i}".encode() for i in range(10)]
    ADMIN.put_records(StreamName="push", Records=[{"Data": d, "PartitionKey": "k"} for d in want])
    r = ADMIN.subscribe_to_shard(ConsumerARN=consumer["ConsumerARN"], ShardId="shardId-000000000000",
                                 StartingPosition={"Type": "TRIM_HORIZON"})
    got, end = [], time.time() + DEADLINE_S
    for event in r["EventStream"]:
        e = event["SubscribeToShardEvent"]
        got += [x["Data"] for x in e["Records"]]
        if len(got) >= len(want):
            check(e["ContinuationSequenceNumber"] == e["Records"][-1]["SequenceNumber"], "continuation")
            break
        check(time.time() < end, "the subscription delivers the records")
    r["EventStream"].close()
    check(got == want, f"SubscribeToShard events: {got}")


def reshards_and_delete():
    """MergeShards and UpdateShardCount reshard with lineage; DeleteStream removes."""
    ADMIN.create_stream(StreamName="merge", ShardCount=2)
    ADMIN.merge_shards(StreamName="merge", ShardToMerge="shardId-000000000000",
                       AdjacentShardToMerge="shardId-000000000001")
    # Like Kinesis (the stream is UPDATING meanwhile), the merge shows once
    # the catalog change reached the node answering: read until it does.
    end = time.time() + DEADLINE_S
    while True:
        merged = [s for s in shards_of("merge") if s["ShardId"] == "shardId-000000000002"]
        if merged or time.time() > end:
            break
        time.sleep(0.1)
    check(len(merged) == 1 and merged[0]["ParentShardId"] == "shardId-000000000000"
          and merged[0]["AdjacentParentShardId"] == "shardId-000000000001", f"merged shard: {merged}")
    ADMIN.create_stream(StreamName="scale", ShardCount=1)
    r = ADMIN.update_shard_count(StreamName="scale", TargetShardCount=3, ScalingType="UNIFORM_SCALING")
    check((r["CurrentShardCount"], r["TargetShardCount"]) == (1, 3), f"update_shard_count: {r}")
    ADMIN.delete_stream(StreamName="scale")
    end = time.time() + DEADLINE_S
    while "scale" in ADMIN.list_streams()["StreamNames"]:
        check(time.time() < end, "a deleted stream leaves list_streams")
        time.sleep(0.1)
    check(error_code(lambda: ADMIN.describe_stream(StreamName="scale")) == "ResourceNotFoundException",
          "a deleted stream is not found")
    # Retention: unlimited (shown as 8760 h) can only be decreased; then
    # increased again within Kinesis's rules.
    hours = lambda: ADMIN.describe_stream_summary(StreamName="merge")["StreamDescriptionSummary"]["RetentionPeriodHours"]
    check(hours() == 8760, f"unlimited retention shows as 8760 h, got {hours()}")
    check(error_code(lambda: ADMIN.increase_stream_retention_period(StreamName="merge", RetentionPeriodHours=48))
          == "InvalidArgumentException", "an increase cannot shorten an unlimited retention")
    ADMIN.decrease_stream_retention_period(StreamName="merge", RetentionPeriodHours=48)
    eventually(hours, 48, "decreased to 48 h")
    ADMIN.increase_stream_retention_period(StreamName="merge", RetentionPeriodHours=72)
    eventually(hours, 72, "increased to 72 h")
    check(error_code(lambda: ADMIN.decrease_stream_retention_period(StreamName="merge", RetentionPeriodHours=96))
          == "InvalidArgumentException", "a decrease cannot raise the retention")
    check(error_code(lambda: ADMIN.decrease_stream_retention_period(StreamName="merge", RetentionPeriodHours=12))
          == "InvalidArgumentException", "under 24 h is refused")


def aws_cli():
    env = dict(os.environ, AWS_ACCESS_KEY_ID=os.environ["KINESIS_ADMIN_KEY"],
               AWS_SECRET_ACCESS_KEY=os.environ["KINESIS_ADMIN_SECRET"], AWS_DEFAULT_REGION="us-east-1")
    def aws(*args):
        out = subprocess.run([os.environ["AWS_CLI"], "kinesis", *args, "--endpoint-url", EP, "--ca-bundle", CA,
                              "--output", "json"], env=env, capture_output=True, text=True, timeout=120)
        check(out.returncode == 0, f"aws kinesis {args[0]}: {out.stderr}")
        return json.loads(out.stdout) if out.stdout.strip() else {}
    check("guard" in aws("list-streams")["StreamNames"], "aws kinesis list-streams")
    put = aws("put-record", "--stream-name", "guard", "--partition-key", "cli", "--data", "from-the-cli")
    it = aws("get-shard-iterator", "--stream-name", "guard", "--shard-id", put["ShardId"],
             "--shard-iterator-type", "TRIM_HORIZON")["ShardIterator"]
    end = time.time() + DEADLINE_S
    while True:
        recs = aws("get-records", "--shard-iterator", it)["Records"]
        cli = [r for r in recs if r["PartitionKey"] == "cli"]
        if cli:
            check(base64.b64decode(cli[0]["Data"]) == b"from-the-cli", f"aws kinesis get-records: {cli}")
            return
        check(time.time() < end, "the CLI's record arrives")
        time.sleep(0.2)


def put_down():
    r = ADMIN.put_records(StreamName="outage", Records=[{"Data": f"down-{i}".encode(), "PartitionKey": "o"} for i in range(100)])
    check(r["FailedRecordCount"] == 0, "puts succeed while the core is down (edge buffer)")


def read_up():
    got, _ = read_all("outage", 101)
    data = [r["Data"] for v in got.values() for r in v]
    check(data == [b"before"] + [f"down-{i}".encode() for i in range(100)], f"the outage's records arrived once, in order: {len(data)}")


def tls_connection():
    import socket
    import ssl
    ctx = ssl.create_default_context(cafile=CA)
    host, port = EP.removeprefix("https://").split(":")
    raw = socket.create_connection((host, int(port)), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=host)


def limits():
    import http.client
    import ssl
    timeout_s = int(os.environ["READ_TIMEOUT_MS"]) / 1000
    # Four connections from this address are served; a fifth is closed at once.
    held = [tls_connection() for _ in range(4)]
    t = time.time()
    try:
        fifth = tls_connection()
        fifth.settimeout(5)
        check(fifth.recv(1) == b"", "a fifth connection is closed")
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    check(time.time() - t < timeout_s, "the fifth connection is refused at once, not after the read timeout")
    for c in held:
        c.close()
    # A connection that sends nothing is closed within the read timeout.
    def closed_within(conn, limit):
        conn.settimeout(limit + 5)
        t = time.time()
        try:
            while conn.recv(4096):
                pass
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        return time.time() - t < limit + 2
    end = time.time() + 10
    while True:  # the four slots free as the server notices the closes
        try:
            silent = tls_connection()
            break
        except (ConnectionError, ssl.SSLError, OSError):
            check(time.time() < end, "a connection is accepted again once the others closed")
            time.sleep(0.1)
    check(closed_within(silent, timeout_s), "a silent connection is closed within the read timeout")
    # A body over 8 MiB is refused without being stored.
    host, port = EP.removeprefix("https://").split(":")
    ctx = ssl.create_default_context(cafile=CA)
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=30)
    body = b'{"StreamName": "guard", "Records": [' + b" " * (9 * 1024 * 1024) + b"]}"
    try:
        conn.request("POST", "/", body=body, headers={
            "X-Amz-Target": "Kinesis_20131202.PutRecords", "Content-Type": "application/x-amz-json-1.1"})
        r = conn.getresponse()
        payload = json.loads(r.read())
        check(r.status == 400 and payload["__type"] == "InvalidArgumentException", f"oversized body: {r.status} {payload}")
    except (ConnectionError, ssl.SSLError, OSError):
        pass  # the server may close before the client finished sending
    check(ADMIN.list_streams()["StreamNames"] is not None, "the endpoint still serves")


def bench():
    n = int(os.environ.get("RECORDS", "100000"))
    t = time.perf_counter()
    put_batches("bench", n, 200)
    print(json.dumps({"records": n, "put_records_per_s": round(n / (time.perf_counter() - t))}))


if __name__ == "__main__":
    phases = {"main": main_phase, "put_down": put_down, "read_up": read_up, "limits": limits, "bench": bench}
    phases[sys.argv[1]]()
    print("ok", sys.argv[1])
