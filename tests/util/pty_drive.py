"""Runs a command in a pseudo-terminal and answers its prompts, as a person at a terminal would.

Usage: pty_drive.py STEPS_JSON -- COMMAND [ARG...]
STEPS_JSON is a list of [expected text, answer]: each answer is typed once the expected text has
appeared in the output after the previous one. Prints everything the command wrote (the screen),
then exits with the command's exit code; 97 if a prompt did not appear within the timeout."""
import json
import os
import pty
import select
import sys
import time

TIMEOUT = 30.0


def main():
    steps = json.loads(sys.argv[1])
    cmd = sys.argv[sys.argv.index("--") + 1 :]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(cmd[0], cmd)
    screen = b""
    seen = 0

    def read_some(deadline):
        nonlocal screen
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.time()))
        if not r:
            return True
        try:
            data = os.read(fd, 4096)
        except OSError:
            return False
        if not data:
            return False
        screen += data
        return True

    for expect, answer in steps:
        deadline = time.time() + TIMEOUT
        while expect.encode() not in screen[seen:]:
            if time.time() > deadline or not read_some(deadline):
                sys.stdout.write(screen.decode(errors="replace"))
                sys.stdout.write(f"\n[pty_drive: no {expect!r} on screen]\n")
                os.kill(pid, 9)
                sys.exit(97)
        seen = screen.index(expect.encode(), seen) + len(expect)
        os.write(fd, answer.encode())
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and read_some(deadline):
        pass
    _, status = os.waitpid(pid, 0)
    sys.stdout.write(screen.decode(errors="replace"))
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
