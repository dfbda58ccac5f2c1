"""Mutations of real C source for fuzzing the front end: byte flips, truncations, spliced
functions, unbalanced braces and comments, NUL bytes, invalid UTF-8, gigantic lines."""

from __future__ import annotations

import random

_INSERTS = (
    b"{",
    b"}",
    b"{{{{",
    b"}}}}",
    b"(",
    b")",
    b"/*",
    b"*/",
    b"//",
    b'"',
    b"'",
    b"#if 0\n",
    b"#endif\n",
    b"#ifdef X\n",
    b"#else\n",
    b"\\\n",
    b"\0",
    b"\xff\xfe",
    b"\xc3\x28",
    b"list_for_each_entry(p, h, m) {",
    b"SYSCALL_DEFINE2(",
    b"__acquires(",
    b"goto out;",
    b"out:",
    b'asm goto("" : : : : out);',
    b"({",
    b"})",
    b"do {",
    b"} while (0);",
)


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1) if buf else 0
        if op == 0 and buf:  # flip bytes
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(buf))
                buf[i] = rng.randrange(256)
        elif op == 1:  # truncate
            del buf[pos:]
        elif op == 2:  # insert a troublesome token
            buf[pos:pos] = rng.choice(_INSERTS)
        elif op == 3 and buf:  # splice a chunk of the file somewhere else
            a = rng.randrange(len(buf))
            b = min(len(buf), a + rng.randint(1, 2000))
            buf[pos:pos] = buf[a:b]
        elif op == 4:  # a gigantic line
            buf[pos:pos] = b"x" * rng.randint(1000, 200_000)
        elif op == 5:  # deep nesting
            depth = rng.randint(10, 3000)
            buf[pos:pos] = b"(" * depth + b"1" + b")" * rng.randint(0, depth)
        else:  # delete a range
            del buf[pos : pos + rng.randint(1, 500)]
    return bytes(buf)
