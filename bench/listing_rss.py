"""Peak memory of an object rule over a large prefix: does RSS grow with the listing?

Creates a folder store with N_SMALL and then N_LARGE objects under one prefix
(spread over 100 sub-folders, as `avatars/{id}/` spreads them), and for each
runs `lethe plan` (a counting pass) and `lethe run` (list a page, erase it,
list on), reading each process's peak RSS from the kernel (wait4's
ru_maxrss). Before listings were streamed, RSS grew with N (every version was
held, then every object); now it must stay flat: the script prints both and
the growth per 100,000 objects, and fails only if the run did not erase
everything (performance is measured, never asserted).

  python3 bench/listing_rss.py target/release/lethe
Environment: BENCH_RSS_SMALL (default 20000), BENCH_RSS_LARGE (default 200000).
"""
import json
import os
import subprocess
import sys
import tempfile
import time

LETHE = sys.argv[1] if len(sys.argv) > 1 else "target/release/lethe"
SMALL = int(os.environ.get("BENCH_RSS_SMALL", "20000"))
LARGE = int(os.environ.get("BENCH_RSS_LARGE", "200000"))
REGION = "cn-east-2"


def seed(root, n):
    old = time.time() - 10 * 86400
    for i in range(n):
        d = os.path.join(root, "uploads", f"{i % 100:02d}")
        if i < 100:
            os.makedirs(d, exist_ok=True)
        p = os.path.join(d, f"{i:08d}.bin")
        with open(p, "wb") as f:
            f.write(b"x")
        os.utime(p, (old, old))


def measure(args, env):
    """Run lethe; return (exit code, peak RSS in KiB, stdout, seconds)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(args, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        text = out.read().decode()
        code = os.waitstatus_to_exitcode(status)
        if code not in (0, 2):
            sys.exit(f"lethe {args[1]} failed ({code}):\n{text}\n{err.read().decode()}")
        return code, usage.ru_maxrss, text, dt


def one(n):
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(f"{d}/config")
        os.makedirs(f"{d}/jobs")
        store = f"{d}/objects"
        seed(store, n)
        with open(f"{d}/config/lethe.toml", "w") as f:
            f.write(
                f"""allowed_regions = ["{REGION}"]
[stores.media]
kind = "fs"
path = "{store}"
region = "{REGION}"
[audit]
dir = "{d}/audit"
[state]
url = "sqlite://{d}/state.db?mode=rwc"
"""
            )
        with open(f"{d}/jobs/uploads.toml", "w") as f:
            f.write(
                'name = "uploads"\npolicy = "bench"\n[[rules]]\nname = "old-uploads"\n'
                'store = "media"\nprefix = "uploads/"\nselect = { older_than = "1d" }\n'
                "batch_size = 2000\n"
            )
        env = dict(os.environ, LETHE_AUDIT_KEY="bench-key-0123456789abcdef", LETHE_LOG="lethe=warn")
        base = ["--config", f"{d}/config/lethe.toml", "--jobs", f"{d}/jobs", "--output", "json"]
        _, plan_rss, _, plan_s = measure([LETHE, "plan", *base], env)
        _, run_rss, text, run_s = measure([LETHE, "run", *base], env)
        summary = json.loads(text.strip().splitlines()[-1])
        erased = summary["totals"]["objects_erased"]
        assert erased == n, f"lethe erased {erased} of {n}"
        left = sum(len(fs) for _, _, fs in os.walk(f"{store}/uploads"))
        assert left == 0, f"{left} objects left"
        return plan_rss, run_rss, plan_s, run_s


def main():
    rows = []
    for n in (SMALL, LARGE):
        plan_rss, run_rss, plan_s, run_s = one(n)
        rows.append((n, plan_rss, run_rss))
        print(
            f"N={n:>9,}  plan peak RSS {plan_rss / 1024:7.1f} MiB ({plan_s:5.1f} s)"
            f"  run peak RSS {run_rss / 1024:7.1f} MiB ({run_s:5.1f} s)",
            flush=True,
        )
    (n1, p1, r1), (n2, p2, r2) = rows
    per = 100_000 / (n2 - n1)
    print(
        f"growth per 100,000 objects: plan {(p2 - p1) * per / 1024:+.1f} MiB,"
        f" run {(r2 - r1) * per / 1024:+.1f} MiB"
    )


if __name__ == "__main__":
    main()
