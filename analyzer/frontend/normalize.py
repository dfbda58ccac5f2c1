"""Same-length rewrites of raw kernel C before tree-sitter sees it.

Every rewrite replaces ASCII bytes with the same number of ASCII bytes, so byte offsets,
lines and columns of everything else are unchanged and locations reported on the
rewritten text are locations in the original file.

What is rewritten, and why:
- annotation macros (``__init``, ``__user``, ``noinline``, ...) are blanked: tree-sitter
  takes them for type names or declarators and loses the function around them;
- sparse lock annotations (``__acquires(x)``, ``__releases(x)``, ``__must_hold(x)``) are
  recorded, then blanked: the lock analysis needs them and the parser mangles them;
- iterator macros with a body (``list_for_each_entry(pos, head, member) { ... }``) become
  ``while (pos, head, member) { ... }`` so the body is a loop body, not a stray block;
- ``SYSCALL_DEFINEn(name, type, arg, ...)`` and kin become ``long sys_name(type arg, ...)``.
"""

from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass

# Bare annotation macros: attributes, address-space and section markers.
_BARE_ANNOTATIONS = (
    "__init __exit __initdata __initconst __exitdata __meminit __meminitdata __meminitconst "
    "__ref __refdata __refconst __user __kernel __iomem __rcu __percpu __force __bitwise "
    "__must_check __always_inline __always_unused __maybe_unused __used __weak __cold __hot "
    "noinline noinline_for_stack __noinline __read_mostly __ro_after_init __init_or_module "
    "__visible asmlinkage notrace __sched __kprobes __latent_entropy __nocfi __noreturn "
    "__pure __malloc __attribute_const__ __safe __private __lockfunc __irq_entry __cpuidle "
    "__flatten __noclone __naked __no_kasan __no_sanitize_address __noinstr noinstr __ksym "
    "__nocast __randomize_layout __no_randomize_layout __designated_init __packed "
    "__ro_after_init __init_memblock __meminit_data __initdata_memblock __head "
    "__always_unused __fix_address __no_profile __no_kcsan __no_context_analysis "
    "__devinit __devexit __cpuinit __cpuexit __mref __deprecated __nonstring __lsm_ro_after_init"
)
# Function-like annotation macros whose argument is not needed.
_CALL_ANNOTATIONS = (
    "__printf __scanf __aligned __section __alloc_size __counted_by __free __cleanup "
    "__guarded_by __pt_guarded_by __diagnose_as __assume_aligned __realloc_size __nonnull "
    "__attribute_const __access __cond_acquires_shared __acquires_shared __releases_shared"
)
# Sparse lock-context annotations: recorded for the lock analysis, then blanked.
LOCK_ANNOTATIONS = ("__acquires", "__releases", "__must_hold", "__cond_acquires")

_KEYWORDS = frozenset(
    b"if while for switch return sizeof typeof __typeof__ __typeof _Alignof alignof "
    b"__attribute__ __attribute asm __asm__ __asm volatile __volatile__ defined do else "
    b"case goto _Static_assert static_assert _Generic __builtin_offsetof offsetof".split()
)

_BARE_WORDS = frozenset(w.encode() for w in _BARE_ANNOTATIONS.split())
_CALL_WORDS = frozenset(w.encode() for w in [*_CALL_ANNOTATIONS.split(), *LOCK_ANNOTATIONS])
# Candidates only: the regex engine matches these prefixes fast, a set lookup decides
# (an alternation of a hundred words is tried word by word at every position).
_ANNOTATION_RE = re.compile(
    rb"\b(?:__\w++|noinline\w*+|asmlinkage|notrace|noinstr)\b(?P<call>\s*+\()?+"
)
# Comments, strings, character literals and preprocessor lines: regions where braces and
# parentheses do not count.
_OPAQUE_RE = re.compile(
    rb"/\*.*?\*/|//[^\n]*+|\"(?:\\.|[^\"\\\n]++)*+\"|'(?:\\.|[^'\\\n]++)*+'"
    rb"|^[ \t]*+\#(?:[^\n\\]++|\\.)*+",
    re.S | re.M,
)
_DIRECTIVE_RE = re.compile(
    rb"^[ \t]*\#[ \t]*(?P<kind>ifdef|ifndef|if|elif|else|endif)\b(?P<rest>(?:[^\n\\]|\\.)*)",
    re.M | re.S,
)
# Balanced parentheses, three levels deep, matched by the regex engine.
_BALANCED = rb"\((?:[^()]++|\((?:[^()]++|\([^()]*+\))*+\))*+\)"
# A call at the start of a statement followed by a block or another statement: only an
# iterator macro looks like that.
_STMT_MACRO_RE = re.compile(
    # One character starts the match (';', braces, ':', ')' or the 'e' ending `else`), so
    # the regex engine can scan for it; the `else` case is confirmed in Python.
    rb"[;{}:)e]\s*+(?P<name>[A-Za-z_]\w*+)\s*+" + _BALANCED + rb"(?=\s*[{A-Za-z_])"
)
_DEFINE_RE = re.compile(
    rb"^(?P<macro>(?:COMPAT_)?SYSCALL_DEFINE(?P<n>[0-6])|BPF_CALL_(?P<bn>[0-5]))"
    rb"\s*\(\s*(?P<name>\w+)\s*(?P<sep>[,)])",
    re.M,
)
_EXPORT_RE = re.compile(rb"^\s*EXPORT_SYMBOL\w*\s*\(\s*(\w+)\s*\)", re.M)


@dataclass(frozen=True, slots=True)
class Annotation:
    """A sparse lock annotation found in the source: ``__must_hold(&mm->page_table_lock)``."""

    offset: int
    kind: str
    arg: str


@dataclass(frozen=True, slots=True)
class Normalized:
    text: bytes
    annotations: tuple[Annotation, ...]
    exports: frozenset[str]


def _matching_paren(buf: bytearray, open_at: int) -> int:
    """Index of the ``)`` closing the ``(`` at ``open_at``, or -1."""
    depth = 0
    for i in range(open_at, len(buf)):
        c = buf[i]
        if c == 0x28:
            depth += 1
        elif c == 0x29:
            depth -= 1
            if depth == 0:
                return i
        elif c in (0x3B, 0x7B, 0x7D) and depth > 0 and i - open_at > 4096:
            return -1
    return -1


def _blank(buf: bytearray, start: int, end: int) -> None:
    """Replace buf[start:end] with spaces, keeping newlines."""
    for i in range(start, end):
        if buf[i] not in (0x0A, 0x0D):
            buf[i] = 0x20


def _opaque_mask(src: bytes) -> tuple[list[int], list[int]]:
    starts, ends = [], []
    for m in _OPAQUE_RE.finditer(src):
        starts.append(m.start())
        ends.append(m.end())
    return starts, ends


def _in_opaque(starts: list[int], ends: list[int], pos: int) -> bool:
    i = bisect.bisect_right(starts, pos) - 1
    return i >= 0 and pos < ends[i]


def _blank_annotations(
    buf: bytearray, src: bytes, starts: list[int], ends: list[int]
) -> list[Annotation]:
    found: list[Annotation] = []
    for m in _ANNOTATION_RE.finditer(src):
        word = src[m.start() : m.end()].split(b"(")[0].rstrip()
        if word in _BARE_WORDS:
            _blank(buf, m.start(), m.start() + len(word))
            continue
        if m.group("call") is None or word not in _CALL_WORDS:
            continue
        if _in_opaque(starts, ends, m.start()):
            continue
        close = _matching_paren(buf, m.end() - 1)
        if close < 0:
            continue
        kind = word.decode()
        if kind in LOCK_ANNOTATIONS:
            arg = src[m.end() : close].decode("utf-8", "replace").strip()
            found.append(Annotation(m.start(), kind, " ".join(arg.split())))
        _blank(buf, m.start(), close + 1)
    return found


def _rewrite_function_macros(buf: bytearray) -> None:
    """``SYSCALL_DEFINE2(name, t1, a1, t2, a2)`` -> ``long sys_name(t1 a1, t2 a2)``."""
    for m in _DEFINE_RE.finditer(bytes(buf)):
        macro = m.group("macro")
        name = m.group("name")
        prefix = b"compat_sys_" if macro.startswith(b"COMPAT") else b"sys_"
        if m.group("bn") is not None:
            prefix = b""
        head = b"long " + prefix + name + b"("
        span = m.end() - m.start()
        if len(head) > span:
            continue
        buf[m.start() : m.end()] = head + b" " * (span - len(head))
        if m.group("sep") == b")":
            buf[m.end() - 1] = 0x29
            continue
        close = _matching_paren(buf, m.start() + len(head) - 1)
        if close < 0:
            continue
        # Commas alternate: after a type (becomes a space), after a name (stays).
        depth, nth = 0, 0
        for i in range(m.end(), close):
            c = buf[i]
            if c == 0x28:
                depth += 1
            elif c == 0x29:
                depth -= 1
            elif c == 0x2C and depth == 0:
                if nth % 2 == 0:
                    buf[i] = 0x20
                nth += 1


def _masked(src: bytes, starts: list[int], ends: list[int]) -> bytes:
    """`src` with comments, strings, character literals and preprocessor lines zeroed,
    so that counting brackets in it counts only code."""
    buf = bytearray(src)
    for s, e in zip(starts, ends, strict=True):
        buf[s:e] = bytes(e - s)
    return bytes(buf)


def _depths(masked: bytes, offsets: list[int], opening: bytes, closing: bytes) -> dict[int, int]:
    """Nesting depth of `opening`/`closing` at each offset, in one pass over the text
    (the counting runs in C)."""
    out: dict[int, int] = {}
    depth = prev = 0
    for off in sorted(set(offsets)):
        depth += masked.count(opening, prev, off) - masked.count(closing, prev, off)
        out[off] = depth
        prev = off
    return out


def _after_else(src: bytes, e_at: int) -> bool:
    """Whether the 'e' at `e_at` ends the keyword `else`."""
    start = e_at - 3
    return (
        start >= 0
        and src[start : e_at + 1] == b"else"
        and (start == 0 or not (chr(src[start - 1]).isalnum() or src[start - 1] == 0x5F))
    )


def _rewrite_iterators(buf: bytearray, src: bytes, masked: bytes) -> None:
    """``name(args) {`` or ``name(args) stmt;`` at statement level inside a function body
    (an iterator macro: ``list_for_each_entry``, ``for_each_online_cpu``, ...) becomes
    ``while(args)``, padded to the same length, so its body is a loop body."""
    found = [
        (m.start("name"), m.group("name"))
        for m in _STMT_MACRO_RE.finditer(src)
        if (src[m.start()] != 0x65 or _after_else(src, m.start()))
        and m.group("name") not in _KEYWORDS
        and len(m.group("name")) >= 5
        and masked[m.start("name")] != 0
    ]
    depth = _depths(masked, [start for start, _ in found], b"{", b"}")
    for start, name in found:
        if depth[start] > 0:
            buf[start : start + len(name)] = b"while" + b" " * (len(name) - 5)


def _resolve_conditionals(buf: bytearray, src: bytes, masked: bytes) -> None:
    """Make ``#if`` groups parseable without choosing a configuration where possible.

    - A group inside parentheses (``#ifdef`` between call arguments) cannot be parsed:
      its directive lines are blanked, so all branches are read (an over-approximation).
    - A group whose branches open or close different numbers of braces
      (``#ifdef X if (a) { #else if (b) { #endif``) keeps only its first branch.
    - ``#if 0`` blocks are dead code: their first branch is blanked.
    """
    groups: list[list[re.Match[bytes]]] = []
    stack: list[list[re.Match[bytes]]] = []
    for m in _DIRECTIVE_RE.finditer(src):
        kind = m.group("kind")
        if kind.startswith(b"if"):
            stack.append([m])
        elif stack:
            stack[-1].append(m)
            if kind == b"endif":
                groups.append(stack.pop())
    if not groups:
        return
    offsets = [off for g in groups for d in g for off in (d.start(), d.end())]
    paren = _depths(masked, offsets, b"(", b")")
    brace = _depths(masked, offsets, b"{", b"}")
    for g in groups:
        if paren[g[0].start()] > 0:
            for d in g:
                _blank(buf, d.start(), d.end())
            continue
        deltas = {brace[z.start()] - brace[a.end()] for a, z in itertools.pairwise(g)}
        if g[0].group("kind") == b"if" and g[0].group("rest").strip() == b"0":
            _blank(buf, g[0].start(), g[1].start())
        elif len(deltas) > 1:
            for d in (g[0], g[-1]):
                _blank(buf, d.start(), d.end())
            _blank(buf, g[1].start(), g[-1].start())


def normalize(src: bytes) -> Normalized:
    buf = bytearray(src)
    starts, ends = _opaque_mask(src)
    masked = _masked(src, starts, ends)
    _resolve_conditionals(buf, src, masked)
    annotations = _blank_annotations(buf, src, starts, ends)
    _rewrite_function_macros(buf)
    _rewrite_iterators(buf, bytes(buf), masked)
    exports = frozenset(m.group(1).decode() for m in _EXPORT_RE.finditer(src))
    return Normalized(bytes(buf), tuple(annotations), exports)
