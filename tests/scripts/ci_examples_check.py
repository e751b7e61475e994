#!/usr/bin/env python3
"""examples/ci/ as far as this machine can test them (no GitHub or GitLab
runner here, and no network): the YAML parses and has what each platform
requires and what the issue asks (a cached sandrun build, an image for Docker,
the platform's JUnit reader, the archive kept); every shell step is valid
bash, checked in a Debian 12 container without network; and
scripts/bootstrap picks the Boost package each runner's apt knows (Debian 12:
libboost1.81-dev, Ubuntu 24.04: libboost1.83-dev), with stand-in apt tools.
Usage: ci_examples_check.py SOURCE_DIR"""
import os, subprocess, sys, tempfile, textwrap
import yaml

src = sys.argv[1]
failures = []

def check(cond, what):
    if not cond:
        failures.append(what)

def load(name):
    with open(os.path.join(src, "examples", "ci", name)) as f:
        return yaml.safe_load(f)

# --- GitHub Actions ---------------------------------------------------------
gh = load("github-actions.yml")
check(True in gh or "on" in gh, "github: no `on` trigger")   # YAML 1.1 reads on: as true
shell_steps = []
for name, job in gh["jobs"].items():
    check("runs-on" in job, f"github job {name}: no runs-on")
    check(job.get("runs-on") == "ubuntu-24.04", f"github job {name}: not ubuntu-24.04")
    env = {**gh.get("env", {}), **job.get("env", {})}
    check("SANDRUN_IMAGE" in env, f"github job {name}: no SANDRUN_IMAGE for Docker")
    steps = job["steps"]
    for step in steps:
        check(("uses" in step) != ("run" in step), f"github step {step}: needs exactly one of uses/run")
        if "run" in step:
            shell_steps.append(("github: " + step.get("name", "?"), step["run"]))
    uses = {s["uses"].split("@")[0]: s for s in steps if "uses" in s}
    check("actions/cache" in uses, "github: the sandrun build is not cached")
    check("mikepenz/action-junit-report" in uses or "dorny/test-reporter" in uses,
          "github: no JUnit reader publishes the report")
    upload = uses.get("actions/upload-artifact", {})
    check("sandrun-archive" in str(upload.get("with", {}).get("path", "")),
          "github: the sandrun archive is not uploaded")
    check(upload.get("if") == "always()", "github: upload must run when tests fail")
    check(any("sandrun results fetch" in s.get("run", "") for s in steps),
          "github: the run is not fetched from the archive")
    cached = uses.get("actions/cache", {})
    build = [s for s in steps if "cmake --install" in s.get("run", "")]
    check(build and "cache-hit" in build[0].get("if", ""), "github: sandrun is rebuilt on a cache hit")
    check("SANDRUN_REF" in cached.get("with", {}).get("key", ""), "github: cache key lacks SANDRUN_REF")

# --- GitLab CI ----------------------------------------------------------------
gl = load("gitlab-ci.yml")
check("stages" in gl, "gitlab: no stages")
check("SANDRUN_IMAGE" in gl.get("variables", {}), "gitlab: no SANDRUN_IMAGE for Docker")
template = gl[".sandrun-ctest"]
jobs = {k: v for k, v in gl.items() if not k.startswith(".") and isinstance(v, dict)
        and k not in ("variables", "default", "workflow")}
check(jobs, "gitlab: no jobs")
for name, job in jobs.items():
    merged = {**template, **job} if job.get("extends") == ".sandrun-ctest" else job
    check("script" in merged, f"gitlab job {name}: no script")
    check(merged.get("stage") in gl["stages"], f"gitlab job {name}: unknown stage")
    art = merged.get("artifacts", {})
    check(art.get("reports", {}).get("junit"), f"gitlab job {name}: no artifacts:reports:junit")
    check(art.get("when") == "always", f"gitlab job {name}: artifacts only on success")
    check("sandrun-archive/" in art.get("paths", []), f"gitlab job {name}: archive not kept")
    cache = merged.get("cache", {})
    check(cache.get("paths") and all(not p.startswith("/") for p in cache["paths"]),
          f"gitlab job {name}: cache paths must be inside the project")
    check("SANDRUN_REF" in str(cache.get("key", "")), f"gitlab job {name}: cache key lacks SANDRUN_REF")
for key in ("before_script", "script", "after_script"):
    lines = template.get(key, [])
    shell_steps.append((f"gitlab: {key}", "\n".join(lines)))

# --- Shell steps: valid bash, in the Debian 12 image, no network -------------
def docker(args, **kw):
    return subprocess.run(["docker"] + args, capture_output=True, text=True, **kw)

with tempfile.TemporaryDirectory() as tmp:
    for i, (name, script) in enumerate(shell_steps):
        with open(os.path.join(tmp, f"step{i}.sh"), "w") as f:
            f.write(script + "\n")
    # Stand-ins for the apt tools: an apt-cache that knows one Boost package
    # ($KNOWN_BOOST), a dpkg-query that knows nothing installed, an apt-get
    # that records what it was asked to install.
    bin_dir = os.path.join(tmp, "bin")
    os.makedirs(bin_dir)
    stand_ins = {
        "apt-cache": 'if [ "$1" = show ] && [ "$2" = "$KNOWN_BOOST" ]; then echo "Package: $2"; fi',
        "dpkg-query": "exit 1",
        "apt-get": 'if [ "$1" = install ]; then echo "$@" >> /tmp/installed; fi',
    }
    for tool, body in stand_ins.items():
        path = os.path.join(bin_dir, tool)
        with open(path, "w") as f:
            f.write("#!/bin/bash\n" + body + "\n")
        os.chmod(path, 0o755)
    checks = "\n".join(f'bash -n /ci/step{i}.sh || {{ echo "bad bash: {n}"; exit 1; }}'
                       for i, (n, _) in enumerate(shell_steps))
    script = textwrap.dedent("""\
        set -e
        {checks}
        export PATH=/ci/bin:$PATH
        for known in libboost1.81-dev libboost1.83-dev; do
          rm -f /tmp/installed
          KNOWN_BOOST=$known bash /src/scripts/bootstrap >/dev/null
          grep -q -- " $known" /tmp/installed || {{ echo "bootstrap did not pick $known:"; cat /tmp/installed; exit 1; }}
        done
        rm -f /tmp/installed
        if KNOWN_BOOST=none bash /src/scripts/bootstrap 2>/tmp/err; then echo "bootstrap without Boost passed"; exit 1; fi
        grep -q "Boost 1.81 or newer" /tmp/err
        echo ok
        """).format(checks=checks)
    run = docker(["run", "--rm", "--network", "none", "-v", f"{tmp}:/ci:ro", "-v", f"{src}:/src:ro",
                  "sandrun-test/debian:bookworm", "bash", "-c", script], timeout=300)
    check(run.returncode == 0 and "ok" in run.stdout,
          f"container checks failed ({run.returncode}): {run.stdout}{run.stderr}")

for f in failures:
    print("FAIL:", f)
print(f"{len(failures)} problem(s); {len(shell_steps)} shell steps checked")
sys.exit(1 if failures else 0)
