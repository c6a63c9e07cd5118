#!/usr/bin/env python3
"""Run the Autobahn|Testsuite against simplews, as a server and as a client.

(a) ``wstest -m fuzzingclient`` tests ``compliance/server.py`` (an echo server);
(b) ``wstest -m fuzzingserver`` is tested by ``compliance/client.py``.

Reports go to ``compliance/reports/<server|client>[-nocompression]/`` (open
``index.html`` there). The script prints, per case group (1..13), how many
cases were OK / NON-STRICT / INFORMATIONAL / UNIMPLEMENTED / FAILED, the wall
time of each run, and every case that is not OK. It exits with status 1 if any
case is below OK (INFORMATIONAL counts as OK), 2 on an error running the suite.

Stdlib only. If ``wstest`` is missing it is installed with a Python 2.7
(``pip install --user autobahntestsuite==0.8.2``). Every process started here
is stopped before the script returns, also on errors, timeouts and Ctrl+C.

Examples::

    python3 compliance/run.py                      # everything, compression on
    python3 compliance/run.py --quick              # without the slow 9.*, 12.*, 13.*
    python3 compliance/run.py --server-only --cases '1.*,2.*'
    python3 compliance/run.py --no-compression     # groups 1-11 (12/13 need compression)
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPORTS = os.path.join(HERE, "reports")
AGENT = "simplews"
SUITE = "autobahntestsuite==0.8.2"

STATUSES = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
# How bad a behaviour is; OK and INFORMATIONAL both pass.
_RANK = {"OK": 0, "INFORMATIONAL": 0, "NON-STRICT": 1, "UNIMPLEMENTED": 2, "FAILED": 3}

QUICK_EXCLUDE = ["9.*", "12.*", "13.*"]
COMPRESSION_GROUPS = ["12.*", "13.*"]


class SuiteError(Exception):
    """The suite could not be run (as opposed to: it ran and found failures)."""


# ---------------------------------------------------------------------- processes

class Processes(object):
    """Every child process started by this script, each in its own process group."""

    def __init__(self) -> None:
        self.children = []  # type: List[subprocess.Popen]

    def start(self, args: List[str], log_path: str, cwd: Optional[str] = None) -> subprocess.Popen:
        log = open(log_path, "wb")
        try:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=cwd, start_new_session=True)
        finally:
            log.close()
        self.children.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, grace: float = 5.0) -> None:
        """SIGTERM the child's process group, SIGKILL it after ``grace`` seconds."""
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(grace)
        else:
            _signal_group(proc, signal.SIGKILL)  # stragglers left in its group, if any
        if proc in self.children:
            self.children.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.children):
            try:
                self.stop(proc)
            except Exception as exc:  # keep stopping the others
                print("could not stop process %d: %s" % (proc.pid, exc), file=sys.stderr)


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)  # the group id is the child's pid (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # type: ignore[no-any-return]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SuiteError("process %d exited with status %s before listening on port %d"
                             % (proc.pid, proc.returncode, port))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.2)
    raise SuiteError("nothing listening on port %d after %ss" % (port, timeout))


def wait_for_line(path: str, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path, "rb") as log:
            if text.encode() in log.read():
                return
        if proc.poll() is not None:
            raise SuiteError("process %d exited with status %s; see %s" % (proc.pid, proc.returncode, path))
        time.sleep(0.1)
    raise SuiteError("no %r from process %d after %ss; see %s" % (text, proc.pid, timeout, path))


def wait_exit(proc: subprocess.Popen, timeout: float, what: str, log_path: str) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise SuiteError("%s did not finish within %ss; see %s" % (what, timeout, log_path)) from None


# ---------------------------------------------------------------------- wstest

def find_wstest() -> Optional[str]:
    for candidate in (shutil.which("wstest"), os.path.expanduser("~/.local/bin/wstest")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_python2() -> Optional[str]:
    candidates = [os.path.expanduser("~/.pyenv/versions/2.7.18/bin/python"),
                  shutil.which("python2.7"), shutil.which("python2")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure_wstest() -> str:
    wstest = find_wstest()
    if wstest:
        return wstest
    python2 = find_python2()
    if python2 is None:
        raise SuiteError("wstest is not installed and no Python 2.7 was found to install %s" % SUITE)
    print("wstest not found: installing %s with %s" % (SUITE, python2), flush=True)
    subprocess.run([python2, "-m", "pip", "install", "--user", SUITE], check=True, timeout=1800)
    user_base = subprocess.run([python2, "-m", "site", "--user-base"], check=True, timeout=60,
                               stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
    wstest = os.path.join(user_base, "bin", "wstest")
    if not os.access(wstest, os.X_OK):
        wstest = find_wstest() or ""
    if not wstest:
        raise SuiteError("installed %s but cannot find wstest" % SUITE)
    return wstest


def write_spec(directory: str, name: str, spec: Dict[str, Any]) -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as handle:
        json.dump(spec, handle, indent=2)
    return path


def case_selection(args: argparse.Namespace) -> Tuple[List[str], List[str]]:
    cases = [c.strip() for c in args.cases.split(",") if c.strip()] if args.cases else ["*"]
    exclude = []  # type: List[str]
    if args.quick:
        exclude += QUICK_EXCLUDE
    if args.no_compression and not args.cases:
        exclude += [group for group in COMPRESSION_GROUPS if group not in exclude]
    return cases, exclude


def fresh_outdir(reports: str, name: str) -> str:
    outdir = os.path.join(reports, name)
    if os.path.isdir(outdir):
        shutil.rmtree(outdir)
    os.makedirs(outdir)
    return outdir


def run_server_tests(wstest: str, procs: Processes, args: argparse.Namespace, tmp: str) -> Dict[str, Any]:
    """simplews as the server, wstest -m fuzzingclient as the tester."""
    name = "server" + ("-selectors" if args.mode == "selectors" else "")
    outdir = fresh_outdir(args.reports, name + ("-nocompression" if args.no_compression else ""))
    port = free_port()
    server_log = os.path.join(outdir, "simplews-server.log")
    command = [sys.executable, os.path.join(HERE, "server.py"), "--port", str(port), "--mode", args.mode,
               "--compress-level", str(args.compress_level)]
    if args.no_compression:
        command.append("--no-compression")
    server = procs.start(command, server_log)
    wait_for_line(server_log, "listening on", server, 30)
    cases, exclude = case_selection(args)
    spec = {
        "outdir": outdir,
        "servers": [{"agent": AGENT, "url": "ws://127.0.0.1:%d" % port}],
        "cases": cases,
        "exclude-cases": exclude,
        "exclude-agent-cases": {},
        "options": {"failByDrop": False},
    }
    spec_path = write_spec(tmp, "fuzzingclient.json", spec)
    wstest_log = os.path.join(outdir, "wstest.log")
    print("server run: simplews (%s) on port %d, cases %s, excluded %s"
          % (args.mode, port, cases, exclude or "none"), flush=True)
    started = time.monotonic()
    tester = procs.start([wstest, "-m", "fuzzingclient", "-s", spec_path], wstest_log, cwd=tmp)
    wait_exit(tester, args.timeout, "wstest -m fuzzingclient", wstest_log)
    wall = time.monotonic() - started
    crashed = server.poll() is not None
    procs.stop(server)
    if crashed:
        raise SuiteError("the simplews server exited during the run; see %s" % server_log)
    if tester.returncode != 0:
        raise SuiteError("wstest exited with status %d; see %s" % (tester.returncode, wstest_log))
    return {"name": "server (%s)" % args.mode, "outdir": outdir, "wall": wall, "results": load_results(outdir)}


def run_client_tests(wstest: str, procs: Processes, args: argparse.Namespace, tmp: str) -> Dict[str, Any]:
    """simplews as the client, wstest -m fuzzingserver as the tester."""
    outdir = fresh_outdir(args.reports, "client" + ("-nocompression" if args.no_compression else ""))
    port = free_port()
    cases, exclude = case_selection(args)
    spec = {
        "url": "ws://127.0.0.1:%d" % port,
        "outdir": outdir,
        "cases": cases,
        "exclude-cases": exclude,
        "exclude-agent-cases": {},
        "options": {"failByDrop": False},
    }
    spec_path = write_spec(tmp, "fuzzingserver.json", spec)
    wstest_log = os.path.join(outdir, "wstest.log")
    client_log = os.path.join(outdir, "simplews-client.log")
    print("client run: wstest on port %d, cases %s, excluded %s" % (port, cases, exclude or "none"), flush=True)
    tester = procs.start([wstest, "-m", "fuzzingserver", "-s", spec_path, "-u", "0"], wstest_log, cwd=tmp)
    wait_for_port(port, tester, 60)
    command = [sys.executable, os.path.join(HERE, "client.py"), "--port", str(port), "--agent", AGENT,
               "--compress-level", str(args.compress_level)]
    if args.no_compression:
        command.append("--no-compression")
    started = time.monotonic()
    client = procs.start(command, client_log)
    wait_exit(client, args.timeout, "compliance/client.py", client_log)
    wall = time.monotonic() - started
    procs.stop(tester)
    if client.returncode != 0:
        raise SuiteError("the simplews client exited with status %d; see %s" % (client.returncode, client_log))
    return {"name": "client", "outdir": outdir, "wall": wall, "results": load_results(outdir)}


# ---------------------------------------------------------------------- reports

def load_results(outdir: str) -> Dict[str, Dict[str, Any]]:
    path = os.path.join(outdir, "index.json")
    if not os.path.exists(path):
        raise SuiteError("no report at %s" % path)
    with open(path) as handle:
        index = json.load(handle)
    if AGENT not in index:
        raise SuiteError("agent %r missing from %s (found %s)" % (AGENT, path, sorted(index)))
    return index[AGENT]  # type: ignore[no-any-return]


def case_key(case_id: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in case_id.split("."))


def case_status(result: Dict[str, Any]) -> str:
    """The worse of ``behavior`` and ``behaviorClose`` (OK and INFORMATIONAL pass; any
    other ``behaviorClose`` value, such as UNCLEAN or WRONG CODE, is a failure)."""
    behavior = result.get("behavior", "FAILED")
    closing = result.get("behaviorClose", "FAILED")
    if _RANK.get(closing, 3) > _RANK.get(behavior, 3):
        return closing  # type: ignore[no-any-return]
    return behavior  # type: ignore[no-any-return]


def summarize(run: Dict[str, Any]) -> List[Tuple[str, Dict[str, Any]]]:
    """Print the per-group table (also saved as summary.md in the run's directory); return the cases below OK."""
    results = run["results"]
    groups = {}  # type: Dict[int, Dict[str, int]]
    seconds = {}  # type: Dict[int, float]
    bad = []  # type: List[Tuple[str, Dict[str, Any]]]
    for case_id in sorted(results, key=case_key):
        result = results[case_id]
        status = case_status(result)
        group = case_key(case_id)[0]
        counts = groups.setdefault(group, dict.fromkeys(STATUSES, 0))
        counts[status if status in counts else "FAILED"] += 1  # UNCLEAN, WRONG CODE, ... are failures
        seconds[group] = seconds.get(group, 0.0) + (result.get("duration") or 0) / 1000.0
        if _RANK.get(status, 3) > 0:
            bad.append((case_id, result))
    lines = ["%s run (%s): %d cases, wall time %.1f s" % (run["name"], run["label"], len(results), run["wall"]),
             "",
             "| group | " + " | ".join(STATUSES) + " | time (s) |",
             "|---" * (len(STATUSES) + 2) + "|"]
    totals = dict.fromkeys(STATUSES, 0)
    for group in sorted(groups):
        counts = groups[group]
        lines.append("| %d | " % group + " | ".join(str(counts[s]) for s in STATUSES)
                     + " | %.1f |" % seconds[group])
        for status in STATUSES:
            totals[status] += counts[status]
    lines.append("| total | " + " | ".join(str(totals[s]) for s in STATUSES)
                 + " | %.1f |" % sum(seconds.values()))
    lines.append("")
    if bad:
        lines.append("cases below OK:")
        for case_id, result in bad:
            lines.append("  %-8s behavior=%-13s behaviorClose=%-13s remoteCloseCode=%s  %s"
                         % (case_id, result.get("behavior"), result.get("behaviorClose"),
                            result.get("remoteCloseCode"),
                            os.path.join(run["outdir"], result.get("reportfile", ""))))
    else:
        lines.append("all cases OK")
    with open(os.path.join(run["outdir"], "summary.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print()
    print("\n".join(lines))
    print("reports: %s" % os.path.join(run["outdir"], "index.html"), flush=True)
    return bad


# ---------------------------------------------------------------------- main

def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--server-only", action="store_true", help="test only the simplews server")
    which.add_argument("--client-only", action="store_true", help="test only the simplews client")
    parser.add_argument("--cases", help="comma-separated case patterns for the spec, e.g. '1.*,2.*' (default: *)")
    parser.add_argument("--no-compression", action="store_true",
                        help="turn permessage-deflate off (and, unless --cases is given, skip 12.* and 13.*)")
    parser.add_argument("--quick", action="store_true", help="skip the slow 9.* and the 12.*/13.* groups")
    parser.add_argument("--mode", choices=("threaded", "selectors"), default="threaded",
                        help="the server's mode (default threaded)")
    parser.add_argument("--compress-level", type=int, default=6,
                        help="zlib level simplews compresses with (default 6, the library's; 1 is faster)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per run (default 3600)")
    parser.add_argument("--reports", default=REPORTS,
                        help="directory for the reports (default compliance/reports; its server*/client* "
                             "subdirectories are replaced)")
    args = parser.parse_args(argv)

    procs = Processes()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    label = "compression off" if args.no_compression else "compression on"
    runs = []  # type: List[Dict[str, Any]]
    status = 0
    try:
        wstest = ensure_wstest()
        args.reports = os.path.abspath(args.reports)
        os.makedirs(args.reports, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="simplews-autobahn-") as tmp:
            if not args.client_only:
                runs.append(run_server_tests(wstest, procs, args, tmp))
                runs[-1]["label"] = label
            if not args.server_only:
                runs.append(run_client_tests(wstest, procs, args, tmp))
                runs[-1]["label"] = label
    except (SuiteError, subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        print("error: %s" % exc, file=sys.stderr)
        status = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        status = 130
    finally:
        procs.stop_all()
        signal.signal(signal.SIGTERM, previous)

    below_ok = 0
    for run in runs:  # the runs that completed, even if a later one failed
        below_ok += len(summarize(run))
    if status:
        return status
    return 1 if below_ok else 0


if __name__ == "__main__":
    sys.exit(main())
