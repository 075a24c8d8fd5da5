#!/usr/bin/env python3
"""A small process supervisor for hosts without systemd (installed by the Ansible roles).

    supervise.py start   --pidfile P --logfile L [--env-file E] [--cwd D] [--user U] -- ARGV...
    supervise.py start   --pidfile P --logfile L --command-file F ...   (ARGV as a JSON list in F)
    supervise.py stop    --pidfile P
    supervise.py restart (the options of start)
    supervise.py status  --pidfile P

``start`` detaches (double fork, new session), writes the pidfile, runs ARGV and starts
it again with exponential backoff whenever it exits; it prints ``started PID`` or
``running PID`` (already running: nothing changes) so that a caller can tell the two
apart. ``stop`` sends SIGTERM to the supervisor, which ends ARGV (SIGTERM, SIGKILL after
``--stop-timeout``) and removes the pidfile. The environment file has ``KEY=VALUE``
lines (as systemd's EnvironmentFile=); it is read at every (re)start. Standard library
only, no shell.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

MARKER = "supervise.py"


def read_pid(pidfile: str) -> int | None:
    """The supervisor's pid when it runs, else None (a stale pidfile counts as not running)."""
    try:
        with open(pidfile) as f:
            pid = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().split(b"\0")
    except OSError:
        return None
    if not any(part.endswith(MARKER.encode()) for part in cmdline):
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return None
    except OSError:
        return None
    return pid


def read_env_file(path: str | None) -> dict[str, str]:
    env: dict[str, str] = {}
    if not path:
        return env
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
    return env


def supervise(args: argparse.Namespace, ready_fd: int) -> None:
    """Runs in the detached grandchild: keep ARGV running until SIGTERM."""
    state = {"stopping": False, "child": None}

    def send(sig: int) -> None:
        child = state["child"]
        if child:
            try:
                os.kill(child, sig)
            except ProcessLookupError:
                pass

    def on_term(signum, frame):
        state["stopping"] = True
        send(signal.SIGTERM)
        signal.alarm(max(1, int(args.stop_timeout)))  # then SIGKILL (on_alarm)

    def on_alarm(signum, frame):
        send(signal.SIGKILL)

    signal.signal(signal.SIGALRM, on_alarm)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    tmp = args.pidfile + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, args.pidfile)
    delay = 1.0
    first = True
    try:
        while not state["stopping"]:
            env = dict(os.environ)
            env.update(read_env_file(args.env_file))
            started = time.monotonic()
            pid = os.fork()
            if pid == 0:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_DFL)
                if args.user:
                    import pwd

                    entry = pwd.getpwnam(args.user)
                    os.initgroups(entry.pw_name, entry.pw_gid)
                    os.setgid(entry.pw_gid)
                    os.setuid(entry.pw_uid)
                    env.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
                if args.cwd:
                    os.chdir(args.cwd)
                os.execvpe(args.argv[0], args.argv, env)  # noqa: S606 - argv, no shell
            state["child"] = pid
            print(f"supervise: started {args.argv[0]} as pid {pid}", flush=True)
            if first:
                os.write(ready_fd, f"started {os.getpid()}\n".encode())
                os.close(ready_fd)
                first = False
            while True:
                try:
                    _, status = os.waitpid(pid, 0)
                    break
                except InterruptedError:
                    continue
                except ChildProcessError:
                    status = 0
                    break
            state["child"] = None
            print(f"supervise: pid {pid} ended with status {status}", flush=True)
            if state["stopping"]:
                break
            if time.monotonic() - started > 60:
                delay = 1.0
            time.sleep(delay)  # restart backoff
            delay = min(delay * 2, 30.0)
    finally:
        try:
            if read_pid(args.pidfile) in (None, os.getpid()):
                os.unlink(args.pidfile)
        except OSError:
            pass


def start(args: argparse.Namespace) -> int:
    pid = read_pid(args.pidfile)
    if pid:
        print(f"running {pid}")
        return 0
    if not args.argv:
        print("start: give the command after --", file=sys.stderr)
        return 2
    read_fd, write_fd = os.pipe()
    first = os.fork()
    if first == 0:
        os.close(read_fd)
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        log = os.open(args.logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(devnull)
        os.close(log)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        try:
            supervise(args, write_fd)
        finally:
            os._exit(0)
    os.close(write_fd)
    os.waitpid(first, 0)
    with os.fdopen(read_fd) as f:
        answer = f.read().strip()
    if not answer.startswith("started"):
        print(f"start failed; see {args.logfile}", file=sys.stderr)
        return 1
    print(answer)
    return 0


def stop(args: argparse.Namespace) -> int:
    pid = read_pid(args.pidfile)
    if not pid:
        print("stopped")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.stop_timeout + 5
    while read_pid(args.pidfile) == pid and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the process table: there is no event to wait on
    if read_pid(args.pidfile) == pid:
        os.kill(pid, signal.SIGKILL)
    print(f"stopped {pid}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command_argv: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, command_argv = argv[:i], argv[i + 1 :]
    parser = argparse.ArgumentParser(prog=MARKER)
    parser.add_argument("action", choices=["start", "stop", "restart", "status"])
    parser.add_argument("--pidfile", required=True)
    parser.add_argument("--logfile", default=os.devnull)
    parser.add_argument("--env-file")
    parser.add_argument("--cwd")
    parser.add_argument("--user", help="run ARGV as this user (the supervisor must be root)")
    parser.add_argument("--command-file", help="JSON list: ARGV (instead of -- ARGV)")
    parser.add_argument("--stop-timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    args.argv = command_argv
    if args.command_file and not command_argv:
        import json

        with open(args.command_file) as f:
            args.argv = [str(a) for a in json.load(f)]
    if args.action == "status":
        pid = read_pid(args.pidfile)
        print(f"running {pid}" if pid else "stopped")
        return 0 if pid else 3
    if args.action == "stop":
        return stop(args)
    if args.action == "restart":
        stop(args)
        return start(args)
    return start(args)


if __name__ == "__main__":
    sys.exit(main())
