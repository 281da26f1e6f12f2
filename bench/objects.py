"""Object-erasure benchmark: Lethe against a plain boto3 loop, same moto server, same run.

Creates N small objects (default 20,000) in a fresh bucket, erases them with
`lethe run` (an object rule on the bucket's prefix: list, lock check, audited
batches, DeleteObjects of 1,000 keys with the store's concurrency in flight),
then does the same with boto3 on one thread:
  - boto3 delete-only: DeleteObjects x 1,000 over keys it already knows;
  - boto3 list+delete: ListObjectsV2 pages of 1,000, each deleted as it comes.
Each bucket is seeded anew; seeding is not timed. Prints objects/s and ratios.

Run it through bench/objects.sh (starts moto, builds lethe, uses .venv).
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config

ENDPOINT = os.environ.get("LETHE_TEST_S3_ENDPOINT", "http://127.0.0.1:5077")
REGION = "cn-east-2"
N = int(os.environ.get("BENCH_OBJECTS", "20000"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "4"))
LETHE = sys.argv[1]

s3 = boto3.client(
    "s3",
    endpoint_url=ENDPOINT,
    region_name=REGION,
    aws_access_key_id="bench",
    aws_secret_access_key="bench",
    config=Config(max_pool_connections=32, retries={"max_attempts": 3}),
)


def fresh_bucket():
    name = "lethe-bench-" + uuid.uuid4().hex[:10]
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    keys = [f"bench/{i:06d}" for i in range(N)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=name, Key=k, Body=b"x" * 64), keys))
    return name, keys


def remaining(bucket):
    return s3.list_objects_v2(Bucket=bucket, Prefix="bench/").get("KeyCount", 0)


def bench_lethe():
    bucket, _ = fresh_bucket()
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(f"{d}/config")
        os.makedirs(f"{d}/jobs")
        with open(f"{d}/config/lethe.toml", "w") as f:
            f.write(
                f"""allowed_regions = ["{REGION}"]
[stores.bench]
kind = "s3"
bucket = "{bucket}"
endpoint = "{ENDPOINT}"
path_style = true
region = "{REGION}"
concurrency = {CONCURRENCY}
[audit]
dir = "{d}/audit"
[state]
url = "sqlite://{d}/state.db?mode=rwc"
"""
            )
        with open(f"{d}/jobs/bench.toml", "w") as f:
            f.write(
                'name = "bench"\npolicy = "bench"\n[[rules]]\nname = "bench"\nstore = "bench"\nprefix = "bench/"\n'
            )
        env = dict(
            os.environ,
            LETHE_AUDIT_KEY="bench-key-0123456789abcdef",
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_EC2_METADATA_DISABLED="true",
            LETHE_LOG="lethe=info",
        )
        t0 = time.perf_counter()
        out = subprocess.run(
            [LETHE, "run", "--config", f"{d}/config/lethe.toml", "--jobs", f"{d}/jobs", "--output", "json"],
            env=env,
            capture_output=True,
            text=True,
        )
        dt = time.perf_counter() - t0
        if out.returncode != 0:
            sys.exit(f"lethe failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        erased = summary["totals"]["objects_erased"]
        logs = [json.loads(l) for l in out.stderr.splitlines() if l.startswith("{")]
        phases = {l["message"]: l for l in logs if l.get("message") in ("objects selected", "objects erased")}
    assert erased == N, f"lethe erased {erased} of {N}"
    assert remaining(bucket) == 0
    return dt, phases["objects selected"]["select_ms"] / 1000, phases["objects erased"]["delete_ms"] / 1000


def bench_boto3_delete_only():
    bucket, keys = fresh_bucket()
    t0 = time.perf_counter()
    for i in range(0, len(keys), 1000):
        r = s3.delete_objects(
            Bucket=bucket,
            Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True},
        )
        assert not r.get("Errors"), r.get("Errors")
    dt = time.perf_counter() - t0
    assert remaining(bucket) == 0
    return dt


def bench_boto3_list_delete():
    bucket, _ = fresh_bucket()
    t0 = time.perf_counter()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="bench/"):
        objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if objs:
            r = s3.delete_objects(Bucket=bucket, Delete={"Objects": objs, "Quiet": True})
            assert not r.get("Errors"), r.get("Errors")
    dt = time.perf_counter() - t0
    assert remaining(bucket) == 0
    return dt


def main():
    print(f"objects: {N}, endpoint: {ENDPOINT}, lethe concurrency: {CONCURRENCY}")
    total, listing, deleting = bench_lethe()
    print(f"{'lethe run, end to end (start, list, audit, delete, exit)':60s} {total:7.3f} s  {N / total:8.0f} objects/s")
    print(f"{'  of which listing (ListObjectsV2)':60s} {listing:7.3f} s")
    print(f"{'  of which deleting (audited DeleteObjects x1,000)':60s} {deleting:7.3f} s  {N / deleting:8.0f} objects/s")
    only = bench_boto3_delete_only()
    print(f"{'boto3 DeleteObjects x1,000, keys known, one thread':60s} {only:7.3f} s  {N / only:8.0f} objects/s")
    both = bench_boto3_list_delete()
    print(f"{'boto3 ListObjectsV2 + DeleteObjects x1,000, one thread':60s} {both:7.3f} s  {N / both:8.0f} objects/s")
    print(f"ratio, deleting: lethe / boto3 delete-only loop = {only / deleting:.2f}x")
    print(f"ratio, end to end: lethe / boto3 list+delete loop = {both / total:.2f}x")


main()
