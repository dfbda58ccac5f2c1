"""Lock sets: which locks are held on every path to a point (a forward must-analysis).

A lock is (class, name): class ``pt`` (page-table locks), ``compound`` (compound_lock),
``irq`` (local interrupts off) or ``other``; name is the lock expression as written,
without ``&``. The lock APIs are data (rules/api/locks.yaml). Across functions:
- a call to a function the model defines applies that function's summary: the guard
  classes it returns holding, and those it releases (read from its body, or from its
  ``__acquires``/``__releases`` annotations);
- a function's entry lock set is what every caller holds at its call sites, when all of
  its callers are known (static, not address-taken, not exported); ``__must_hold(x)``,
  ``lockdep_assert_held(x)`` and ``BUG_ON(!spin_is_locked(x))`` add to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from analyzer.dataflow.solver import BudgetExceeded, ForwardSolver
from analyzer.ir import (
    AddrOf,
    Call,
    CallRef,
    Const,
    Deref,
    Expr,
    Function,
    Kind,
    Name,
    Op,
    peel,
    render,
)
from analyzer.program.model import Program
from analyzer.rules.loader import LockApi, LockSpec

Lock = tuple[str, str]
GUARD_CLASSES = ("pt", "compound", "irq")
IRQ_OFF: Lock = ("irq", "irqs-off")
CALLER = "<held by every caller>"
_ENTRY = "<held at entry>"


@dataclass(frozen=True, slots=True)
class LockState:
    held: frozenset[Lock]
    # (variable, lock, when): the lock is held if the variable tests as `when` says.
    pending: frozenset[tuple[str, Lock, str]] = frozenset()


@dataclass(frozen=True, slots=True)
class LockSummary:
    acquires: frozenset[str]  # guard classes held on return that were not held on entry
    releases: frozenset[str]  # guard classes held on entry that are not held on return


_EMPTY_SUMMARY = LockSummary(frozenset(), frozenset())


def _off_guard(spec: LockSpec) -> bool:
    """A primitive that can change no guard class: its class is fixed and not a guard,
    and it neither touches interrupts nor asserts a lock (whose class the name gives)."""
    return (
        spec.cls is not None
        and spec.cls not in GUARD_CLASSES
        and spec.irq is None
        and spec.asserts is None
    )


def lock_name(e: Expr) -> str:
    """The lock a lock-API argument names: `&mm->page_table_lock` -> `mm->page_table_lock`."""
    return render(peel(e, AddrOf))


def _peel_condition(cond: Expr) -> tuple[Expr, bool]:
    """(subject, sense): the branch is taken-true when the subject is truthy == sense."""
    sense = True
    while True:
        if isinstance(cond, Op) and cond.op == "!" and len(cond.operands) == 1:
            cond, sense = cond.operands[0], not sense
        elif isinstance(cond, Op) and cond.op in ("==", "!=") and len(cond.operands) == 2:
            op = cond.op
            left, right = cond.operands
            if isinstance(right, Const) and right.text in ("0", "NULL", "false"):
                cond, sense = left, sense if op == "!=" else not sense
            elif isinstance(right, Const) and right.text in ("1", "true"):
                cond, sense = left, sense if op == "==" else not sense
            else:
                return cond, sense
        elif isinstance(cond, Op) and cond.op == "cast":
            cond = cond.operands[0]
        else:
            return cond, sense


class LockAnalysis:
    """Lock sets for the functions of one program, with summaries and entry contexts."""

    def __init__(self, program: Program, api: LockApi) -> None:
        self.program = program
        self.api = api
        self._results: dict[str, dict[int, LockState]] = {}
        self._entry: dict[str, frozenset[Lock]] = {}
        self._summaries: dict[str, LockSummary] = {}
        self._busy: set[str] = set()
        self._classes: dict[str, dict[str, str]] = {}
        self._quiet: dict[str, bool] = {}

    # -- classification
    def classify(self, fn: Function, name: str, spec: LockSpec | None = None) -> str:
        if spec is not None and spec.cls is not None:
            return spec.cls
        for cls, patterns in self.api.class_patterns.items():
            if any(p.search(name) for p in patterns):
                return cls
        return self._var_classes(fn).get(name, "other")

    def _var_classes(self, fn: Function) -> dict[str, str]:
        """Variables assigned a page-table lock pointer anywhere in the function."""
        if fn.key not in self._classes:
            out: dict[str, str] = {}
            for ins in fn.cfg.instrs:
                if ins.kind is Kind.ASSIGN and isinstance(ins.rhs, Call) and ins.lhs is not None:
                    callee = ins.rhs.callee or ""
                    specs = self.api.functions.get(callee, ())
                    if callee in self.api.pt_lock_pointers or any(
                        s.acquire == ("ret", -1) and s.cls == "pt" for s in specs
                    ):
                        out[lock_name(ins.lhs)] = "pt"
            self._classes[fn.key] = out
        return self._classes[fn.key]

    def spec(self, call: Call) -> LockSpec | None:
        if call.indirect or call.callee is None:
            return None
        for s in self.api.functions.get(self.program.canonical(call.callee), ()):
            if s.arity is None or s.arity == len(call.args):
                return s
        return None

    def _acquired_lock(self, fn: Function, call: Call, spec: LockSpec) -> Lock | None:
        assert spec.acquire is not None
        kind, idx = spec.acquire
        if kind == "ret":
            return None
        if idx >= len(call.args):
            return None
        name = lock_name(call.args[idx])
        return (self.classify(fn, name, spec), name)

    # -- transfer
    def _apply_call(self, fn: Function, call: Call, held: set[Lock]) -> None:
        spec = self.spec(call)
        if spec is not None:
            if spec.irq == "disable":
                held.add(IRQ_OFF)
            elif spec.irq == "enable":
                held.difference_update({lk for lk in held if lk[0] == "irq"})
            if spec.acquire is not None and spec.when is None:
                lock = self._acquired_lock(fn, call, spec)
                if lock is not None:
                    held.add(lock)
            if spec.release is not None and spec.release < len(call.args):
                name = lock_name(call.args[spec.release])
                cls = self.classify(fn, name, spec)
                exact = {lk for lk in held if lk[1] == name}
                held.difference_update(exact or {lk for lk in held if lk[0] == cls})
            if spec.asserts is not None and spec.asserts < len(call.args):
                name = lock_name(call.args[spec.asserts])
                held.add((self.classify(fn, name), name))
            return
        if call.callee in self.api.bug_on and call.args:
            subject, sense = _peel_condition(call.args[0])
            if (
                not sense
                and isinstance(subject, Call)
                and subject.callee in self.api.is_locked
                and subject.args
            ):
                name = lock_name(subject.args[0])
                held.add((self.classify(fn, name), name))
            return
        for target in self.program.resolve(fn, call):
            summary = self.summary(target)
            if summary.releases:
                held.difference_update({lk for lk in held if lk[0] in summary.releases})
            for cls in sorted(summary.acquires):
                held.add((cls, f"{target.name}()"))
            break

    def _transfer(self, fn: Function, n: int, state: LockState) -> LockState:
        ins = fn.cfg.instrs[n]
        if not ins.calls and ins.kind is not Kind.ASSIGN:
            return state
        held = set(state.held)
        for call in ins.calls:
            self._apply_call(fn, call, held)
        pending = state.pending
        if ins.kind is Kind.ASSIGN and isinstance(ins.lhs, Name):
            var = ins.lhs.id
            pending = frozenset(p for p in pending if p[0] != var)
            rhs = ins.rhs
            if isinstance(rhs, Call):
                spec = self.spec(rhs)
                if spec is not None and spec.acquire is not None:
                    if spec.acquire[0] == "ret":
                        lock = (self.classify(fn, var, spec), var)
                    else:
                        lock = self._acquired_lock(fn, rhs, spec)  # type: ignore[assignment]
                    if lock is not None and spec.when is not None:
                        pending = pending | {(var, lock, spec.when)}
                    elif lock is not None:
                        held.add(lock)
        return LockState(frozenset(held), pending)

    def _edge(self, fn: Function, n: int, pol: bool | None, state: LockState) -> LockState:
        if pol is None:
            return state
        ins = fn.cfg.instrs[n]
        if ins.kind is not Kind.BRANCH or ins.rhs is None:
            return state
        subject, sense = _peel_condition(ins.rhs)
        truthy = pol == sense
        gained: Lock | None = None
        if isinstance(subject, Call):
            spec = self.spec(subject)
            if spec is not None and spec.acquire is not None and spec.when is not None:
                lock = self._acquired_lock(fn, subject, spec)
                if lock is not None and truthy == (spec.when != "zero"):
                    gained = lock
        elif isinstance(subject, Name | Deref):
            var = lock_name(subject)
            for v, lock, when in state.pending:
                if v == var and truthy == (when != "zero"):
                    gained = lock
        if gained is None:
            return state
        return LockState(state.held | {gained}, state.pending)

    @staticmethod
    def _join(states: Sequence[LockState]) -> LockState:
        held = states[0].held
        pending = states[0].pending
        for s in states[1:]:
            held = held & s.held
            pending = pending & s.pending
        return LockState(held, pending)

    def _solve(self, fn: Function, entry: frozenset[Lock]) -> dict[int, LockState]:
        solver: ForwardSolver[LockState] = ForwardSolver(
            lambda n, s: self._transfer(fn, n, s),
            self._join,
            lambda n, pol, s: self._edge(fn, n, pol, s),
        )
        ins, _outs = solver.solve(fn.cfg, LockState(entry))
        return ins

    # -- per function, memoized
    def states(self, fn: Function) -> dict[int, LockState]:
        """IN lock state of every reachable node of `fn`, with its entry context."""
        if fn.key not in self._results:
            entry = self.entry_locks(fn)
            try:
                self._results[fn.key] = self._solve(fn, entry)
            except BudgetExceeded:
                self._results[fn.key] = {}
        return self._results[fn.key]

    def held_at(self, fn: Function, node: int) -> frozenset[Lock]:
        state = self.states(fn).get(node)
        return state.held if state is not None else frozenset()

    def annotated_entry(self, fn: Function) -> frozenset[Lock]:
        locks = set()
        for kind, arg in fn.annotations:
            if kind in ("__must_hold", "__releases") and arg:
                name = arg.lstrip("&").strip()
                locks.add((self.classify(fn, name), name))
        return frozenset(locks)

    def entry_locks(self, fn: Function) -> frozenset[Lock]:
        if fn.key in self._entry:
            return self._entry[fn.key]
        base = self.annotated_entry(fn)
        if fn.key in self._busy or self.program.may_have_unknown_callers(fn):
            return base
        self._busy.add(fn.key)
        try:
            common: set[str] | None = None
            for site in self.program.callers(fn):
                held = {lk[0] for lk in self.held_at(site.caller, site.node)}
                held &= set(GUARD_CLASSES)
                common = held if common is None else common & held
                if not common:  # one caller holds none: the others cannot add any
                    break
        finally:
            self._busy.discard(fn.key)
        result = base | {(cls, CALLER) for cls in sorted(common or ())}
        self._entry[fn.key] = result
        return result

    def _is_quiet(self, fn: Function) -> bool:
        """True when `fn` cannot change which guard classes are held: no lock annotation,
        no call of a primitive that may touch a guard (mutexes and rwsems do not), nor of
        a BUG_ON, and calls only to quiet functions; a function on a call cycle is not
        quiet. Read from the call graph, without the body: a quiet function's summary is
        empty without solving it, and most of a tree's functions are quiet."""
        known = self._quiet.get(fn.key)
        if known is not None:
            return known
        self._quiet[fn.key] = False  # until shown otherwise: a cycle back here is not quiet
        quiet = not fn.annotations and all(self._quiet_call(fn, ref) for ref in fn.call_refs)
        self._quiet[fn.key] = quiet
        return quiet

    def _quiet_call(self, fn: Function, ref: CallRef) -> bool:
        if ref.callee in self.api.bug_on:
            return False
        if not ref.indirect and ref.callee is not None:
            specs = self.api.functions.get(self.program.canonical(ref.callee))
            if specs is not None:  # a lock primitive: quiet if it never touches a guard
                return all(s.arity is None and _off_guard(s) for s in specs)
        return all(self._is_quiet(t) for t in self.program.resolve(fn, ref))

    def summary(self, fn: Function) -> LockSummary:
        if fn.key in self._summaries:
            return self._summaries[fn.key]
        if fn.key in self._busy or self._is_quiet(fn):
            return _EMPTY_SUMMARY
        acquires: set[str] = set()
        releases: set[str] = set()
        for kind, arg in fn.annotations:
            cls = self.classify(fn, arg.lstrip("&").strip())
            if kind == "__acquires" and cls in GUARD_CLASSES:
                acquires.add(cls)
            elif kind == "__releases" and cls in GUARD_CLASSES:
                releases.add(cls)
        if not fn.annotations:
            # One solve from an entry holding a marker of each guard class: no transfer
            # treats a marker but as a lock of its class that is never named, so the
            # locks other than markers are those a solve from an empty entry would hold.
            self._busy.add(fn.key)
            try:
                markers = frozenset((c, _ENTRY) for c in GUARD_CLASSES)
                at_exit = self._solve(fn, markers).get(fn.cfg.EXIT)
            except BudgetExceeded:
                at_exit = None
            finally:
                self._busy.discard(fn.key)
            if at_exit is not None:
                acquires = {c for c, name in at_exit.held if c in GUARD_CLASSES and name != _ENTRY}
                kept = {lk[0] for lk in at_exit.held}
                releases = {c for c in GUARD_CLASSES if c not in kept}
        result = LockSummary(frozenset(acquires), frozenset(releases))
        self._summaries[fn.key] = result
        return result
