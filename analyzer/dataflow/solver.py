"""One generic forward solver over a CFG. An analysis is a transfer function, an edge
refinement (for facts that hold on one branch only) and a join."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from analyzer.ir import CFG

S = TypeVar("S")

# Visits per CFG node before an analysis gives up on a function (it is then reported as
# skipped, with this reason); ordinary kernel functions converge in two or three.
MAX_VISITS_PER_NODE = 64


class BudgetExceeded(Exception):
    pass


class ForwardSolver(Generic[S]):
    def __init__(
        self,
        transfer: Callable[[int, S], S],
        join: Callable[[Sequence[S]], S],
        edge: Callable[[int, bool | None, S], S] | None = None,
    ) -> None:
        self.transfer = transfer
        self.join = join
        self.edge = edge

    def solve(self, cfg: CFG, entry: S) -> tuple[dict[int, S], dict[int, S]]:
        """IN and OUT states of every reachable node."""
        order = cfg.reverse_postorder()
        rank = {n: i for i, n in enumerate(order)}
        ins: dict[int, S] = {}
        outs: dict[int, S] = {}
        work = [(0, CFG.ENTRY)]
        queued = {CFG.ENTRY}
        budget = MAX_VISITS_PER_NODE * max(len(order), 1)
        while work:
            _, n = heapq.heappop(work)
            queued.discard(n)
            budget -= 1
            if budget < 0:
                raise BudgetExceeded(f"no fixpoint after {MAX_VISITS_PER_NODE} visits per node")
            if n == CFG.ENTRY:
                state = entry
            else:
                incoming = [
                    self.edge(p, pol, outs[p]) if self.edge is not None else outs[p]
                    for p, pol in cfg.preds(n)
                    if p in outs
                ]
                if not incoming:
                    continue
                state = incoming[0] if len(incoming) == 1 else self.join(incoming)
            ins[n] = state
            out = self.transfer(n, state)
            if n in outs and outs[n] == out:
                continue
            outs[n] = out
            for m, _pol in cfg.succs[n]:
                if m not in queued and m in rank:
                    queued.add(m)
                    heapq.heappush(work, (rank[m], m))
        return ins, outs
