"""Run a command; write its wall time and its own peak RSS to a file; exit as it did.

    python -S bench/peak_rss.py REPORT CMD [ARG ...]

The benchmark holds the files it parses in memory (1.2 GB for a whole tree). A process it
forks inherits that resident set, and on Linux a process's ru_maxrss keeps what its memory
held before exec, so wait4() on a direct child reports the benchmark's own peak. This
small process forks the command instead: what wait4() returns here is the command's (its
largest single process, workers included). REPORT gets one JSON object: wall (seconds,
fork to exit), maxrss_kib and returncode.
"""

import json
import os
import sys
import time


def main() -> int:
    report, cmd = sys.argv[1], sys.argv[2:]
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    with open(report, "w") as f:
        json.dump({"wall": wall, "maxrss_kib": usage.ru_maxrss, "returncode": code}, f)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
